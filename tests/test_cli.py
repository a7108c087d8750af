"""Command line: embed a SMILES file to SDF, failures to the error file, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

from rdkit import Chem

from rdconfvae.cli import main


def test_embed_smiles_file(tmp_path):
    src = tmp_path / "in.smi"
    src.write_text("CCO ethanol\nnot_a_smiles broken\nc1ccccc1O phenol\n")
    out = tmp_path / "out.sdf"
    assert main(["embed", str(src), str(out), "-n", "3", "--seed", "1"]) == 1  # one failure
    mols = list(Chem.SDMolSupplier(str(out), removeHs=False))
    assert [m.GetProp("_Name") for m in mols] == ["ethanol"] * 3 + ["phenol"] * 3
    assert [m.GetIntProp("conformer_id") for m in mols] == [0, 1, 2] * 2
    assert all(m.GetConformer().Is3D() and m.GetNumAtoms() > 3 for m in mols)
    errors = (tmp_path / "out.sdf.errors.tsv").read_text()
    assert errors.startswith("broken\tinvalid SMILES")


def test_info_and_version():
    out = subprocess.run(
        [sys.executable, "-m", "rdconfvae", "info"], capture_output=True, text=True, check=True
    )
    info = json.loads(out.stdout)
    assert len(info["sha256"]) == 64 and info["training"]["data_hash"]
    version = subprocess.run(
        [sys.executable, "-m", "rdconfvae", "--version"], capture_output=True, text=True
    )
    assert version.stdout.startswith("rdconfvae ")


def test_unreadable_input_is_a_run_failure(tmp_path):
    assert main(["embed", str(tmp_path / "missing.smi"), str(tmp_path / "o.sdf")]) == 2
