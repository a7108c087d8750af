"""The checkpointed progress of a run and the checkpoint file that carries it.

A checkpoint (``OUT/last.ckpt``, ``OUT/best.ckpt``) is a ``torch.save`` dict with the keys
``model``, ``optimizer``, ``scheduler``, ``generator`` (the state of the torch generator that
draws the posterior noise), ``state`` (:class:`TrainState` as JSON), ``config`` and ``preset``
(JSON). The format is that of every earlier version, so ``--resume`` continues old runs.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from rdconfvae.errors import DataError
from rdconfvae.train.presets import Preset, resume_conflicts

__all__ = ["TrainState", "load_checkpoint", "save_checkpoint"]


@dataclass
class TrainState:
    """Progress of a run, kept across sittings (``--resume``) and identical on every rank."""

    epoch: int = 0  # finished epochs
    step: int = 0  # optimisation steps taken
    best: float = math.inf  # best validation median min-RMSD (A) so far
    bad_epochs: int = 0  # epochs since it last improved
    history: list[dict[str, Any]] = field(default_factory=list)  # validation per epoch
    elapsed_s: float = 0.0  # training wall time over all sittings
    position: int = 0  # batches done in the epoch in progress
    # the running (exponential) train averages of the epoch in progress; None between epochs,
    # so a run stopped in the middle of an epoch reports the same train metrics after --resume
    running: dict[str, float] | None = None

    def to_json(self) -> str:
        """The checkpoint's ``state``: the fields in order, ``running`` only mid-epoch."""
        data = asdict(self)
        if self.running is None:
            del data["running"]
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> TrainState:
        return cls(**json.loads(text))


def save_checkpoint(
    path: Path,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.ReduceLROnPlateau,
    gen: torch.Generator,
    state: TrainState,
    config: dict[str, Any],
    preset: Preset,
) -> None:
    """Write a checkpoint atomically (a temporary file, then a rename)."""
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "generator": gen.get_state(),
            "state": state.to_json(),
            "config": json.dumps(config),
            "preset": json.dumps(asdict(preset)),
        },
        tmp,
    )
    os.replace(tmp, path)


def load_checkpoint(
    path: Path,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.ReduceLROnPlateau,
    gen: torch.Generator,
    device: torch.device,
    preset: Preset,
) -> TrainState:
    """Restore model, optimiser, scheduler and generator from ``path``; returns its state.

    Refuses (:class:`DataError`, before restoring anything) a checkpoint whose recipe differs
    from ``preset``'s (:func:`resume_conflicts`): the run would silently mix two."""
    ckpt = torch.load(path, map_location=device, weights_only=True)
    conflicts = resume_conflicts(json.loads(ckpt["preset"]), preset)
    if conflicts:
        raise DataError(
            f"{path} was trained with another recipe than this preset "
            f"({'; '.join(conflicts)}); resume it with the preset it was started "
            "with, or start a new run in another --out"
        )
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    sched.load_state_dict(ckpt["scheduler"])
    gen.set_state(ckpt["generator"])
    return TrainState.from_json(ckpt["state"])
