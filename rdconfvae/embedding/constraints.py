"""Fixed atoms (RDKit's ``coordMap``): validation, the solver's part, the final placement.

A coordMap ``{atom index: Point3D}`` fixes atoms of the caller's molecule at given
coordinates. Every returned conformer has those atoms exactly there (RDKit's
``EmbedMolecule`` only fixes their distances and leaves the frame free; its
``ConstrainedEmbed`` aligns afterwards: here both hold). The stages:

1. :func:`prepare_anchor` checks the map before any work (indices, values, hydrogens,
   one connected molecule, mapped distances against RDKit's bounds matrix) and raises
   :class:`InvalidInputError` naming the fault.
2. :meth:`Anchor.geometry`: the mapped pairs' distances are known exactly, so their
   bounds become that distance and their stress weight :data:`ANCHOR_WEIGHT`.
3. :func:`fit_anchor` (in :func:`rdconfvae.embedding.sampling.sample_chunk`, after the solve):
   each solution is superposed onto the given points (Kabsch, the hand that fits
   better), the mapped atoms are put in place and the others relaxed by SMACOF steps
   with the mapped atoms held fixed.
4. :meth:`Anchor.checked`: a sample whose stereo repair had to mirror it away from
   the given points (a chiral core) counts as failed and is resampled.
5. :meth:`Anchor.place`: after the fragment layout and the planar-group snap, every
   conformer is superposed again and the mapped atoms set exactly; the MMFF polish or
   minimisation then moves only the other atoms (``ff.AddFixedPoint``).

Hydrogens cannot be fixed (the model places heavy atoms; hydrogens are built on
them): a coordMap naming a hydrogen is refused. Units: Angstrom. Shapes glossary:
K samples, N atoms, M mapped atoms.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from rdkit import Chem

from rdconfvae.embedding.coordmap import check_bounds, kabsch, parse_coord_map
from rdconfvae.errors import InvalidInputError

if TYPE_CHECKING:  # pragma: no cover
    from rdconfvae.embedding.sampling import ChunkRunner

__all__ = [
    "Anchor",
    "ANCHOR_WEIGHT",
    "ANCHOR_FIT_MAX",
    "RELAX_STEPS",
    "prepare_anchor",
    "fit_anchor",
    "fit_rmsd",
]

#: Stress weight of a pair of mapped atoms (bonds and angles get 100, other pairs 1).
ANCHOR_WEIGHT = 1000.0
#: A sample whose mapped atoms fit the given points worse than this (RMSD, Angstrom,
#: proper rotation) after sampling is resampled: the stereo repair mirrored it.
ANCHOR_FIT_MAX = 0.3
#: SMACOF steps on the free atoms after the mapped ones are put in place (the solve leaves
#: the mapped atoms 0.2-1 A off: their stress weights also carry the model's confidence).
RELAX_STEPS = 100


def _kabsch_batch(p: torch.Tensor, q: torch.Tensor, reflect: bool) -> torch.Tensor:
    """Batched proper (or improper) rotations, (K, 3, 3), float64. Shapes: p (K, M, 3), q (M, 3)."""
    h = (p - p.mean(1, keepdim=True)).transpose(1, 2) @ (q - q.mean(0))
    u, _, vt = torch.linalg.svd(h)
    if not reflect:
        sign = torch.sign(torch.linalg.det(u @ vt))
        sign = torch.where(sign == 0, torch.ones_like(sign), sign)
        u = torch.cat([u[..., :2], u[..., 2:] * sign[:, None, None]], dim=-1)
    return u @ vt


def _superpose(x: torch.Tensor, idx: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Every sample moved (proper rotation) so that its atoms ``idx`` best fit ``target``.

    Shapes: x (K, N, 3), idx (M,), target (M, 3); returns (K, N, 3) float64.
    """
    x = x.double()
    p = x[:, idx]
    rot = _kabsch_batch(p, target, reflect=False)
    centre = p.mean(1, keepdim=True)
    return (x - centre) @ rot + target.mean(0)


def fit_rmsd(x: torch.Tensor, idx: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """RMSD (K,) of the atoms ``idx`` of each sample to ``target`` after a proper superposition."""
    moved = _superpose(x, idx, target)[:, idx]
    return (moved - target).pow(2).sum(-1).mean(-1).sqrt()


def _relax_free(
    x: torch.Tensor, dist: torch.Tensor, weight: torch.Tensor, idx: torch.Tensor, steps: int
) -> torch.Tensor:
    """SMACOF majorization steps on the atoms not in ``idx``, those in ``idx`` held fixed.

    With V the weighted Laplacian and B(Z) the Guttman matrix, the majorizer's minimum over
    the free rows f given the fixed rows a is X_f = V_ff^-1 ((B(Z) Z)_f - V_fa X_a); each step
    lowers the stress (monotone, like the unconstrained SMACOF).

    Shapes: x (K, N, 3); dist, weight (K, N, N); idx (M,); returns (K, N, 3).
    """
    n = x.shape[1]
    free = torch.ones(n, dtype=torch.bool)
    free[idx] = False
    if not free.any() or steps <= 0:
        return x
    fi = free.nonzero().squeeze(-1)
    w = weight.double() * (1.0 - torch.eye(n, dtype=torch.float64))
    d = dist.double()
    lap = torch.diag_embed(w.sum(-1)) - w
    v_ff_inv = torch.linalg.inv(lap[:, fi][:, :, fi])
    fixed_term = lap[:, fi][:, :, idx] @ x[:, idx]
    x = x.clone()
    for _ in range(steps):
        diff = x.unsqueeze(-2) - x.unsqueeze(-3)
        cur = diff.pow(2).sum(-1).add(1e-12).sqrt()
        b = -w * d / cur
        b = b - torch.diag_embed(b.sum(-1))
        x[:, fi] = v_ff_inv @ ((b @ x)[:, fi] - fixed_term)
    return x


def fit_anchor(
    x: torch.Tensor,
    dist: torch.Tensor,
    weight: torch.Tensor,
    idx: torch.Tensor,
    target: torch.Tensor,
    steps: int = RELAX_STEPS,
) -> torch.Tensor:
    """Solver output -> coordinates with atoms ``idx`` exactly at ``target``.

    Each sample is superposed onto the target with the hand that fits better (distances
    cannot tell a structure from its mirror image), the mapped atoms are set in place and
    the others relaxed on the weighted stress with them held fixed.

    Shapes: x (K, N, 3); dist, weight (K, N, N); idx (M,); target (M, 3); returns x's dtype.
    """
    dtype = x.dtype
    t = target.double()
    mirrored = x * torch.tensor([-1.0, 1.0, 1.0], dtype=x.dtype)
    use_mirror = fit_rmsd(mirrored, idx, t) < fit_rmsd(x, idx, t)
    x = torch.where(use_mirror[:, None, None], mirrored, x)
    x = _superpose(x, idx, t)
    x[:, idx] = t
    return _relax_free(x, dist, weight, idx, steps).to(dtype)


@dataclass(frozen=True)
class Anchor:
    """A checked coordMap of one molecule.

    ``work_idx`` are the caller's atom indices, ``heavy_idx`` the same atoms in the
    heavy-atom molecule (and in its single fragment), ``xyz`` their coordinates.
    Shapes: work_idx, heavy_idx (M,); xyz (M, 3) float64, Angstrom.
    """

    work_idx: np.ndarray
    heavy_idx: np.ndarray
    xyz: np.ndarray

    def geometry(self, geom: Any) -> Any:
        """A :class:`rdconfvae.embedding.sampling.Geometry` with the mapped pairs fixed at their
        distances (lower = upper = the given distance, weight :data:`ANCHOR_WEIGHT`)."""
        n = int(round((1 + math.sqrt(1 + 8 * geom.lower.shape[0])) / 2))
        pair_i, pair_j = np.triu_indices(n, k=1)
        pos = -np.ones((n, n), dtype=np.int64)
        pos[pair_i, pair_j] = np.arange(len(pair_i))
        lower, upper, weight = geom.lower.clone(), geom.upper.clone(), geom.weight.clone()
        h = self.heavy_idx
        for a in range(len(h)):
            for b in range(a + 1, len(h)):
                i, j = min(h[a], h[b]), max(h[a], h[b])
                d = float(np.linalg.norm(self.xyz[a] - self.xyz[b]))
                p = pos[i, j]
                lower[p], upper[p], weight[p] = d, d, ANCHOR_WEIGHT
        return dataclasses.replace(
            geom,
            lower=lower,
            upper=upper,
            weight=weight,
            anchor_idx=torch.from_numpy(self.heavy_idx.astype(np.int64)),
            anchor_xyz=torch.from_numpy(self.xyz.astype(np.float32)),
        )

    def checked(self, run: ChunkRunner) -> ChunkRunner:
        """``run`` (a chunk runner) with samples that no longer fit the given points marked
        failed (the stereo repair mirrored them: a chiral core and the declared stereo
        disagree for that sample), so that they are resampled."""
        idx = torch.from_numpy(self.heavy_idx.astype(np.int64))
        target = torch.from_numpy(self.xyz)

        def wrapped(
            chunks: list[torch.Tensor], signs: list[torch.Tensor | None]
        ) -> list[tuple[torch.Tensor, torch.Tensor]]:
            out = []
            for x, ok in run(chunks, signs):
                out.append((x, ok & (fit_rmsd(x, idx, target) <= ANCHOR_FIT_MAX)))
            return out

        return wrapped

    def place(self, heavy_confs: Chem.Mol) -> np.ndarray:
        """Superpose every conformer of the heavy-atom molecule onto the given points and
        set the mapped atoms exactly there, in place; returns the coordinates (K, N, 3)."""
        out = []
        for conf in heavy_confs.GetConformers():
            xyz = conf.GetPositions()
            rot, shift = kabsch(xyz[self.heavy_idx], self.xyz)
            xyz = xyz @ rot + shift
            xyz[self.heavy_idx] = self.xyz
            conf.SetPositions(xyz)
            out.append(xyz)
        return np.stack(out)


def prepare_anchor(
    work: Chem.Mol, heavy_idx: Sequence[int], num_fragments: int, coord_map: Any
) -> Anchor | None:
    """The checked :class:`Anchor` of ``coord_map`` on the sanitized molecule ``work``
    (None for no or an empty map); :class:`InvalidInputError` naming the fault otherwise.

    ``heavy_idx`` is the caller's index of each heavy atom (heavy-atom order), and
    ``num_fragments`` the number of connected pieces (several are refused: fixed atoms
    and the side-by-side layout of fragments do not mix).
    """
    points = parse_coord_map(work, coord_map)
    if not points:
        return None
    if num_fragments > 1:
        raise InvalidInputError(
            f"coordMap needs a connected molecule; this one has {num_fragments} fragments "
            "(embed the fragment with the fixed atoms on its own)"
        )
    check_bounds(work, points)
    to_heavy = {w: h for h, w in enumerate(heavy_idx)}
    work_idx = np.array(list(points), dtype=np.int64)
    return Anchor(
        work_idx=work_idx,
        heavy_idx=np.array([to_heavy[i] for i in work_idx], dtype=np.int64),
        xyz=np.stack([points[i] for i in work_idx]),
    )
