"""The objective: the loss of a batch, one optimisation step, and the validation metric."""

from __future__ import annotations

import math
from typing import cast

import numpy as np
import torch

from rdconfvae.geometry import solver
from rdconfvae.model.network import ConfVAE
from rdconfvae.train.data import Batch, Example, collate, dense_pairs
from rdconfvae.train.presets import Preset


def cosine_lr(lr: float, frac: float, final: float) -> float:
    """Learning rate ``frac`` (0..1, clipped) of the way through a cosine anneal from ``lr``
    to ``lr * final``."""
    frac = min(max(frac, 0.0), 1.0)
    return lr * (final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * frac)))


def batch_loss(
    model: torch.nn.Module,
    batch: Batch,
    preset: Preset,
    eps: torch.Tensor,
    autoencode: bool = False,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of one batch (means over its molecules) and its parts as floats.

    ``model`` is a :class:`ConfVAE` or its DistributedDataParallel wrapper;
    ``eps`` (N_atoms, latent) is the standard-normal noise of the posterior sample (zeros
    for an autoencoder). ``autoencode`` drops the encoder's information cost (the prior-side
    KL term stays, so the prior keeps learning the posterior).
    """
    mu, log_sigma, kl_prior, kl_post = model(
        batch.atom_feat,
        batch.pair_feat,
        batch.pair_i,
        batch.pair_j,
        batch.inv_deg,
        batch.ref_dist,
        eps,
    )
    n_mol = batch.mask.shape[0]
    counts_p = torch.zeros(n_mol, device=mu.device).index_add_(
        0, batch.pair_mol, torch.ones_like(mu)
    )
    z = (torch.log(batch.ref_dist.clamp(min=1e-3)) - mu) / torch.exp(log_sigma)
    nll_pair = 0.5 * z.pow(2) + log_sigma
    nll = (
        torch.zeros(n_mol, device=mu.device).index_add_(0, batch.pair_mol, nll_pair) / counts_p
    ).mean()
    atom_mol = torch.repeat_interleave(
        torch.arange(n_mol, device=mu.device), batch.mask.sum(-1).long()
    )
    n_atoms = batch.mask.sum(-1)
    kl_p = torch.zeros(n_mol, device=mu.device).index_add_(0, atom_mol, kl_prior) / n_atoms
    kl_q = torch.zeros(n_mol, device=mu.device).index_add_(0, atom_mol, kl_post) / n_atoms
    # KL balancing + free bits: the prior always learns to match the posterior; the encoder
    # is charged for information only beyond `free_bits` nats per atom, which keeps the
    # latent in use (without it, the KL fell to 0.004 nats/atom: one conformer per graph).
    if autoencode:
        kl_loss = (preset.kl_balance * kl_p).mean()
    else:
        kl_loss = (
            preset.kl_balance * kl_p + (1 - preset.kl_balance) * kl_q.clamp(min=preset.free_bits)
        ).mean()
    kl_mean = kl_q.mean()

    dist = torch.exp(mu)
    d_dense = dense_pairs(dist, batch, 0.0)
    w_dense = dense_pairs(solver.stress_weights(dist, log_sigma).detach(), batch, 0.0)
    coords = solver.solve(
        d_dense, w_dense, batch.mask, steps=preset.solver_steps, grad_steps=preset.grad_steps
    )
    rmsd = solver.superpose_rmsd(coords, batch.ref_dense, batch.mask, allow_reflection=True)
    coord = rmsd.mean()
    loss = preset.coord_weight * coord + preset.dist_weight * nll + preset.beta * kl_loss
    return loss, {
        "loss": float(loss.detach()),
        "rmsd": float(coord.detach()),
        "nll": float(nll.detach()),
        "kl": float(kl_mean.detach()),
    }


def unwrap(model: torch.nn.Module) -> ConfVAE:
    inner = model.module if hasattr(model, "module") else model  # DistributedDataParallel
    return cast(ConfVAE, inner)


def train_step(
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    examples: list[Example],
    preset: Preset,
    generator: torch.Generator,
    device: torch.device,
    rank: int = 0,
    world: int = 1,
    autoencode: bool = False,
) -> dict[str, float]:
    """One optimisation step on the global batch ``examples`` (as an autoencoder: zero
    noise, see :func:`batch_loss`, when ``autoencode``).

    With ``world`` processes (DistributedDataParallel), this rank takes
    ``examples[rank::world]``. Every rank draws the noise of the whole global batch
    from the same generator state and keeps its own molecules' rows, and scales its
    loss by its share of the batch, so the averaged gradient, the step and the
    reported loss are those of one process on the whole batch (up to float rounding).
    Needs ``len(examples) >= world``. Returns the global loss parts.
    """
    sizes = [ex.graph.num_atoms for ex in examples]
    eps_all = torch.randn(sum(sizes), unwrap(model).latent, generator=generator)
    if autoencode:  # drawn all the same: the generator's sequence does not depend on it
        eps_all.zero_()
    mine = list(range(rank, len(examples), world))
    if world > 1:
        starts = np.concatenate([[0], np.cumsum(sizes)])
        eps = torch.cat([eps_all[starts[i] : starts[i + 1]] for i in mine])
    else:
        eps = eps_all
    batch = collate([examples[i] for i in mine]).to(device)
    loss, parts = batch_loss(model, batch, preset, eps.to(device), autoencode)
    share = len(mine) / len(examples)
    opt.zero_grad()
    (loss * share * world).backward()  # DDP averages over ranks: sum_r share_r * grad_r
    torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
    opt.step()
    if world > 1:
        import torch.distributed as dist

        keys = sorted(parts)
        vec = torch.tensor([parts[k] * share for k in keys], dtype=torch.float64)
        dist.all_reduce(vec)
        parts = dict(zip(keys, vec.tolist(), strict=True))
    return parts


@torch.no_grad()
def validate(
    model: ConfVAE, examples: list[Example], samples: int, device: torch.device, seed: int = 0
) -> dict[str, float]:
    """Median / share < 1 A of the minimum RMSD of ``samples`` prior draws per molecule."""
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    best = []
    for ex in examples:
        g = ex.graph
        n = g.num_atoms
        inv = torch.full((n,), 1.0 / max(n - 1, 1), device=device)
        eps = torch.randn(samples, n, model.latent, generator=gen).to(device)
        dist, log_sigma = model.sample_distances(
            g.atom_feat.to(device),
            g.pair_feat.to(device),
            g.pair_i.to(device),
            g.pair_j.to(device),
            inv,
            eps,
            1.0,
        )
        coords = solver.solve_pairs(dist, log_sigma, g.pair_i.to(device), g.pair_j.to(device), n)
        mask = torch.ones(samples, n, device=device)
        ref = ex.coords.to(device).expand(samples, n, 3)
        rmsd = solver.superpose_rmsd(coords, ref, mask, allow_reflection=True)
        best.append(float(rmsd.min()))
    model.train()
    arr = np.asarray(best)
    return {
        "val_median_min_rmsd": float(np.median(arr)) if len(arr) else math.nan,
        "val_share_below_1A": float((arr < 1.0).mean()) if len(arr) else math.nan,
        "val_share_below_1_5A": float((arr < 1.5).mean()) if len(arr) else math.nan,
        "val_molecules": len(arr),
        "val_samples": samples,
    }
