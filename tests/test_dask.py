"""Dask: same conformers for any partitioning and worker, per-molecule failures, files."""

from __future__ import annotations

import doctest
import gzip
import sys

import numpy as np
import pytest
from rdkit import Chem

import rdconfvae.integrations.dask as rdask
from rdconfvae.batch.unit import EmbedOptions, embed_one
from rdconfvae.bench import throughput
from rdconfvae.integrations.dask import (
    embed_bag,
    embed_dataframe,
    embed_file,
    from_molecules,
    read_molecules_bag,
    write_results,
)

pd = pytest.importorskip("pandas")
dask = pytest.importorskip("dask")
db = pytest.importorskip("dask.bag")
dd = pytest.importorskip("dask.dataframe")

SMILES = [
    "CCO",
    "CC(=O)Nc1ccc(O)cc1",
    "C1CC(",
    "CC(C)Cc1ccc(cc1)[C@@H](C)C(=O)O",
    "[Cu+2]",
    "c1ccccc1O",
    "CN1C=NC2=C1C(=O)N(C(=O)N2C)C",
]
OPTIONS = {"n": 3, "mmff": True, "seed": 5, "fallback": "raise"}


@pytest.fixture(scope="module")
def reference():
    """The single-process results: embed_one on each molecule, index = position."""
    n = OPTIONS["n"]
    opts = EmbedOptions(n=n, **{k: v for k, v in OPTIONS.items() if k != "n"})
    return [embed_one(smi, "", i, opts) for i, smi in enumerate(SMILES)]


def _assert_same(results, reference):
    assert [r.index for r in results] == list(range(len(reference)))
    for got, ref in zip(results, reference, strict=True):
        assert (got.status, got.n_conformers, got.error) == (
            ref.status,
            ref.n_conformers,
            ref.error,
        )
        if ref.ok:
            for a, b in zip(got.mol.GetConformers(), ref.mol.GetConformers(), strict=True):
                np.testing.assert_array_equal(a.GetPositions(), b.GetPositions())
                assert a.GetDoubleProp("MMFF_ENERGY") == b.GetDoubleProp("MMFF_ENERGY")


@pytest.mark.parametrize("npartitions", [1, 3, 7])
def test_bag_identical_for_any_partitioning(reference, npartitions):
    bag = db.from_sequence(SMILES, npartitions=npartitions)
    results = embed_bag(bag, **OPTIONS).compute(scheduler="synchronous")
    _assert_same(results, reference)


def test_failures_are_per_molecule(reference):
    results = embed_bag(db.from_sequence(SMILES, npartitions=2), **OPTIONS).compute(
        scheduler="synchronous"
    )
    failed = {r.index: r.error for r in results if not r.ok}
    assert set(failed) == {2, 4}
    assert failed[2].startswith("InvalidInputError: invalid SMILES")
    assert failed[4].startswith("UnsupportedMoleculeError")
    ok = [r for r in results if r.ok]
    assert all(r.n_conformers == 3 and r.mol.GetConformer().Is3D() for r in ok)


def test_molecules_names_and_binaries(reference):
    """Chem.Mol elements, (name, mol) tuples and from_molecules' binaries give the same result."""
    mols = [Chem.MolFromSmiles(s) for s in ("CCO", "c1ccccc1O")]
    for mol, name in zip(mols, ("ethanol", "phenol"), strict=True):
        mol.SetProp("_Name", name)
        mol.SetProp("assay", "7")
    opts = {k: v for k, v in OPTIONS.items()}
    by_binary = embed_bag(from_molecules(mols, npartitions=2), **opts).compute(
        scheduler="synchronous"
    )
    by_tuple = embed_bag(
        db.from_sequence([("ethanol", mols[0]), ("phenol", mols[1])]), **opts
    ).compute(scheduler="synchronous")
    assert [r.name for r in by_binary] == [r.name for r in by_tuple] == ["ethanol", "phenol"]
    assert by_binary[1].mol.GetProp("assay") == "7"  # properties travel with the binary
    for a, b, ref in zip(by_binary, by_tuple, (reference[0], reference[5]), strict=True):
        np.testing.assert_array_equal(
            a.mol.GetConformer(2).GetPositions(), ref.mol.GetConformer(2).GetPositions()
        )
        np.testing.assert_array_equal(
            a.mol.GetConformer(2).GetPositions(), b.mol.GetConformer(2).GetPositions()
        )


def test_smiles_file_in_partitions(tmp_path, reference):
    path = tmp_path / "in.smi"
    lines = ["# SMILES name", ""] + [f"{s} mol_{i}" for i, s in enumerate(SMILES)]
    lines[-1] = SMILES[-1]  # last one unnamed
    path.write_text("\n".join(lines) + "\n")
    bag = read_molecules_bag(path, blocksize=40)
    assert bag.npartitions > 2  # the file really is split
    assert bag.compute(scheduler="synchronous")[0] == ("mol_0", "CCO")
    results = embed_file(path, blocksize=40, **OPTIONS).compute(scheduler="synchronous")
    _assert_same(results, reference)
    assert [r.name for r in results] == [f"mol_{i}" for i in range(6)] + [""]
    out = tmp_path / "out.sdf"
    assert write_results(results, out) == (5, 2)
    records = list(Chem.SDMolSupplier(str(out), removeHs=False))
    assert len(records) == 5 * 3
    assert records[-1].GetProp("_Name") == "mol7"  # unnamed: mol<index + 1>, like the CLI
    errors = (tmp_path / "out.sdf.errors.tsv").read_text().splitlines()
    assert [e.split("\t")[0] for e in errors] == ["mol_2", "mol_4"]


@pytest.mark.parametrize("compressed", [False, True])
def test_sdf_file_keeps_names_and_properties(tmp_path, compressed):
    mols = []
    for i, smi in enumerate(["CCO", "c1ccccc1O", "CCN"]):
        mol = Chem.MolFromSmiles(smi)
        mol.SetProp("_Name", f"rec{i}")
        mol.SetProp("batch", f"B{i}")
        mols.append(mol)
    path = tmp_path / ("in.sdf.gz" if compressed else "in.sdf")
    with gzip.open(path, "wt") if compressed else open(path, "w") as fh:
        writer = Chem.SDWriter(fh)
        for mol in mols:
            writer.write(mol)
        writer.close()
        fh.write("garbage\nthat is not\na molecule\n$$$$\n")
    bag = read_molecules_bag(path, blocksize=300, npartitions=2)
    results = embed_bag(bag, n=2, seed=1).compute(scheduler="synchronous")
    assert [r.status for r in results] == ["ok", "ok", "ok", "failed"]
    assert [r.name for r in results[:3]] == ["rec0", "rec1", "rec2"]
    assert results[1].mol.GetProp("batch") == "B1"
    assert "InvalidInputError" in results[3].error
    direct = embed_one(mols[1], "", 0, EmbedOptions(n=2, seed=1)).mol
    np.testing.assert_array_equal(
        results[1].mol.GetConformer(1).GetPositions(), direct.GetConformer(1).GetPositions()
    )


def test_dataframe_identical_for_any_partitioning():
    df = pd.DataFrame({"smiles": SMILES, "id": range(len(SMILES))})
    outs = []
    for k in (1, 3):
        ddf = dd.from_pandas(df, npartitions=k)
        out = embed_dataframe(ddf, smiles_col="smiles", **OPTIONS, rows="conformer")
        outs.append(out.compute(scheduler="synchronous"))
    a, b = outs
    assert list(a.columns) == list(b.columns)
    assert a["sdf"].tolist() == b["sdf"].tolist()
    assert a["status"].tolist().count("ok") == 5 * 3
    failed = a[a["status"] == "failed"]
    assert failed["id"].tolist() == [2, 4] and failed["sdf"].isna().all()
    energies = a.loc[a["status"] == "ok", "MMFF_ENERGY"]
    assert np.isfinite(energies.to_numpy(dtype=float)).all()
    with pytest.raises(TypeError):
        embed_dataframe(dd.from_pandas(df, npartitions=1), smiles_col="smiles", colour="red")


def test_bad_options_raise_before_any_work():
    with pytest.raises(TypeError):
        embed_bag(db.from_sequence(["CCO"]), n=2, colour="red")
    with pytest.raises(ValueError):
        embed_bag(db.from_sequence(["CCO"]), n=0)
    with pytest.raises(ValueError, match="embed_dataframe"):
        read_molecules_bag("molecules.csv")


def test_doctests():
    with dask.config.set(scheduler="synchronous"):
        assert doctest.testmod(rdask, raise_on_error=False).failed == 0


# ----------------------------------------------------------------------------- a real cluster


def test_local_cluster_two_workers(reference, tmp_path):
    """Two worker processes: same coordinates as in-process, model loaded once per worker,
    one torch thread per worker; the CLI's ``embed --scheduler`` on the same cluster."""
    distributed = pytest.importorskip("distributed")

    def install_load_counter():  # runs in each worker (a local function travels by value)
        import torch

        from rdconfvae.model import store as modelstore

        modelstore.clear_cache()
        if not hasattr(torch.jit, "_rdconfvae_test_load"):
            torch.jit._rdconfvae_test_load = torch.jit.load

            def counting_load(*args, **kwargs):
                torch.jit._rdconfvae_test_loads += 1
                return torch.jit._rdconfvae_test_load(*args, **kwargs)

            torch.jit.load = counting_load
        torch.jit._rdconfvae_test_loads = 0

    def worker_state():
        import torch

        from rdconfvae.model import store as modelstore

        return torch.jit._rdconfvae_test_loads, modelstore.loaded_count(), torch.get_num_threads()

    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        client.run(install_load_counter)
        prepared = client.run(rdask.prepare_worker)  # a fresh worker, before any task
        assert len(prepared) == 2
        assert all(p["models_loaded"] == 1 and p["torch_threads"] == 1 for p in prepared.values())
        if sys.platform.startswith("linux"):  # Dask's MALLOC_TRIM_THRESHOLD_ cost undone
            assert all(p["malloc_tuned"] for p in prepared.values())
        for npartitions in (1, 6):
            bag = db.from_sequence(SMILES, npartitions=npartitions)
            results = embed_bag(bag, **OPTIONS).compute()
            _assert_same(results, reference)
        states = client.run(worker_state)
        # the model was read from disk exactly once per worker, whatever ran there since
        assert [s[:2] for s in states.values()] == [(1, 1), (1, 1)]
        assert all(s[2] == 1 for s in states.values())  # torch: one thread per task

        src = tmp_path / "in.smi"
        src.write_text("".join(f"{s} m{i}\n" for i, s in enumerate(SMILES)))
        out = tmp_path / "out.sdf"
        code = rdask.main(
            [
                "embed",
                str(src),
                str(out),
                "-n",
                "3",
                "--mmff",
                "--seed",
                "5",
                "--fallback",
                "raise",
                "--scheduler",
                cluster.scheduler_address,
                "--blocksize",
                "60",
            ]
        )
        assert code == 1  # two molecules failed
        records = list(Chem.SDMolSupplier(str(out), removeHs=False))
        assert len(records) == 5 * 3
        ref = reference[1].mol
        np.testing.assert_allclose(
            records[3].GetConformer().GetPositions(), ref.GetConformer(0).GetPositions(), atol=1e-4
        )


@pytest.mark.slow
def test_bench_throughput_reports_rates():
    result = rdask.bench_throughput(
        [("ethanol", "CCO"), ("phenol", "c1ccccc1O")], n=2, workers=(1,)
    )
    modes = [row["mode"] for row in result["rows"]]
    assert len(modes) == 3 and modes[0].startswith("in-process")
    assert all(row["mol_per_s"] > 0 for row in result["rows"])
    assert result["rows"][1]["returncode"] == 0
    assert result["rows"][2]["identical"] is True
    assert "| run |" in throughput.report(
        result, "python -m rdconfvae.integrations.dask bench x.smi"
    )
