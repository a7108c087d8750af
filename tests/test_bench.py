"""Tests for rdconfvae.bench: the command end to end on a few molecules, sampling, reading."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
from rdkit import Chem
from rdkit.Chem import rdDistGeom

from rdconfvae import bench

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DFT = SHARED / "dft_ensembles" / "dft_public.sdf.gz"
#: the pose tasks (platinum, validity, threads) read any SDF of experimental poses: the
#: vendored held-out CCD poses stand in for Platinum, so these tests run in any clone
POSES = Path(__file__).resolve().parent / "data" / "ccd_val_poses.sdf"
HAVE_CDPKIT = importlib.util.find_spec("CDPL") is not None


def read(out: Path) -> tuple[str, dict]:
    report = (out / "report.md").read_text(encoding="utf-8")
    return report, json.loads((out / "results.json").read_text(encoding="utf-8"))


def test_platinum_command(tmp_path):
    methods = ["etkdg", "etkdg+mmff"] + (["conforge"] if HAVE_CDPKIT else [])
    argv = ["platinum", "--data", str(POSES), "--methods", ",".join(methods), "-n", "5",
            "--limit", "3", "--out", str(tmp_path), "--no-progress"]  # fmt: skip
    assert bench.main(argv) == 0
    report, res = read(tmp_path)
    assert "python -m rdconfvae.bench platinum" in report
    assert "| etkdg+mmff |" in report
    assert len(res["molecules"]) == 3
    for row in res["molecules"]:
        assert Chem.MolFromSmiles(row["smiles"]).GetNumHeavyAtoms() == row["n_heavy"]
        for method in methods:
            entry = row["methods"][method]
            assert entry["ok"], entry["error"]
            assert 1 <= entry["n_confs"] <= 5
            assert math.isfinite(entry["min_rmsd"]) and 0.0 <= entry["min_rmsd"] < 5.0
            assert entry["cpu_s"] > 0.0
        # MMFF starts from the same ETKDG conformers and adds time
        assert row["methods"]["etkdg+mmff"]["cpu_s"] >= row["methods"]["etkdg"]["cpu_s"]
    summary = res["summary"]["methods"]
    for method in methods:
        assert 0.0 <= summary[method]["all"]["below_2.0"] <= 1.0
    if HAVE_CDPKIT:
        assert res["info"]["conforge_settings"]["max_output_conformers"] == 5
        assert "CONFORGE:" in report


def test_missing_generator_is_a_recorded_failure(tmp_path, monkeypatch):
    def unavailable(mol, n, seed, timeout):
        raise bench.MethodError("rdconfvae.embed is not available: test")

    monkeypatch.setattr(bench.methods, "run_rdconfvae", unavailable)
    argv = ["platinum", "--data", str(POSES), "--methods", "etkdg,rdconfvae,rdconfvae+mmff",
            "-n", "2", "--limit", "2", "--out", str(tmp_path), "--no-progress"]  # fmt: skip
    assert bench.main(argv) == 0
    report, res = read(tmp_path)
    for row in res["molecules"]:
        assert row["methods"]["etkdg"]["ok"]
        for method in ("rdconfvae", "rdconfvae+mmff"):
            assert not row["methods"][method]["ok"]
            assert "not available" in row["methods"][method]["error"]
    assert res["summary"]["methods"]["rdconfvae"]["n_failed"] == 2
    assert "rdconfvae.embed is not available" in report


def test_refinement_suffixes():
    assert bench.split_method("etkdg+mmffgas") == ("etkdg", "mmffgas")
    assert bench.split_method("rdconfvae") == ("rdconfvae", None)
    assert bench.parse_methods("etkdg,etkdg+mmff,etkdg+mmffgas") == [
        "etkdg",
        "etkdg+mmff",
        "etkdg+mmffgas",
    ]
    with pytest.raises(ValueError, match="optionally with"):
        bench.parse_methods("etkdg+uff")


def test_embed_with_mmff_is_a_method(tmp_path):
    argv = ["platinum", "--data", str(POSES), "--methods", "rdconfvae,rdconfvae-mmff",
            "-n", "3", "--limit", "1", "--out", str(tmp_path), "--no-progress"]  # fmt: skip
    assert bench.main(argv) == 0
    _, res = read(tmp_path)
    entries = res["molecules"][0]["methods"]
    assert entries["rdconfvae-mmff"]["ok"] and entries["rdconfvae-mmff"]["n_confs"] == 3
    # embed's own MMFF costs time on top of the same sampling
    assert entries["rdconfvae-mmff"]["cpu_s"] > entries["rdconfvae"]["cpu_s"]


def test_report_names_the_weights_and_splits_by_rotatable_bonds(tmp_path):
    argv = ["platinum", "--data", str(POSES), "--methods", "rdconfvae,etkdg", "-n", "2",
            "--limit", "2", "--out", str(tmp_path), "--no-progress"]  # fmt: skip
    assert bench.main(argv) == 0
    report, res = read(tmp_path)
    weights = res["info"]["weights"]
    manifest = json.loads((Path(weights["dir"]) / "manifest.json").read_text(encoding="utf-8"))
    assert weights["sha256"] == manifest["sha256"] and weights["epoch"] >= 1
    assert f"sha256 {manifest['sha256'][:12]}" in report
    by_rot = res["summary"]["methods"]["etkdg"]["by_rot"]
    assert list(by_rot) == [bench.rot_bin_label(lo, hi) for lo, hi in bench.ROT_BINS]
    assert sum(b["n"] for b in by_rot.values()) == 2
    for row in res["molecules"]:
        label = next(
            bench.rot_bin_label(lo, hi) for lo, hi in bench.ROT_BINS if lo <= row["n_rot"] <= hi
        )
        assert f"{label} (" in report
    # a run without the package's model does not claim weights
    argv[argv.index("rdconfvae,etkdg")] = "etkdg"
    assert bench.main(argv) == 0
    report, res = read(tmp_path)
    assert res["info"]["weights"] is None and "rdconfvae weights" not in report


def test_shards_join_into_the_unsharded_run(tmp_path):
    common = ["platinum", "--data", str(POSES), "--methods", "etkdg", "-n", "2", "--limit", "5",
              "--sample", "stratified", "--no-progress"]  # fmt: skip
    assert bench.main(common + ["--out", str(tmp_path / "whole")]) == 0
    for i in range(2):
        assert bench.main(common + ["--shard", f"{i}/2", "--out", str(tmp_path / f"s{i}")]) == 0
    _, shard0 = read(tmp_path / "s0")
    assert len(shard0["molecules"]) == 3 and shard0["info"]["shard"] == "0/2"
    parts = f"{tmp_path / 's1'},{tmp_path / 's0'}"  # any order
    argv = ["platinum", "--merge", parts, "--out", str(tmp_path / "joined")]
    assert bench.main(argv) == 0
    _, whole = read(tmp_path / "whole")
    report, joined = read(tmp_path / "joined")
    assert [r["name"] for r in joined["molecules"]] == [r["name"] for r in whole["molecules"]]
    rmsd = [
        [r["methods"]["etkdg"]["min_rmsd"] for r in res["molecules"]] for res in (whole, joined)
    ]
    assert rmsd[0] == rmsd[1]  # same seed, same molecules: the same conformers
    assert (
        joined["summary"]["methods"]["etkdg"]["all"] == whole["summary"]["methods"]["etkdg"]["all"]
    )
    assert "shard" not in joined["info"] and len(joined["info"]["shards"]) == 2
    assert "run as 2 shards" in report and "--shard 1/2" in report


def test_merge_refuses_parts_of_different_runs(tmp_path, capsys):
    common = ["platinum", "--data", str(POSES), "--methods", "etkdg", "-n", "1", "--limit", "2",
              "--no-progress"]  # fmt: skip
    assert bench.main(common + ["--shard", "0/2", "--out", str(tmp_path / "a")]) == 0
    assert bench.main(common + ["--shard", "1/2", "--seed", "7", "--out", str(tmp_path / "b")]) == 0
    assert bench.main(common + ["--out", str(tmp_path / "whole")]) == 0
    out = ["--out", str(tmp_path / "joined")]
    cases = {
        f"{tmp_path / 'a'},{tmp_path / 'b'}": "seed 7 != 42",
        str(tmp_path / "a"): "shards 1/2 missing",
        f"{tmp_path / 'a'},{tmp_path / 'a'}": "given twice",
        f"{tmp_path / 'a'},{tmp_path / 'whole'}": "is not a shard",
        str(tmp_path / "nowhere"): "not found",
    }
    for dirs, message in cases.items():
        assert bench.main(["platinum", "--merge", dirs] + out) == 2
        assert message in capsys.readouterr().err
    assert bench.main(["validity", "--merge", str(tmp_path / "a")] + out) == 2
    assert not (tmp_path / "joined" / "report.md").exists()
    with pytest.raises(SystemExit):
        bench.main(common + ["--shard", "2/2"])


def test_both_dielectrics_refine_the_same_base_conformers(tmp_path):
    methods = ["etkdg", "etkdg+mmff", "etkdg+mmffgas"]
    argv = ["platinum", "--data", str(POSES), "--methods", ",".join(methods), "-n", "3",
            "--limit", "1", "--out", str(tmp_path), "--no-progress"]  # fmt: skip
    assert bench.main(argv) == 0
    report, res = read(tmp_path)
    entries = res["molecules"][0]["methods"]
    assert all(entries[m]["ok"] and entries[m]["n_confs"] == 3 for m in methods)
    assert entries["etkdg+mmff"]["min_rmsd"] != entries["etkdg+mmffgas"]["min_rmsd"]
    assert "| etkdg+mmffgas |" in report and "gas phase" in report


@pytest.mark.shared_data
def test_ensembles_command(tmp_path):
    """On the shared DFT ensembles: the reader of that file and the command together."""
    argv = ["ensembles", "--data", str(DFT), "--methods", "etkdg", "--limit", "2",
            "--out", str(tmp_path), "--no-progress"]  # fmt: skip
    assert bench.main(argv) == 0
    _, res = read(tmp_path)
    for row in res["molecules"]:
        assert row["n_requested"] == 2 * row["n_ref"] and row["n_ref"] > 1
        entry = row["methods"]["etkdg"]
        assert 0.0 <= entry["cov_r"] <= 1.0 and entry["mat_r"] >= 0.0


def test_validity_command(tmp_path):
    pytest.importorskip("posebusters")
    argv = ["validity", "--data", str(POSES), "--methods", "etkdg", "-n", "2",
            "--limit", "1", "--out", str(tmp_path), "--no-progress"]  # fmt: skip
    assert bench.main(argv) == 0
    _, res = read(tmp_path)
    s = res["summary"]["methods"]["etkdg"]
    assert s["n_checked"] == 2 and 0.0 <= s["share_pass"] <= 1.0
    assert res["info"]["energy_references"] <= 1  # one reference ensemble per molecule
    assert s["eval_cpu_s"] > 0.0 and "internal_energy" in s["per_check_share"]


def fake_records(n_rots: list[int]) -> list[bench.Record]:
    mol = Chem.MolFromSmiles("C")
    return [bench.Record(f"m{i:03d}", mol, "C", 1, r) for i, r in enumerate(n_rots)]


def test_stratified_sample_is_deterministic_and_proportional():
    n_rots = [i % 13 for i in range(200)]
    records = fake_records(n_rots)
    first = bench.select_records(records, 40, "stratified")
    again = bench.select_records(list(records), 40, "stratified")
    assert [r.name for r in first] == [r.name for r in again]
    assert len(first) == 40 and len({r.name for r in first}) == 40
    assert [r.name for r in first] == sorted(r.name for r in first)  # file order kept
    for b, (lo, hi) in enumerate(bench.ROT_BINS):
        share_all = sum(lo <= r <= hi for r in n_rots) / len(n_rots)
        share_sample = sum(lo <= r.n_rot <= hi for r in first) / 40
        assert abs(share_all - share_sample) <= 1 / 40 + 1e-9, b
    assert [r.name for r in bench.select_records(records, 3, "first")] == ["m000", "m001", "m002"]
    assert len(bench.select_records(records, None, "stratified")) == 200


def test_ensembles_reader_groups_conformers_and_rebuilds_stereo(tmp_path):
    mol = Chem.AddHs(Chem.MolFromSmiles("C[C@H](N)C(=O)O"))
    params = rdDistGeom.ETKDGv3()
    params.randomSeed = 7
    rdDistGeom.EmbedMultipleConfs(mol, 3, params)
    path = tmp_path / "ens.sdf"
    with Chem.SDWriter(str(path)) as writer:
        for conf in mol.GetConformers():
            mol.SetProp("_Name", f"ala/c{conf.GetId()}")
            writer.write(mol, confId=conf.GetId())
    (rec,) = bench.load_records(path, "ensembles")
    assert rec.name == "ala" and rec.ref.GetNumConformers() == 3
    assert rec.smiles == Chem.MolToSmiles(Chem.MolFromSmiles("C[C@H](N)C(=O)O"))
    graph = bench.input_mol(rec)
    assert graph.GetNumConformers() == 0 and graph.GetNumAtoms() == mol.GetNumAtoms()


def test_bad_method_name_is_rejected():
    with pytest.raises(SystemExit):
        bench.main(["platinum", "--methods", "etkdg,omega"])


def test_threads_task_reports_identical_coordinates(tmp_path):
    argv = ["threads", "--data", str(POSES), "-n", "4", "--limit", "2", "--threads", "2",
            "--out", str(tmp_path)]  # fmt: skip
    assert bench.main(argv) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["summary"]["ok"] == 2
    assert res["summary"]["identical_coordinates"] == 2
    assert res["summary"]["total_wall_1_s"] > 0


def test_speed_task_small_molecules(tmp_path):
    argv = ["speed", "--parts", "small", "--repeats", "1", "--out", str(tmp_path)]
    assert bench.main(argv) == 0
    report, res = read(tmp_path)
    assert "python -m rdconfvae.bench speed" in report
    assert [r["molecule"] for r in res["small"]] == list(bench.speed.SMALL_MOLECULES)
    for row in res["small"]:
        assert row["heavy_atoms"] == Chem.MolFromSmiles(row["smiles"]).GetNumAtoms()
        assert row["rdconfvae_cpu_s"] > 0 and row["etkdg_cpu_s"] > 0
        assert row["ratio"] == pytest.approx(row["rdconfvae_cpu_s"] / row["etkdg_cpu_s"])
        assert f"| {row['molecule']} | {row['heavy_atoms']} |" in report
    assert "first_call" not in res and "cli" not in res


def test_speed_task_rejects_unknown_part(tmp_path):
    with pytest.raises(SystemExit):
        bench.main(["speed", "--parts", "small,warp", "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        bench.main(["speed", "--parts", "small", "--repeats", "0", "--out", str(tmp_path)])


@pytest.mark.slow
def test_speed_task_first_call_and_cli(tmp_path):
    argv = ["speed", "--parts", "first-call,cli", "--limit", "3", "--repeats", "1",
            "--out", str(tmp_path)]  # fmt: skip
    assert bench.main(argv) == 0
    report, res = read(tmp_path)
    first = res["first_call"]
    assert first["first_embed_wall_s"] > first["import_torch_wall_s"] > 0
    cli = res["cli"]
    assert cli["molecules"] == 3
    for w in (1, 2):
        assert cli[f"workers_{w}_molecules_per_s"] == pytest.approx(3 / cli[f"workers_{w}_wall_s"])
    assert "2 workers against 1" in report


def test_rotatable_bond_bins_are_named_as_the_tables_print_them():
    from rdconfvae.bench import ROT_BINS, rot_bin_label

    assert [rot_bin_label(lo, hi) for lo, hi in ROT_BINS] == ["0-2", "3-4", "5-6", "7-9", "10+"]
