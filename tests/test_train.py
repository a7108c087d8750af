"""The trainer: tiny preset end to end, resume, export, and the exclusion guard."""

from __future__ import annotations

import json

import pytest
from _molecules import TRAIN_SMILES
from rdkit import Chem
from rdkit.Chem import AllChem

import rdconfvae
from rdconfvae.errors import DataError
from rdconfvae.model import store as modelstore
from rdconfvae.train import main as train_main

SMILES = TRAIN_SMILES


@pytest.fixture(scope="module")
def train_sdf(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "train.sdf"
    writer = Chem.SDWriter(str(path))
    k = 0
    for rep in range(3):
        for i, smi in enumerate(SMILES):
            mol = Chem.AddHs(Chem.MolFromSmiles(smi))
            AllChem.EmbedMolecule(mol, randomSeed=100 * rep + i)
            mol.SetProp("_Name", f"m{k}")
            writer.write(mol)
            k += 1
    writer.close()
    return path


def test_tiny_training_resume_and_export(train_sdf, tmp_path, monkeypatch):
    out, weights = tmp_path / "run", tmp_path / "weights"
    args = ["--preset", "tiny", "--data", str(train_sdf), "--out", str(out)]
    assert train_main([*args, "--max-epochs", "1"]) == 0
    state = json.loads(__import__("torch").load(out / "last.ckpt", weights_only=True)["state"])
    assert state["epoch"] == 1
    assert train_main([*args, "--max-epochs", "2", "--resume", "--export", str(weights)]) == 0
    manifest = json.loads((weights / "manifest.json").read_text())
    assert manifest["training"]["epochs"] >= 1
    assert len(manifest["training"]["data_hash"]) == 64
    assert "val_median_min_rmsd" in manifest["validation"]
    # the machine of every epoch: float rounding, hence the trajectory, depends on it
    from rdconfvae.train.loop import machine

    assert manifest["training"]["machines"] == [machine()]
    assert "threads" in machine() and "torch" in machine()
    state = json.loads(__import__("torch").load(out / "last.ckpt", weights_only=True)["state"])
    assert state["epoch"] == 2 and len(state["history"]) == 2
    # the exported model is usable by the public API
    monkeypatch.setenv("RDCONFVAE_WEIGHTS", str(weights))
    modelstore.clear_cache()
    try:
        mol = Chem.AddHs(Chem.MolFromSmiles("CCOC(=O)c1ccccc1"))
        assert rdconfvae.embed(mol, n=3, seed=0) == [0, 1, 2]
    finally:
        modelstore.clear_cache()


def test_corrupted_weights_are_refused(tmp_path, monkeypatch, train_sdf):
    weights = tmp_path / "w"
    train_main(
        [
            "--preset",
            "tiny",
            "--data",
            str(train_sdf),
            "--out",
            str(tmp_path / "r"),
            "--max-epochs",
            "1",
            "--export",
            str(weights),
        ]
    )
    blob = bytearray((weights / "confvae.pt").read_bytes())
    blob[-100] ^= 0xFF
    (weights / "confvae.pt").write_bytes(bytes(blob))
    modelstore.clear_cache()
    try:
        with pytest.raises(rdconfvae.WeightsError, match="sha256"):
            modelstore.load_model(weights)
    finally:
        modelstore.clear_cache()


def test_benchmark_molecules_are_refused(tmp_path):
    """Imatinib is a Platinum ligand (CCD STI): a training file holding it must be refused."""
    path = tmp_path / "leak.sdf"
    writer = Chem.SDWriter(str(path))
    for i, smi in enumerate(
        SMILES[:4] + ["Cc1ccc(cc1Nc2nccc(n2)c3cccnc3)NC(=O)c4ccc(cc4)CN5CCN(CC5)C"]
    ):
        mol = Chem.AddHs(Chem.MolFromSmiles(smi))
        AllChem.EmbedMolecule(mol, randomSeed=i)
        mol.SetProp("_Name", f"x{i}")
        writer.write(mol)
    writer.close()
    with pytest.raises(DataError, match="exclusion"):
        from rdconfvae.train import train

        train(path, tmp_path / "run", "tiny")


def test_resumed_run_matches_an_uninterrupted_one(train_sdf, tmp_path, monkeypatch):
    """Training is deterministic and --resume continues exactly: the shipped weights'
    command reproduces them whether or not the run was split across sittings, at an
    epoch's end (1 + 1 epochs) or in its middle (SIGTERM after a step of epoch 2)."""
    import os
    import signal

    import torch

    from rdconfvae.train import loop

    straight, split, mid = tmp_path / "straight", tmp_path / "split", tmp_path / "mid"
    base = ["--preset", "tiny", "--data", str(train_sdf)]
    handlers = [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)]
    assert train_main([*base, "--out", str(straight), "--max-epochs", "2"]) == 0
    # the stop-on-signal handlers are training's own: the caller's come back afterwards
    assert [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)] == handlers
    assert train_main([*base, "--out", str(split), "--max-epochs", "1"]) == 0
    assert train_main([*base, "--out", str(split), "--max-epochs", "2", "--resume"]) == 0

    a = torch.load(straight / "last.ckpt", weights_only=True)
    steps_per_epoch = json.loads(a["state"])["history"][0]["step"]
    assert steps_per_epoch >= 2  # else no step ends in the middle of an epoch
    real_step, calls = loop.train_step, []

    def stopping_step(*args, **kwargs):  # as `kill -TERM` after the first step of epoch 2
        calls.append(1)
        out = real_step(*args, **kwargs)
        if len(calls) == steps_per_epoch + 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    monkeypatch.setattr(loop, "train_step", stopping_step)
    assert train_main([*base, "--out", str(mid), "--max-epochs", "2"]) == 0
    monkeypatch.setattr(loop, "train_step", real_step)
    stopped = json.loads(torch.load(mid / "last.ckpt", weights_only=True)["state"])
    assert (stopped["epoch"], stopped["position"]) == (1, 1)
    assert train_main([*base, "--out", str(mid), "--max-epochs", "2", "--resume"]) == 0

    hist_a = json.loads(a["state"])["history"]
    for other in (split, mid):
        b = torch.load(other / "last.ckpt", weights_only=True)
        hist_b = json.loads(b["state"])["history"]
        assert len(hist_a) == len(hist_b) == 2
        for key in ("val_median_min_rmsd", "val_share_below_1A", "train_loss", "train_kl"):
            assert hist_a[-1][key] == hist_b[-1][key], (other.name, key)
        for name, tensor in a["model"].items():
            assert torch.equal(tensor, b["model"][name]), (other.name, name)


def test_architecture_options_train_export_and_embed(train_sdf, tmp_path, monkeypatch):
    """A preset with the v2 options (path layers, a global latent) trains, exports a
    TorchScript file whose manifest records them, and embeds through the public API; the
    default preset adds no option to the model config (v1 stays v1)."""
    from rdconfvae.train import PRESETS, model_options, train

    assert model_options(PRESETS["default"]) == {}
    assert model_options(PRESETS["v2-path"]) == {"path_layers": 2, "path_iters": 1}
    out, weights = tmp_path / "run", tmp_path / "weights"
    options = {"path_layers": 1, "path_iters": 2, "global_latent": 2}
    train(train_sdf, out, "tiny", export_dir=weights, overrides={"max_epochs": 1, **options})
    manifest = json.loads((weights / "manifest.json").read_text())
    assert {k: manifest["model_config"][k] for k in options} == options
    monkeypatch.setenv("RDCONFVAE_WEIGHTS", str(weights))
    modelstore.clear_cache()
    try:
        mol = Chem.AddHs(Chem.MolFromSmiles("CCOC(=O)c1ccccc1"))
        assert rdconfvae.embed(mol, n=3, seed=0) == [0, 1, 2]
        pos = mol.GetConformer(0).GetPositions()
        # the C=O bond of the ester (atoms 3-4) is a real bond length
        assert 1.0 < float(((pos[3] - pos[4]) ** 2).sum() ** 0.5) < 1.6
    finally:
        modelstore.clear_cache()


def test_cosine_schedule_and_autoencoder_warmup_resume_exactly(train_sdf, tmp_path, monkeypatch):
    """The v2 recipe's options: an autoencoder warm-up (the first steps pay no KL cost for
    the encoder, so the latent carries information from the start) and a per-step cosine
    learning rate ending at lr * lr_final; a run stopped in the middle of an epoch (as by
    SIGTERM) and resumed ends with the same parameters as an uninterrupted one, and the
    learning rate is the schedule's."""
    import math
    import os
    import signal

    import torch

    from rdconfvae.train import loop, train

    opts = {"lr_schedule": "cosine", "lr_final": 0.1, "ae_warmup_steps": 3, "max_epochs": 2}
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(train_sdf, straight, "tiny", overrides=opts)
    a = torch.load(straight / "last.ckpt", weights_only=True)
    steps = json.loads(a["state"])["history"][-1]["step"]
    assert steps > opts["ae_warmup_steps"] + 1
    real_step, calls = loop.train_step, []

    def stopping_step(*args, **kwargs):  # `kill -TERM` during the warm-up
        calls.append(kwargs["autoencode"])
        out = real_step(*args, **kwargs)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    monkeypatch.setattr(loop, "train_step", stopping_step)
    train(train_sdf, split, "tiny", overrides=opts)
    monkeypatch.setattr(loop, "train_step", real_step)
    assert calls == [True, True]
    train(train_sdf, split, "tiny", resume=True, overrides=opts)
    b = torch.load(split / "last.ckpt", weights_only=True)
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    lr = a["optimizer"]["param_groups"][0]["lr"]
    # the last step ran at (steps - 1) / steps of the anneal: just above lr * lr_final
    expected = 1e-3 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (steps - 1) / steps)))
    assert lr == pytest.approx(expected, rel=1e-9)
    assert 1e-4 < lr < 2e-4


def test_resume_refuses_a_checkpoint_of_another_recipe(train_sdf, tmp_path, capsys):
    """A run carried across sittings must go on with the recipe it started with: resuming
    under another learning-rate schedule, another rate, or (cosine) another schedule length
    is refused with the differing fields named, and nothing is trained; the length of a
    plateau run and the time budget may change (extending a stopped run)."""
    import torch

    from rdconfvae.train import train
    from rdconfvae.train.presets import Preset, resume_conflicts

    cosine = {"lr_schedule": "cosine", "max_epochs": 2}
    run = tmp_path / "run"
    train(train_sdf, run, "tiny", overrides=cosine)
    before = (run / "last.ckpt").read_bytes()
    with pytest.raises(DataError, match=r"lr: 0\.001 -> 0\.002"):
        train(train_sdf, run, "tiny", resume=True, overrides={**cosine, "lr": 2e-3})
    with pytest.raises(DataError, match="max_epochs: 2 -> 3"):
        train(train_sdf, run, "tiny", resume=True, overrides={**cosine, "max_epochs": 3})
    args = ["--preset", "tiny", "--data", str(train_sdf), "--out", str(run), "--resume"]
    assert train_main(args) == 2  # the CLI: the tiny preset is a plateau run
    assert "lr_schedule: 'cosine' -> 'plateau'" in capsys.readouterr().err
    assert (run / "last.ckpt").read_bytes() == before
    saved = json.loads(torch.load(run / "last.ckpt", weights_only=True)["preset"])
    assert resume_conflicts(saved, Preset(**saved)) == []
    # an older checkpoint lacks the newer fields: they had their defaults then
    old = {k: v for k, v in saved.items() if k not in ("lr_schedule", "ae_warmup_steps")}
    assert resume_conflicts(old, Preset(**old)) == []
    # a plateau run may be extended; a cosine run's budget may change
    plateau = {**saved, "lr_schedule": "plateau"}
    assert resume_conflicts(plateau, Preset(**{**plateau, "max_epochs": 9})) == []
    assert resume_conflicts(saved, Preset(**{**saved, "budget_hours": 3})) == []


def test_carried_runs_resume_under_their_preset():
    """Every run carried in ``benchmarks/training/PRESET/`` (docs/retraining.md) can go on:
    its checkpoints hold the recipe of the preset it is named after, and their parameters
    load into that preset's network. A change to a preset that a carried run still needs
    fails here, not hours into a later sitting."""
    from pathlib import Path

    import torch

    from rdconfvae.model.network import ConfVAE
    from rdconfvae.train.presets import PRESETS, model_config, resume_conflicts

    root = Path(__file__).resolve().parents[1] / "benchmarks" / "training"
    runs = sorted(p for p in root.glob("*") if (p / "last.ckpt").exists())
    for run in runs:
        assert run.name in PRESETS, f"{run}: not named after a preset"
        preset = PRESETS[run.name]
        for name in ("last.ckpt", "best.ckpt"):
            ckpt = torch.load(run / name, map_location="cpu", weights_only=True)
            assert resume_conflicts(json.loads(ckpt["preset"]), preset) == [], run / name
            config = model_config(preset)
            assert json.loads(ckpt["config"]) == config, run / name
            ConfVAE(config).load_state_dict(ckpt["model"])  # strict: same tensors


def test_autoencoder_steps_pay_no_encoder_kl():
    """With ``autoencode`` the loss drops the encoder-side KL term: the same batch scores
    lower by (1 - kl_balance) * max(KL, free bits), and an unknown schedule is refused."""
    import numpy as np
    import torch

    from rdconfvae.model import featurize as fz
    from rdconfvae.model.network import ConfVAE, default_config
    from rdconfvae.train import PRESETS
    from rdconfvae.train.data import collate, featurize_records
    from rdconfvae.train.objective import batch_loss
    from rdconfvae.train.presets import Preset

    with pytest.raises(ValueError, match="lr_schedule"):
        Preset(lr_schedule="linear")
    preset = PRESETS["tiny"]
    config = default_config(fz.ATOM_DIM, fz.PAIR_DIM)
    config.update(hidden=preset.hidden, latent=preset.latent, trunk_layers=2)
    torch.manual_seed(0)
    model = ConfVAE(config)
    mol = Chem.AddHs(Chem.MolFromSmiles("CCOC(=O)c1ccccc1"))
    AllChem.EmbedMolecule(mol, randomSeed=1)
    from rdconfvae.data import MolRecord

    record = MolRecord(name="m", mol=mol, weights=np.ones(1), energies=None, split="train")
    examples, _ = featurize_records([record], preset.max_heavy_atoms)
    batch = collate(examples)
    eps = torch.zeros(examples[0].graph.num_atoms, preset.latent)
    vae, parts = batch_loss(model, batch, preset, eps)
    ae, _ = batch_loss(model, batch, preset, eps, autoencode=True)
    cost = (1 - preset.kl_balance) * max(parts["kl"], preset.free_bits)
    assert (vae - ae).item() == pytest.approx(cost, rel=1e-4)
