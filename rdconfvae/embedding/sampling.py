"""Sampling core: latent draws -> model distances -> solver coordinates -> stereo repair.

One fragment at a time: latents ``eps`` are drawn from a generator seeded by the
molecule's seed and the sampling round, split into chunks fixed by the number of
samples alone (:func:`chunk_sizes`), and each chunk is decoded, solved and repaired
by :func:`sample_chunk` -- in this process or in a worker process
(:mod:`rdconfvae.embedding.workers`), with the same result. Rounds after the first replace
the samples whose declared stereo could not be repaired.

Units: Angstrom. Shapes glossary: K samples, N heavy atoms, P pairs, Z latent size.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from rdkit import Chem
from rdkit.Chem import rdDistGeom

from rdconfvae.deadline import Deadline
from rdconfvae.embedding import constraints
from rdconfvae.geometry import solver
from rdconfvae.model import featurize as fz
from rdconfvae.model.store import LoadedModel

__all__ = [
    "Geometry",
    "ChunkRunner",
    "CHUNK",
    "STRESS_ITERS",
    "POLISH_STRESS_ITERS",
    "WEAK_VOLUME",
    "WEAK_COS",
    "bounds_geometry",
    "chunk_sizes",
    "sample_chunk",
    "decode_pairs",
    "sample_fragment",
    "stereo_targets",
]

#: Most samples decoded and solved together (a chunk); chunks are fixed by the number
#: of samples alone, so results do not depend on the number of worker processes.
CHUNK = 16
#: L-BFGS iterations on the weighted stress after SMACOF, for the raw output and ahead of
#: ``mmff=True``: bond lengths within ~0.01 A of their targets.
STRESS_ITERS = 20
#: The same ahead of the default MMFF polish, which straightens bonds and angles itself:
#: on held-out CCD validation, spending the time on polish steps instead gave closer poses.
POLISH_STRESS_ITERS = 0
#: Stereo within these margins is repaired like wrong stereo, and the repair pushes it
#: past them: signed volume in Angstrom^3 (a tetrahedral carbon has ~2.5), cos(dihedral).
WEAK_VOLUME = 1.0
WEAK_COS = 0.5
#: Extra stress weight on pairs whose distance the bounds fix: bonds, angles, and the
#: 1-4 pairs of planar groups (amides, esters, double bonds) whose bounds are tight.
LOCAL_WEIGHT = 100.0
#: Bounds narrower than this (Angstrom) count as fixed.
TIGHT_BOUNDS = 0.25
#: Secondary amides outside a ring, C-C(=O)-N(H)-C: held trans by the stereo repair like a
#: declared trans double bond. Their 1-4 distance barely changes within 30 degrees of
#: trans, so the bounds do not hold them; the planar-group snap that follows
#: (:data:`rdconfvae.geometry.conformers.PLANAR_GROUP`) takes the nearest planar form, so an
#: amide the sampler left more than 90 degrees off trans became cis, and the polish keeps it
#: cis or part-way (40 library molecules, n = 10: 4.5 % of these amides cis after the snap;
#: 1.6 % 60-90 degrees off trans and 0.5 % cis in the default output; ETKDGv3 0 %).
SECONDARY_AMIDE = Chem.MolFromSmarts("[#6][CX3](=O)!@[NX3;H1][#6]")


@dataclass(frozen=True)
class Geometry:
    """Distance-geometry bounds of a fragment's heavy-atom pairs (RDKit's bounds matrix) and
    the secondary amides the stereo repair holds trans (:data:`SECONDARY_AMIDE`).

    Shapes: lower, upper, weight (P,) in pair order; Angstrom. ``amide_idx`` (A, 4): the
    C, C(=O), N, C of each such amide. ``anchor_idx`` (M,) and ``anchor_xyz`` (M, 3): atoms
    fixed by a coordMap and their coordinates (empty: none;
    :mod:`rdconfvae.embedding.constraints`).
    """

    lower: torch.Tensor
    upper: torch.Tensor
    weight: torch.Tensor
    amide_idx: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 4, dtype=torch.int64))
    anchor_idx: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.int64))
    anchor_xyz: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 3))


#: Runs :func:`sample_chunk` on each chunk of latents with its unspecified-stereo signs
#: (None when the fragment has none), in order, and returns the (coords (k, N, 3),
#: ok (k,)) of each; serial or on worker processes.
ChunkRunner = Callable[
    [list[torch.Tensor], list[torch.Tensor | None]], list[tuple[torch.Tensor, torch.Tensor]]
]


def bounds_geometry(mol: Chem.Mol, graph: fz.MolGraph) -> Geometry:
    """RDKit's distance bounds (bond lengths and angles from its force-field tables, van der
    Waals lower bounds elsewhere) for clamping the model's distances before the solve."""
    bounds = rdDistGeom.GetMoleculeBoundsMatrix(mol)
    i, j = graph.pair_i.numpy(), graph.pair_j.numpy()
    upper = torch.tensor(bounds[i, j], dtype=torch.float32)
    lower = torch.tensor(bounds[j, i], dtype=torch.float32)
    path = graph.pair_feat[:, : fz.MAX_PATH + 1].argmax(-1)  # 0: bonded, 1: 1-3 pair
    fixed = (path <= 1) | (upper - lower < TIGHT_BOUNDS)
    weight = torch.where(fixed, LOCAL_WEIGHT, 1.0)
    amides = [(m[0], m[1], m[3], m[4]) for m in mol.GetSubstructMatches(SECONDARY_AMIDE)]
    amide_idx = torch.tensor(amides, dtype=torch.int64).reshape(-1, 4)
    return Geometry(lower, upper, weight, amide_idx)


def stereo_targets(
    graph: fz.MolGraph, free_signs: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Centres and double bonds to enforce, with their required signs.

    The declared ones always; with ``free_signs`` (k, U + V) of +-1 also the unspecified
    ones (``graph.free_*``), each sample with its own configuration, so that unspecified
    centres and double bonds are sampled over both configurations.

    Shapes: returns chiral_idx (C', 5), chiral_sign (C',) or (k, C'), dbl_idx (S', 4),
    dbl_cis (S',) or (k, S').
    """
    u, v = graph.free_chiral_idx.shape[0], graph.free_dbl_idx.shape[0]
    if free_signs is None or u + v == 0:
        return graph.chiral_idx, graph.chiral_sign, graph.dbl_idx, graph.dbl_cis
    k = free_signs.shape[0]
    return (
        torch.cat([graph.chiral_idx, graph.free_chiral_idx]),
        torch.cat([graph.chiral_sign.expand(k, -1), free_signs[:, :u]], dim=1),
        torch.cat([graph.dbl_idx, graph.free_dbl_idx]),
        torch.cat([graph.dbl_cis.expand(k, -1), free_signs[:, u:]], dim=1),
    )


def decode_pairs(
    model: LoadedModel,
    graph: fz.MolGraph,
    geom: Geometry,
    eps: torch.Tensor,
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The model's pair distances for latents ``eps``, clamped to the bounds, and the
    solver's dense targets and weights.

    Shapes: eps (k, N, Z); returns dist, log_sigma (k, P) and d, w (k, N, N), Angstrom.
    """
    n = graph.num_atoms
    inv = torch.full((n,), 1.0 / max(n - 1, 1))
    dist, log_sigma = model.module.sample_distances(
        graph.atom_feat, graph.pair_feat, graph.pair_i, graph.pair_j, inv, eps, temperature
    )
    dist = torch.minimum(torch.maximum(dist, geom.lower), geom.upper)
    d, w = solver.dense_pairs(dist, log_sigma, graph.pair_i, graph.pair_j, n, geom.weight)
    return dist, log_sigma, d, w


def sample_chunk(
    model: LoadedModel,
    graph: fz.MolGraph,
    geom: Geometry,
    eps: torch.Tensor,
    temperature: float,
    steps: int,
    enforce: bool,
    stress_iters: int = STRESS_ITERS,
    free_signs: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode, solve (``steps`` SMACOF updates, then ``stress_iters`` L-BFGS iterations)
    and repair stereo for one chunk (see :func:`stereo_targets` for ``free_signs``).

    Shapes: eps (k, N, Z); free_signs (k, U + V) or None; returns coords (k, N, 3) and
    ok (k,) bool (every enforced centre and double bond as required).
    """
    n = graph.num_atoms
    with torch.no_grad():
        dist, log_sigma, d, w = decode_pairs(model, graph, geom, eps, temperature)
        ones = torch.ones(d.shape[0], n)
        x = solver.solve(d, w, ones, steps=steps)
        if stress_iters > 0:
            x = solver.polish(x, d, w, ones, iters=stress_iters)
        if geom.anchor_idx.numel():  # coordMap: the fixed atoms put in place
            x = constraints.fit_anchor(x, d, w, geom.anchor_idx, geom.anchor_xyz)
    ok = torch.ones(x.shape[0], dtype=torch.bool)
    chiral_idx, chiral_sign, dbl_idx, dbl_cis = stereo_targets(graph, free_signs)
    if geom.amide_idx.shape[0]:  # secondary amides: trans, like a declared trans double bond
        trans = -torch.ones(geom.amide_idx.shape[0])
        if dbl_cis.dim() == 2:
            trans = trans.expand(dbl_cis.shape[0], -1)
        dbl_idx = torch.cat([dbl_idx, geom.amide_idx])
        dbl_cis = torch.cat([dbl_cis, trans], dim=-1)
    if chiral_idx.shape[0] == 0 and dbl_idx.shape[0] == 0:
        return x, ok
    args = (chiral_idx, chiral_sign, dbl_idx, dbl_cis)
    # the mirror image has the same distances: take it where it has fewer wrong centres
    wrong_c, _ = solver.stereo_violations(x, *args)
    mirrored = x * torch.tensor([-1.0, 1.0, 1.0])
    wrong_cm, _ = solver.stereo_violations(mirrored, *args)
    flip = wrong_cm < wrong_c
    x = torch.where(flip[:, None, None], mirrored, x)
    # repair wrong and weak stereo alike: a nearly flat centre is right by sign, but the
    # polish or MMFF that follows pushes it through (measured: a third of the polish's
    # stereo flips). The margins include every wrong centre and bond.
    weak_c, weak_d = solver.stereo_violations(x, *args, WEAK_VOLUME, WEAK_COS)
    bad = (weak_c + weak_d) > 0
    if enforce and bad.any():
        sub = bad.nonzero().squeeze(-1)
        sub_args = (
            chiral_idx,
            chiral_sign[sub] if chiral_sign.dim() == 2 else chiral_sign,
            dbl_idx,
            dbl_cis[sub] if dbl_cis.dim() == 2 else dbl_cis,
        )
        d, w = solver.dense_pairs(
            dist[sub], log_sigma[sub], graph.pair_i, graph.pair_j, n, geom.weight
        )
        fixed = solver.stereo_penalty_refine(
            x[sub],
            d,
            w,
            torch.ones(len(sub), n),
            *sub_args,
            volume_margin=WEAK_VOLUME,
            cos_margin=WEAK_COS,
        )
        x[sub] = fixed
        wc, wd = solver.stereo_violations(fixed, *sub_args)
        ok[sub] = (wc + wd) == 0
    return x, ok


def chunk_sizes(k: int) -> list[int]:
    """Sizes of the sample chunks for k samples: at most :data:`CHUNK` each, as even as
    possible. Depends on k only, so the coordinates do not depend on the number of workers."""
    m = max(1, math.ceil(k / CHUNK))
    return [k // m + (1 if i < k % m else 0) for i in range(m)]


def sample_fragment(
    graph: fz.MolGraph,
    latent: int,
    n: int,
    seed: int,
    rounds: int,
    deadline: Deadline,
    run_chunks: ChunkRunner,
) -> np.ndarray:
    """Up to n stereo-correct heavy-atom conformers (k, N, 3) of one fragment, float64.

    ``rounds`` sampling rounds at most; later rounds oversample the shortfall (stereo
    repair already failed once). ``latent`` is the model's latent size Z.
    """
    found: list[torch.Tensor] = []
    have = 0
    for round_no in range(max(1, rounds)):
        need = n - have
        if need <= 0:
            break
        k = need if round_no == 0 else int(math.ceil(need * 2)) + 2
        gen = torch.Generator().manual_seed((seed * 1_000_003 + round_no) % (2**63 - 1))
        eps = torch.randn(k, graph.num_atoms, latent, generator=gen)
        sizes = chunk_sizes(k)
        n_free = graph.free_chiral_idx.shape[0] + graph.free_dbl_idx.shape[0]
        signs: list[torch.Tensor | None] = [None] * len(sizes)
        if n_free:  # each sample its own configuration of the unspecified stereo
            draw = torch.randint(0, 2, (k, n_free), generator=gen).float() * 2.0 - 1.0
            signs = list(torch.split(draw, sizes))
        for x, ok in run_chunks(list(torch.split(eps, sizes)), signs):
            good = x[ok]
            found.append(good[: max(n - have, 0)])
            have += int(min(len(good), max(n - have, 0)))
        deadline.check("sampling")
    if not found:
        return np.zeros((0, graph.num_atoms, 3))
    return torch.cat(found).double().numpy()
