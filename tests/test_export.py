"""Export: the shipped weights are never overwritten unless asked."""

from __future__ import annotations

import json

import pytest
import torch

from rdconfvae.errors import WeightsError
from rdconfvae.model import export
from rdconfvae.model import featurize as fz
from rdconfvae.model import store as modelstore
from rdconfvae.model.network import ConfVAE
from rdconfvae.train import main as train_main

CONFIG = {"atom_dim": fz.ATOM_DIM, "pair_dim": fz.PAIR_DIM, "hidden": 8, "latent": 2,
          "trunk_layers": 1, "encoder_layers": 1, "decoder_layers": 1, "rbf": 4,
          "rbf_cutoff": 20.0}  # fmt: skip


def checkpoint() -> dict:
    torch.manual_seed(0)
    return {"config": json.dumps(CONFIG), "model": ConfVAE(CONFIG).state_dict()}


def test_the_shipped_weights_directory_is_known(monkeypatch):
    monkeypatch.delenv("RDCONFVAE_WEIGHTS", raising=False)
    shipped = export.shipped_weights_dirs()
    assert modelstore.weights_dir().resolve() in shipped
    assert all((d / export.MANIFEST_FILE).exists() for d in shipped)


def test_export_refuses_the_shipped_weights(tmp_path, monkeypatch):
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    (shipped / export.MANIFEST_FILE).write_text('{"format": 1}\n')
    monkeypatch.setattr(export, "shipped_weights_dirs", lambda: [shipped.resolve()])
    with pytest.raises(WeightsError, match="holds the shipped weights") as info:
        export.export_checkpoint(checkpoint(), shipped, {}, {})
    assert "RDCONFVAE_WEIGHTS" in str(info.value)
    assert sorted(p.name for p in shipped.iterdir()) == [export.MANIFEST_FILE]
    assert (shipped / export.MANIFEST_FILE).read_text() == '{"format": 1}\n'
    # asked explicitly: replaced
    export.export_checkpoint(checkpoint(), shipped, {}, {}, overwrite_shipped=True)
    assert json.loads((shipped / export.MANIFEST_FILE).read_text())["model_config"] == CONFIG
    # anywhere else needs no flag
    export.export_checkpoint(checkpoint(), tmp_path / "elsewhere", {}, {})
    assert (tmp_path / "elsewhere" / export.STATE_DICT_FILE).is_file()


def test_train_refuses_to_export_over_the_shipped_weights_before_training(tmp_path, capsys):
    """The real shipped directory: refused up front (no data read, no run directory)."""
    shipped = export.shipped_weights_dirs()[0]
    before = {p.name: p.stat().st_mtime_ns for p in shipped.iterdir()}
    run = tmp_path / "run"
    argv = ["--preset", "tiny", "--data", str(tmp_path / "absent.sdf"), "--out", str(run),
            "--export", str(shipped)]  # fmt: skip
    assert train_main(argv) == 2
    assert "holds the shipped weights" in capsys.readouterr().err
    assert not run.exists()
    assert {p.name: p.stat().st_mtime_ns for p in shipped.iterdir()} == before
