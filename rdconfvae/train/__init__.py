"""Train the ConfVAE: ``python -m rdconfvae.train --preset default``.

Bilevel objective per molecule (one experimental conformation R*):

    z ~ q(z | G, R*)                         posterior sample (reparameterised)
    d = D(z, G)                              log-normal distances on all heavy pairs
    R = solve(d)                             MDS + SMACOF; gradients flow through
                                             the last ``grad_steps`` updates
    loss = coord_weight * RMSD_align(R, R*)  outer problem (Kabsch, mirror allowed:
                                             distances cannot tell mirror images apart)
         + dist_weight * NLL(log d* | D)     auxiliary distance loss
         + beta * KL(q || p)                 per atom, nats; balanced (the prior is pulled
                                             to the posterior more than the reverse) with
                                             free bits so the latent stays in use

Validation (drives checkpoint choice and early stopping, and tracks the Platinum
benchmark): for each held-out molecule draw ``val_samples`` conformers from the
prior, solve, and take the minimum heavy-atom RMSD to its experimental pose;
report the median and the share below 1 Angstrom.

Training data: the CCD set (``python -m rdconfvae.data ccd DIR``, built on demand
when ``--data DIR`` holds none yet), or any SDF with 3D records (one molecule per
record, split by name). Benchmark molecules are excluded when the set is built
and checked again here.

Modules: :mod:`~rdconfvae.train.presets` (hyper-parameters), :mod:`~rdconfvae.train.data`
(records, exclusions, batches), :mod:`~rdconfvae.train.objective` (loss, step, validation),
:mod:`~rdconfvae.train.state` (the checkpointed progress and the checkpoint file),
:mod:`~rdconfvae.train.loop` (:func:`train`) and :mod:`~rdconfvae.train.cli`.
"""

from __future__ import annotations

from rdconfvae.train.cli import main
from rdconfvae.train.data import (
    Batch,
    Example,
    check_exclusions,
    checkpoint_selection,
    collate,
    dense_pairs,
    featurize_records,
    load_records,
)
from rdconfvae.train.loop import train
from rdconfvae.train.objective import batch_loss, train_step, validate
from rdconfvae.train.presets import PRESETS, Preset, model_config, model_options
from rdconfvae.train.state import TrainState

__all__ = [
    "Batch",
    "Example",
    "PRESETS",
    "Preset",
    "TrainState",
    "batch_loss",
    "check_exclusions",
    "checkpoint_selection",
    "collate",
    "dense_pairs",
    "featurize_records",
    "load_records",
    "main",
    "model_config",
    "model_options",
    "train",
    "train_step",
    "validate",
]
