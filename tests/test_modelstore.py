"""Weights on disk: the state dict beside the TorchScript file, and every damaged,
missing or mismatched file refused with a WeightsError naming the file and the check."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from rdkit import Chem

from rdconfvae.cli import main as cli_main
from rdconfvae.errors import WeightsError
from rdconfvae.hashing import sha256_file
from rdconfvae.model import featurize as fz
from rdconfvae.model import store as modelstore
from rdconfvae.model.export import STATE_DICT_FILE, export_checkpoint
from rdconfvae.model.network import ConfVAE

SMILES = "CC(=O)Nc1ccc(O)cc1"  # paracetamol


class _Payload:
    """Unpickling this writes a marker file: a pickle that runs code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(autouse=True)
def _fresh_cache():
    modelstore.clear_cache()
    yield
    modelstore.clear_cache()


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """A small random model exported the way training exports one."""
    torch.manual_seed(0)
    config = {"atom_dim": fz.ATOM_DIM, "pair_dim": fz.PAIR_DIM, "hidden": 16, "latent": 4,
              "trunk_layers": 1, "encoder_layers": 1, "decoder_layers": 1, "rbf": 8,
              "rbf_cutoff": 20.0}  # fmt: skip
    model = ConfVAE(config)
    out = tmp_path_factory.mktemp("export")
    export_checkpoint({"config": json.dumps(config), "model": model.state_dict()}, out, {}, {})
    return out


def copy_of(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "w"
    shutil.copytree(src, dst)
    return dst


def _distances(sample_distances, latent: int) -> torch.Tensor:
    g = fz.featurize(Chem.MolFromSmiles(SMILES))
    inv = torch.full((g.num_atoms,), 1.0 / (g.num_atoms - 1))
    eps = torch.randn(4, g.num_atoms, latent, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        d, _ = sample_distances(g.atom_feat, g.pair_feat, g.pair_i, g.pair_j, inv, eps, 1.0)
    return d


@pytest.mark.parametrize("which", ["shipped", "exported"])
def test_state_dict_and_torchscript_give_the_same_distances(which, exported):
    directory = modelstore.weights_dir() if which == "shipped" else exported
    scripted = modelstore.load_model(directory)
    eager, manifest = modelstore.load_state_dict_model(directory)
    assert isinstance(eager, ConfVAE) and not eager.training
    assert manifest["state_dict_sha256"] == sha256_file(directory / STATE_DICT_FILE)
    d_script = _distances(scripted.module.sample_distances, scripted.latent)
    d_eager = _distances(eager.sample_distances, scripted.latent)
    assert torch.all(d_script > 0)
    torch.testing.assert_close(d_eager, d_script, rtol=1e-5, atol=1e-5)


def test_export_lists_both_files_with_their_sha256(exported):
    manifest = json.loads((exported / "manifest.json").read_text())
    assert manifest["sha256"] == sha256_file(exported / manifest["model_file"])
    assert manifest["state_dict_sha256"] == sha256_file(exported / manifest["state_dict_file"])


@pytest.mark.parametrize("name", ["confvae.pt", STATE_DICT_FILE])
@pytest.mark.parametrize("damage", ["truncated", "altered", "missing"])
def test_damaged_or_missing_file_names_file_and_check(name, damage, exported, tmp_path):
    w = copy_of(exported, tmp_path)
    blob = (w / name).read_bytes()
    if damage == "truncated":
        (w / name).write_bytes(blob[: len(blob) // 2])
    elif damage == "altered":
        (w / name).write_bytes(blob[:-100] + bytes(b ^ 0xFF for b in blob[-100:]))
    else:
        (w / name).unlink()
    load = modelstore.load_model if name == "confvae.pt" else modelstore.load_state_dict_model
    with pytest.raises(WeightsError) as info:
        load(w)
    message = str(info.value)
    assert str(w / name) in message
    assert ("is missing" if damage == "missing" else "sha256 check failed") in message


def test_missing_or_invalid_manifest(exported, tmp_path):
    w = copy_of(exported, tmp_path)
    (w / "manifest.json").write_text("{not json")
    with pytest.raises(WeightsError, match="manifest.json: not valid JSON"):
        modelstore.load_model(w)
    (w / "manifest.json").unlink()
    with pytest.raises(WeightsError, match="manifest.json is missing"):
        modelstore.load_model(w)


@pytest.mark.parametrize(
    "edit, check",
    [
        ({"featurizer": {"version": "0", "atom_dim": fz.ATOM_DIM, "pair_dim": fz.PAIR_DIM}},
         "featurizer check failed"),
        ({"model_config": {"atom_dim": fz.ATOM_DIM + 1, "pair_dim": fz.PAIR_DIM}},
         "model_config check failed"),
        ({"sha256": "0" * 64}, "sha256 check failed"),
        ({"format": 2}, "unknown manifest format"),
    ],
)  # fmt: skip
def test_manifest_that_does_not_match(edit, check, exported, tmp_path):
    w = copy_of(exported, tmp_path)
    manifest = json.loads((w / "manifest.json").read_text())
    for key, value in edit.items():
        manifest[key] = {**manifest[key], **value} if isinstance(value, dict) else value
    (w / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(WeightsError, match=check):
        modelstore.load_model(w)


def test_state_dict_that_does_not_fit_the_config(exported, tmp_path):
    w = copy_of(exported, tmp_path)
    manifest = json.loads((w / "manifest.json").read_text())
    manifest["model_config"]["hidden"] = 32
    (w / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(WeightsError, match="state dict check failed"):
        modelstore.load_state_dict_model(w)


@pytest.mark.parametrize("name", ["confvae.pt", STATE_DICT_FILE])
def test_pickle_payload_in_a_weights_file_is_refused(name, exported, tmp_path):
    """A pickle that runs code, put in place of a weights file with the manifest's hash
    updated to match it: refused by format, and the payload never runs."""
    w = copy_of(exported, tmp_path)
    marker = tmp_path / "payload-ran"
    (w / name).write_bytes(pickle.dumps(_Payload(marker)))
    manifest = json.loads((w / "manifest.json").read_text())
    key = "sha256" if name == "confvae.pt" else "state_dict_sha256"
    manifest[key] = sha256_file(w / name)
    (w / "manifest.json").write_text(json.dumps(manifest))
    load = modelstore.load_model if name == "confvae.pt" else modelstore.load_state_dict_model
    with pytest.raises(WeightsError, match="load failed") as info:
        load(w)
    assert str(w / name) in str(info.value)
    assert not marker.exists()


def test_torch_load_in_the_package_is_weights_only():
    """Every torch.load call in the package passes weights_only=True (checkpoints)."""
    import ast

    import rdconfvae

    calls = 0
    for path in Path(rdconfvae.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "load"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "torch"
            ):
                calls += 1
                kw = {k.arg: k.value for k in node.keywords}
                assert "weights_only" in kw, f"{path}:{node.lineno}"
                value = kw["weights_only"]
                assert isinstance(value, ast.Constant) and value.value is True, (
                    f"{path}:{node.lineno}"
                )
    assert calls >= 1


def test_pickle_payload_in_a_checkpoint_is_refused(tmp_path):
    """torch.load(..., weights_only=True), as training's resume reads last.ckpt, refuses a
    checkpoint that would run code."""
    marker = tmp_path / "payload-ran"
    path = tmp_path / "last.ckpt"
    torch.save({"model": {}, "state": _Payload(marker)}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, map_location="cpu", weights_only=True)
    assert not marker.exists()


def test_cli_writes_nothing_when_the_weights_are_bad(exported, tmp_path, monkeypatch, capsys):
    w = copy_of(exported, tmp_path)
    blob = (w / "confvae.pt").read_bytes()
    (w / "confvae.pt").write_bytes(blob[:1000])
    monkeypatch.setenv("RDCONFVAE_WEIGHTS", str(w))
    smi = tmp_path / "in.smi"
    smi.write_text("CCO ethanol\nc1ccccc1O phenol\n")
    out = tmp_path / "out" / "confs.sdf"
    out.parent.mkdir()
    assert cli_main(["embed", str(smi), str(out), "-n", "2"]) == 2
    err = capsys.readouterr().err
    assert str(w / "confvae.pt") in err and "sha256 check failed" in err
    assert list(out.parent.iterdir()) == []
