"""Multi-process training: DistributedDataParallel (gloo) on 2 CPU processes."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import asdict

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from _molecules import TRAIN_SMILES
from rdkit import Chem
from rdkit.Chem import AllChem

from rdconfvae.data import MolRecord
from rdconfvae.model import featurize as fz
from rdconfvae.model.network import ConfVAE, default_config
from rdconfvae.train import PRESETS, Preset, featurize_records, train_step

# 11 molecules (the sugar left out): the second step's batch of 5 splits 3 + 2 over the ranks
SMILES = [s for s in TRAIN_SMILES if s != "OCC1OC(O)CC1O"][:11]
STEPS = [list(range(0, 6)), list(range(6, 11)), list(range(0, 11, 2))]


def _examples():
    recs = []
    for i, smi in enumerate(SMILES):
        mol = Chem.AddHs(Chem.MolFromSmiles(smi))
        AllChem.EmbedMolecule(mol, randomSeed=i)
        recs.append(MolRecord(name=f"m{i}", mol=mol, weights=np.ones(1), energies=None))
    examples, skipped = featurize_records(recs, 70)
    assert not skipped
    return examples


def _run(rank: int, world: int, init_file: str, out_dir: str) -> None:
    """A few train_step calls on this rank; parameters and losses saved for the parent."""
    torch.set_num_threads(1)
    if world > 1:
        torch.distributed.init_process_group(
            "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world
        )
    preset = Preset(**{**asdict(PRESETS["tiny"]), "batch_size": 6})
    config = default_config(fz.ATOM_DIM, fz.PAIR_DIM)
    for key in ("hidden", "latent", "trunk_layers", "encoder_layers", "decoder_layers"):
        config[key] = getattr(preset, key)
    torch.manual_seed(0)
    model = ConfVAE(config)
    net = (
        torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
        if world > 1
        else model
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(1)
    examples = _examples()
    losses = []
    for idx in STEPS:
        parts = train_step(
            net, opt, [examples[i] for i in idx], preset, gen, torch.device("cpu"), rank, world
        )
        losses.append(parts["loss"])
    params = torch.cat([p.detach().flatten() for p in model.parameters()])
    torch.save({"params": params, "losses": losses}, os.path.join(out_dir, f"w{world}r{rank}.pt"))
    if world > 1:
        torch.distributed.destroy_process_group()


def test_two_processes_agree_with_one(tmp_path):
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(target=_run, args=(r, 2, str(tmp_path / "init"), str(tmp_path)))
        for r in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0, 0]
    _run(0, 1, "", str(tmp_path))
    r0, r1, single = (
        torch.load(tmp_path / f, weights_only=True) for f in ("w2r0.pt", "w2r1.pt", "w1r0.pt")
    )
    # DDP keeps the ranks in lock-step: identical parameters after three Adam steps
    assert torch.equal(r0["params"], r1["params"])
    assert r0["losses"] == r1["losses"]
    # and the sharded global batch is the single-process batch: same loss, same step
    assert np.allclose(r0["losses"], single["losses"], rtol=1e-4, atol=1e-4)
    moved = (single["params"] - r0["params"]).abs().max()
    assert float(moved) < 1e-4


@pytest.mark.slow
def test_torchrun_end_to_end(tmp_path):
    """``torchrun --nproc_per_node=2 -m rdconfvae.train`` trains, checkpoints and exports."""
    data = tmp_path / "train.sdf"
    writer = Chem.SDWriter(str(data))
    for rep in range(4):
        for i, smi in enumerate(SMILES):
            mol = Chem.AddHs(Chem.MolFromSmiles(smi))
            AllChem.EmbedMolecule(mol, randomSeed=100 * rep + i)
            mol.SetProp("_Name", f"m{rep}_{i}")
            writer.write(mol)
    writer.close()
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "-m",
        "rdconfvae.train",
        "--preset",
        "tiny",
        "--data",
        str(data),
        "--out",
        str(tmp_path / "run"),
        "--max-epochs",
        "1",
        "--export",
        str(tmp_path / "w"),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert '"world_size": 2' in done.stdout
    assert (tmp_path / "run" / "last.ckpt").exists()
    assert (tmp_path / "w" / "manifest.json").exists() and (tmp_path / "w" / "confvae.pt").exists()
