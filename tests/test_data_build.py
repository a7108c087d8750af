"""Ensemble builder (``python -m rdconfvae.data build``) and recipe coverage, on tiny inputs.

Molecules are small and samples few so the module runs in well under a minute; the assertions
are about chemistry (energies, weights, RMSD, stereo, bond lengths) checked with RDKit directly,
not through the code under test.
"""

from __future__ import annotations

import gzip
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import rdForceFieldHelpers, rdMolAlign

from rdconfvae.data import read_built_ensembles
from rdconfvae.data.__main__ import main as data_main
from rdconfvae.data.coverage import measure_coverage, write_coverage_report
from rdconfvae.data.job import build_file
from rdconfvae.data.recipe import build_ensemble, embed_conformers, molecule_seed, prepare_molecule
from rdconfvae.data.recipe_options import ENERGY_PROP, WEIGHT_PROP, BuildOptions
from rdconfvae.errors import DataError, InvalidInputError

#: Gas constant in kcal/(mol K) (CODATA 2018: 8.314462618 J/(mol K) / 4184).
R_KCAL = 8.314462618 / 4184.0

GOOD = [
    ("CCCCO", "butanol"),
    ("OCC(O)CO", "glycerol"),
    ("C[C@H](N)C(=O)O", "L-alanine"),
    ("CC(=O)Oc1ccccc1C(=O)O", "aspirin"),
]
BAD = [
    ("C1CC", "open_ring", "invalid SMILES"),
    ("CC[Cu]CC", "copper", "unsupported element: Cu"),
    ("C(C)(C)(C)(C)C", "pentavalent", "invalid molecule"),
    ("C.CCO", "two_fragments", "several fragments"),
]
OPTS = BuildOptions(samples=24, window=8.0, rms=0.5, seed=11)


def write_smi(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("# SMILES name\n" + "".join(f"{s} {n}\n" for s, n in rows))
    return path


@pytest.fixture(scope="module")
def mixed_input(tmp_path_factory) -> Path:
    """Good molecules with bad lines between them."""
    rows = [
        GOOD[0],
        BAD[0][:2],
        GOOD[1],
        BAD[1][:2],
        GOOD[2],
        BAD[2][:2],
        BAD[3][:2],
        GOOD[3],
    ]
    return write_smi(tmp_path_factory.mktemp("in") / "mixed.smi", rows)


@pytest.fixture(scope="module")
def full_run(mixed_input, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("full") / "ens.sdf"
    manifest = build_file(mixed_input, out, OPTS, progress=False)
    return out, manifest


def heavy_bond_lengths(mol: Chem.Mol, conf_id: int) -> list[float]:
    pos = mol.GetConformer(conf_id).GetPositions()
    return [
        float(np.linalg.norm(pos[b.GetBeginAtomIdx()] - pos[b.GetEndAtomIdx()]))
        for b in mol.GetBonds()
        if b.GetBeginAtom().GetAtomicNum() > 1 and b.GetEndAtom().GetAtomicNum() > 1
    ]


# --------------------------------------------------------------------------- the ensembles


def test_ensembles_round_trip_with_chemistry(full_run):
    out, manifest = full_run
    skipped: list = []
    records = read_built_ensembles(out, skipped=skipped)
    assert skipped == []
    assert [r.name for r in records] == [n for _, n in GOOD]  # input order, failures absent
    for rec in records:
        mol = rec.mol
        assert rec.num_conformers >= 1
        assert rec.weights.sum() == pytest.approx(1.0, abs=1e-9)
        e = rec.energies
        assert e[0] == 0.0 and np.all(np.diff(e) >= 0)  # energy order, lowest first
        assert np.all(e <= OPTS.window + 1e-6)
        # Boltzmann at 298.15 K, recomputed with the gas constant
        expected = np.exp(-e / (R_KCAL * 298.15))
        np.testing.assert_allclose(rec.weights, expected / expected.sum(), rtol=1e-6)
        # energies are MMFF94s eps=4r energies: recompute them with RDKit from the written
        # coordinates (rounded to 1e-4 A in the SDF, hence the tolerance)
        props = rdForceFieldHelpers.MMFFGetMoleculeProperties(mol, mmffVariant="MMFF94s")
        props.SetMMFFDielectricModel(2)  # distance-dependent
        props.SetMMFFDielectricConstant(4.0)
        abs_e = []
        for conf in mol.GetConformers():
            ff = rdForceFieldHelpers.MMFFGetMoleculeForceField(mol, props, confId=conf.GetId())
            abs_e.append(ff.CalcEnergy())
            # minimised: small gradient, sane heavy-atom bonds
            assert max(abs(g) for g in ff.CalcGrad()) < 0.5
            assert all(1.15 < d < 1.60 for d in heavy_bond_lengths(mol, conf.GetId()))
        np.testing.assert_allclose(np.array(abs_e) - min(abs_e), e, atol=0.05)
        # no kept pair closer than the threshold: RDKit's own GetBestRMS on heavy atoms
        heavy = Chem.RemoveAllHs(mol)
        ids = [c.GetId() for c in heavy.GetConformers()]
        for i in ids:
            for j in ids[ids.index(i) + 1 :]:
                rms = rdMolAlign.GetBestRMS(Chem.Mol(heavy, confId=i), Chem.Mol(heavy, confId=j))
                assert rms >= OPTS.rms - 1e-3, (rec.name, i, j, rms)
    c = manifest["counts"]
    assert (c["molecules_ok"], c["molecules_failed"], c["molecules_done"]) == (4, 4, 8)
    stages = ("not_converged", "stereo_changed", "xtb_failed", "above_window", "duplicates")
    # every embedded conformer is accounted for by exactly one stage
    assert (
        sum(c["conformers"][k] for k in (*stages, "capped", "kept")) == c["conformers"]["embedded"]
    )
    assert c["conformers"]["kept"] == sum(r.num_conformers for r in records)
    assert c["conformers"]["duplicates"] > 0  # 24 samples of small molecules repeat
    assert manifest["complete"] is True


def test_stereo_kept_and_unspecified_stereo_assigned(full_run):
    out, _ = full_run
    ala = next(r for r in read_built_ensembles(out) if r.name == "L-alanine")
    for conf in ala.mol.GetConformers():
        m = Chem.Mol(ala.mol, confId=conf.GetId())
        Chem.AssignStereochemistryFrom3D(m)
        assert Chem.FindMolChiralCenters(m) == [(1, "S")]  # L-alanine is S
    # unspecified centre: set to one isomer, the same in every conformer
    ens = build_ensemble("CC(N)C(=O)O", BuildOptions(samples=12, seed=3))
    assert ens.stats["stereo_assigned"] == 1
    labels = set()
    for conf in ens.mol.GetConformers():
        m = Chem.Mol(ens.mol, confId=conf.GetId())
        Chem.AssignStereochemistryFrom3D(m)
        labels.add(tuple(Chem.FindMolChiralCenters(m)))
    assert len(labels) == 1 and len(next(iter(labels))) == 1


def test_gas_phase_differs_from_eps4r_and_window_shrinks():
    # glycerol: the gas-phase minima are H-bonded, eps=4r screens that; energies differ
    dist = build_ensemble("OCC(O)CO", BuildOptions(samples=24, seed=5), index=2)
    gas = build_ensemble("OCC(O)CO", BuildOptions(samples=24, seed=5, dielectric="constant"), 2)
    assert not np.allclose(dist.energies[: len(gas.energies)], gas.energies[: len(dist.energies)])
    narrow = build_ensemble("OCC(O)CO", BuildOptions(samples=24, seed=5, window=1.0), index=2)
    assert np.all(narrow.energies <= 1.0)
    assert narrow.mol.GetNumConformers() < dist.mol.GetNumConformers()
    # same seed and index: the narrow ensemble is the low-energy part of the wide one
    n = narrow.mol.GetNumConformers()
    np.testing.assert_allclose(narrow.energies, dist.energies[:n])


def test_bad_lines_reported_rest_processed(full_run):
    out, manifest = full_run
    lines = Path(str(out) + ".errors.tsv").read_text().splitlines()
    got = dict(line.split("\t") for line in lines)
    assert list(got) == [n for _, n, _ in BAD]
    for _, name, reason in BAD:
        assert got[name].startswith(reason), got[name]
    assert "valence" in got["pentavalent"].lower()
    assert manifest["failures"]["by_kind"] == {
        "invalid SMILES": 1,
        "unsupported element": 1,
        "invalid molecule": 1,
        "several fragments": 1,
    }


def test_empty_file_clear_error(tmp_path, capsys):
    empty = tmp_path / "empty.smi"
    empty.write_text("# only a comment\n\n")
    with pytest.raises(InvalidInputError, match="no molecules"):
        build_file(empty, tmp_path / "e.sdf", OPTS, progress=False)
    assert data_main(["build", str(empty), str(tmp_path / "e.sdf"), "--no-progress"]) == 1
    assert "no molecules in the input" in capsys.readouterr().err


# --------------------------------------------------------------------------- determinism


def test_same_seed_same_bytes_any_workers(full_run, mixed_input, tmp_path):
    out, _ = full_run
    again = tmp_path / "w2.sdf"
    build_file(mixed_input, again, OPTS, workers=2, progress=False)
    assert again.read_bytes() == out.read_bytes()
    assert (
        Path(str(again) + ".errors.tsv").read_bytes() == Path(str(out) + ".errors.tsv").read_bytes()
    )
    other = tmp_path / "seed12.sdf"
    build_file(mixed_input, other, BuildOptions(samples=24, window=8.0, seed=12), progress=False)
    assert other.read_bytes() != out.read_bytes()


def test_seed_depends_on_record_not_position(full_run, mixed_input, tmp_path):
    out, _ = full_run
    full = {r.name: r for r in read_built_ensembles(out)}
    parts = []
    for i in range(2):
        part = tmp_path / f"shard{i}.sdf"
        build_file(mixed_input, part, OPTS, shard=f"{i}/2", progress=False)
        parts.append(read_built_ensembles(part))
    names = [r.name for p in parts for r in p]
    assert sorted(names) == sorted(full)
    for rec in (r for p in parts for r in p):
        ref = full[rec.name]
        assert rec.num_conformers == ref.num_conformers
        np.testing.assert_array_equal(
            rec.mol.GetConformer(0).GetPositions(), ref.mol.GetConformer(0).GetPositions()
        )
    with pytest.raises(InvalidInputError, match="shard"):
        build_file(mixed_input, tmp_path / "x.sdf", OPTS, shard="2/2", progress=False)


@pytest.mark.parametrize("suffix", [".sdf", ".sdf.gz"])
def test_resume_after_interruption(full_run, mixed_input, tmp_path, suffix):
    out, _ = full_run
    part = tmp_path / f"part{suffix}"
    first = build_file(mixed_input, part, OPTS, limit=3, progress=False)
    assert first["complete"] is False and first["counts"]["molecules_done"] == 3
    # a kill in the middle of writing the next molecule leaves a torn tail in both files
    with open(part, "ab") as fh:
        fh.write(b"\x1f\x8b\x08 torn gzip member" if suffix.endswith(".gz") else b"torn\n  RDKit")
    with open(str(part) + ".errors.tsv", "ab") as fh:
        fh.write(b"half a line")
    with pytest.raises(DataError, match="--resume"):
        build_file(mixed_input, part, OPTS, progress=False)  # neither resume nor overwrite
    second = build_file(mixed_input, part, OPTS, resume=True, progress=False)
    assert second["complete"] is True and second["time"]["sittings"] == 2
    assert second["counts"]["molecules_done"] == 8 and second["counts"]["molecules_ok"] == 4
    data = gzip.decompress(part.read_bytes()) if suffix.endswith(".gz") else part.read_bytes()
    assert data == out.read_bytes()
    errors = Path(str(part) + ".errors.tsv").read_bytes()
    assert errors == Path(str(out) + ".errors.tsv").read_bytes()
    if suffix.endswith(".gz"):  # readable as standard multi-member gzip by RDKit too
        assert [r.name for r in read_built_ensembles(part)] == [n for _, n in GOOD]


def test_resume_refuses_other_options(mixed_input, tmp_path):
    part = tmp_path / "p.sdf"
    build_file(mixed_input, part, OPTS, limit=1, progress=False)
    other = BuildOptions(samples=30, window=8.0, rms=0.5, seed=11)
    with pytest.raises(DataError, match="samples: 24 then, 30 now"):
        build_file(mixed_input, part, other, resume=True, progress=False)
    # resume with nothing saved starts from the beginning
    fresh = build_file(mixed_input, tmp_path / "q.sdf", OPTS, limit=1, resume=True, progress=False)
    assert fresh["counts"]["molecules_done"] == 1


# --------------------------------------------------------------------------- options, xTB


def test_options_json_round_trip_and_rejects_unknown():
    opts = BuildOptions(samples=7, window=math.inf, dielectric="constant")
    back = BuildOptions.from_dict(json.loads(json.dumps(opts.to_dict())))
    assert back == opts and back.eps == 1.0 and BuildOptions().eps == 4.0
    with pytest.raises(AttributeError):
        opts.samples = 3  # type: ignore[misc]
    with pytest.raises(InvalidInputError, match="unknown build option"):
        BuildOptions.from_dict({"sample": 3})
    with pytest.raises(InvalidInputError, match="dielectric"):
        BuildOptions(dielectric="water")
    assert molecule_seed(0, 5) == molecule_seed(0, 5) != molecule_seed(1, 5)


def test_xtb_without_tblite_clear_error(monkeypatch, mixed_input, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "tblite", None)
    monkeypatch.setitem(sys.modules, "tblite.interface", None)
    with pytest.raises(ImportError, match="tblite"):
        build_file(mixed_input, tmp_path / "x.sdf", BuildOptions(xtb=True), progress=False)
    assert not (tmp_path / "x.sdf").exists()  # refused before any work
    rc = data_main(["build", str(mixed_input), str(tmp_path / "x.sdf"), "--xtb", "--no-progress"])
    assert rc == 1 and "needs the tblite package" in capsys.readouterr().err


def test_xtb_reoptimises_ethanol(monkeypatch):
    # before tblite loads its OpenMP runtime (as the builder does): one thread per process
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    pytest.importorskip("tblite.interface")
    pytest.importorskip("scipy")
    ens = build_ensemble("CCO", BuildOptions(samples=4, xtb=True, seed=1))
    # three heavy atoms: every conformer is a duplicate of the lowest by heavy-atom RMSD
    assert ens.mol.GetNumConformers() == 1 and ens.weights.tolist() == [1.0]
    d = heavy_bond_lengths(ens.mol, 0)  # C-C, C-O: GFN2-xTB gives ~1.52 and ~1.42 A
    assert d[0] == pytest.approx(1.52, abs=0.03) and d[1] == pytest.approx(1.42, abs=0.03)
    assert ens.stats["xtb_failed"] == 0
    assert ens.stats["duplicates"] == 3 and ens.stats["embedded"] == 4  # MMFF and xTB dedupe


# --------------------------------------------------------------------------- coverage


def test_coverage_on_tiny_pose_set(tmp_path):
    """Poses written from ETKDG conformers with the seed the recipe uses for that record: the
    raw ETKDGv3 ensemble contains the pose itself (RMSD ~0), which pins graph rebuild, atom
    order and seeding; the recipe's minimised ensemble stays close to it."""
    opts = BuildOptions(samples=10, seed=4)
    poses = tmp_path / "poses.sdf"
    writer = Chem.SDWriter(str(poses))
    for index, smiles in enumerate(["CCCCO", "C[C@H](N)C(=O)O", "CC(=O)Oc1ccccc1C(=O)O"]):
        # the graph the coverage run rebuilds: canonical SMILES of the heavy atoms
        mol, _ = prepare_molecule(Chem.MolToSmiles(Chem.MolFromSmiles(smiles)))
        embed_conformers(mol, opts.samples, molecule_seed(opts.seed, index))
        pose = Chem.Mol(mol, confId=3)
        pose.SetProp("_Name", f"pose{index}")
        writer.write(pose)
    writer.close()
    result = measure_coverage(poses, opts, sample="first", progress=False)
    assert result["n_selected"] == 3
    for row in result["rows"]:
        assert row["etkdg"]["min_rmsd"] < 0.01
        assert row["etkdg"]["n_confs"] == 10
        assert 1 <= row["recipe"]["n_confs"] <= 10
        assert row["recipe"]["min_rmsd"] < 1.0
    for method in ("etkdg", "recipe"):
        s = result["summary"][method]
        for key in ("median", "below_1.0", "below_1.5", "below_2.0", "median_confs", "failed"):
            assert key in s
        assert s["below_1.0"] == 1.0 and s["failed"] == 0
    report = write_coverage_report(tmp_path / "cov", result, "python -m rdconfvae.data coverage")
    text = report.read_text()
    assert "| ETKDGv3 raw, same samples | 3 | 10 |" in text
    saved = json.loads((tmp_path / "cov" / "results.json").read_text())
    assert saved["summary"]["recipe"]["median"] == pytest.approx(
        result["summary"]["recipe"]["median"]
    )


def test_cli_build_and_coverage(tmp_path, capsys):
    smi = write_smi(tmp_path / "two.smi", GOOD[:2])
    out = tmp_path / "cli.sdf.gz"
    argv = ["build", str(smi), str(out), "--samples", "8", "--window", "6", "--no-progress"]
    assert data_main(argv) == 0
    assert "2 ensembles" in capsys.readouterr().err
    manifest = json.loads(Path(str(out) + ".manifest.json").read_text())
    assert manifest["options"]["window"] == 6.0 and manifest["options"]["samples"] == 8
    recs = read_built_ensembles(out, energy_prop=ENERGY_PROP, weight_prop=WEIGHT_PROP)
    assert [r.name for r in recs] == ["butanol", "glycerol"]
    assert data_main(argv) == 1  # exists: refused
    assert "--resume" in capsys.readouterr().err
