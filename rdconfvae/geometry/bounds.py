"""The geometry gate: every returned conformer within RDKit's distance-bound tolerance.

RDKit's own embedding tests require every atom pair to lie no more than 0.425 A below
its lower distance bound and every bond no more than 0.425 A above its upper bound
(bounds from ``rdDistGeom.GetMoleculeBoundsMatrix``). The gate applies that criterion
to every conformer before it is returned, on all atoms including hydrogens, and adds:

- every 1-3 pair (a bond angle) no more than 0.425 A above its upper bound;
- every potential tetrahedral stereocentre (specified or not) a real tetrahedron: the
  triple product of the unit vectors to three of its neighbours at least
  :data:`MIN_UNIT_VOLUME` in magnitude (0.77 for an ideal tetrahedron, 1.0 for cubane's
  right angles, 0 when flat) and, for a centre with four neighbours, the centre inside
  the tetrahedron of its neighbours: each barycentric coordinate at least
  :data:`MIN_BARYCENTRIC` (0.25 each at an ideal centre; 0 on a face, which is where an
  inverted bridgehead is forced to). Atoms in three-membered rings are exempt from the
  second test, as in RDKit's embedder: a bicyclobutane bridgehead really lies outside.

The gate judges distance-geometry output. An MMFF minimum can hold pairs closer than
RDKit's lower bounds (intramolecular hydrogen bonds: 11 of 20 ETKDGv3 + MMFF conformers
of erythromycin do), so with ``mmff=True`` the engine applies it before the minimisation.

A conformer that fails is repaired by :func:`bounds_refine` (the distance-geometry
error function of the bounds, flat inside them, with hinges that keep every enforced
centre on its side) and checked again; what still fails is dropped and resampled by
the engine, and a molecule whose conformers never pass fails like any embedding
failure (an impossible stereo declaration, e.g. an inverted bridgehead, ends there).

Pure numpy/torch apart from reading the bounds. Units: Angstrom.
Shapes: K conformers, N atoms, P pairs, T tetrahedral centres.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from rdkit import Chem
from rdkit.Chem import rdDistGeom

from rdconfvae.deadline import Deadline

__all__ = [
    "BOUNDS_TOLERANCE",
    "MIN_UNIT_VOLUME",
    "MIN_BARYCENTRIC",
    "GeometryGate",
    "bounds_refine",
]

#: Slack on RDKit's bounds used by its embedding tests (Angstrom).
BOUNDS_TOLERANCE = 0.425
#: Smallest |triple product| of unit bond vectors at a tetrahedral centre. ETKDGv3's
#: conformers of erythromycin (20, seed 1) reach 0.27 at the least.
MIN_UNIT_VOLUME = 0.15
#: Smallest barycentric coordinate of a four-neighbour centre in its neighbours' tetrahedron.
#: ETKDGv3's erythromycin conformers reach 0.11 at the least, a norbornane forced to an
#: inverted bridgehead 0.01-0.06; the repair aims at :data:`_REPAIR_BARYCENTRIC`, so a real
#: centre that the model left distorted is brought well inside.
MIN_BARYCENTRIC = 0.1
_REPAIR_BARYCENTRIC = 0.15
#: Steps of :func:`bounds_refine` between checks of the time limit.
_DEADLINE_EVERY = 10
#: A repaired conformer stops once no pair is more than this outside RDKit's bounds
#: (Angstrom; the gate's tolerance is :data:`BOUNDS_TOLERANCE`, so the stop leaves a margin
#: of at least 0.225 A), bonds and 1-3 pairs no more than :data:`_BONDED_SLACK` (their
#: bounds are tight: an aromatic bond's 1.38-1.40 A), and no hinge is active. Tighter
#: (0.1 / 0.01 A until 2026-12) cost twice the repair time on 60 library molecules, for
#: the same number of conformers passing.
_REPAIR_SLACK = 0.2
_BONDED_SLACK = 0.1
#: :func:`bounds_refine` follows the pairs less than this above their lower bound
#: (Angstrom), found again every :data:`_REFRESH_EVERY` steps.
_NEAR = 1.0
_REFRESH_EVERY = 10


@dataclass(frozen=True)
class GeometryGate:
    """The bounds of one molecule (all its atoms) and its tetrahedral centres.

    Shapes: pair_i, pair_j, lower, upper (P,) -- lower/upper already include the
    tolerance (upper is inf for pairs more than two bonds apart); tetra (T, 4) =
    centre, three neighbours.
    """

    pair_i: np.ndarray
    pair_j: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    tetra: np.ndarray
    tetra4: np.ndarray  # (T4, 5) centre and its four neighbours
    bounds_lower: np.ndarray  # (P,) RDKit's lower bounds without the tolerance
    bounds_upper: np.ndarray  # (P,) RDKit's upper bounds without the tolerance

    @classmethod
    def for_mol(cls, mol: Chem.Mol) -> GeometryGate:
        """Bounds of ``mol`` as it will be returned (with its hydrogens, if any)."""
        bm = rdDistGeom.GetMoleculeBoundsMatrix(mol)
        n = mol.GetNumAtoms()
        i, j = np.triu_indices(n, k=1)
        topo = Chem.GetDistanceMatrix(mol)[i, j]
        ub, lb = bm[i, j], bm[j, i]
        upper = np.where(topo <= 2, ub + BOUNDS_TOLERANCE, np.inf)
        tetra, tetra4 = [], []
        for info in Chem.FindPotentialStereo(mol, cleanIt=False):
            if info.type != Chem.StereoType.Atom_Tetrahedral:
                continue
            atom = mol.GetAtomWithIdx(info.centeredOn)
            nbrs = sorted(
                (n.GetAtomicNum() == 1, n.GetIdx()) for n in atom.GetNeighbors()
            )  # heavy neighbours first
            if len(nbrs) >= 3:
                tetra.append([atom.GetIdx()] + [idx for _, idx in nbrs[:3]])
            if len(nbrs) == 4 and not atom.IsInRingSize(3):
                tetra4.append([atom.GetIdx()] + [idx for _, idx in nbrs])
        return cls(
            i.astype(np.int64),
            j.astype(np.int64),
            lb - BOUNDS_TOLERANCE,
            upper,
            np.asarray(tetra, dtype=np.int64).reshape(-1, 4),
            np.asarray(tetra4, dtype=np.int64).reshape(-1, 5),
            lb,
            ub,
        )

    def failures(self, xyz: np.ndarray) -> np.ndarray:
        """(K,) True where a conformer breaks a bound or has a flat tetrahedral centre.

        Shapes: xyz (K, N, 3).
        """
        d = np.linalg.norm(xyz[:, self.pair_i] - xyz[:, self.pair_j], axis=-1)
        bad = ((d < self.lower) | (d > self.upper)).any(axis=1)
        if len(self.tetra):
            bad |= (np.abs(_unit_volumes(xyz, self.tetra)) < MIN_UNIT_VOLUME).any(axis=1)
        if len(self.tetra4):
            bad |= (_barycentric(xyz, self.tetra4) < MIN_BARYCENTRIC).any(axis=(1, 2))
        return bad

    def hands(self, xyz: np.ndarray) -> np.ndarray:
        """(K, T) the side (+1 / -1, 0 if flat) of each centre of :attr:`tetra`, for the repair.

        A centre with four neighbours takes the hand of its neighbours' arrangement: the
        sign of the volume seen from their centroid. A centre pushed outside its neighbours'
        tetrahedron has, seen from itself, the opposite sign, and a repair that kept that
        side would fight the barycentric hinge that pulls it back inside. Other centres
        take the sign of their own volume. Shapes: xyz (K, N, 3).
        """
        centre = xyz[:, self.tetra[:, 0]]
        rows = np.flatnonzero(np.isin(self.tetra[:, 0], self.tetra4[:, 0]))
        if len(rows):
            where = {int(c): k for k, c in enumerate(self.tetra4[:, 0])}
            four = self.tetra4[[where[int(c)] for c in self.tetra[rows, 0]], 1:]
            centre = centre.copy()
            centre[:, rows] = xyz[:, four].mean(axis=2)
        a, b, c = (xyz[:, self.tetra[:, m]] - centre for m in (1, 2, 3))
        return np.sign((a * np.cross(b, c)).sum(-1))

    def describe(self, xyz: np.ndarray) -> str:
        """The worst fault of one conformer (N, 3), for error messages."""
        d = np.linalg.norm(xyz[self.pair_i] - xyz[self.pair_j], axis=-1)
        low = self.lower - d
        k = int(np.argmax(low))
        parts = []
        if low[k] > 0:
            parts.append(
                f"atoms {self.pair_i[k]}-{self.pair_j[k]} {d[k]:.2f} A apart, lower bound "
                f"{self.bounds_lower[k]:.2f} A"
            )
        high = d - self.upper
        k = int(np.argmax(high))
        if high[k] > 0:
            parts.append(
                f"atoms {self.pair_i[k]}-{self.pair_j[k]} {d[k]:.2f} A apart, upper bound "
                f"{self.bounds_upper[k]:.2f} A"
            )
        if len(self.tetra):
            vol = np.abs(_unit_volumes(xyz[None], self.tetra))[0]
            flat = self.tetra[vol < MIN_UNIT_VOLUME, 0]
            if len(flat):
                parts.append(f"flat tetrahedral centre at atom {int(flat[0])}")
        if len(self.tetra4):
            lam = _barycentric(xyz[None], self.tetra4)[0].min(axis=-1)
            out = self.tetra4[lam < MIN_BARYCENTRIC, 0]
            if len(out):
                parts.append(f"atom {int(out[0])} outside the tetrahedron of its neighbours")
        return "; ".join(parts) or "none"


def _unit_volumes(xyz: np.ndarray, tetra: np.ndarray) -> np.ndarray:
    """(K, T) triple products of the unit vectors centre -> n1, n2, n3."""
    c = xyz[:, tetra[:, 0]]
    v = [xyz[:, tetra[:, m]] - c for m in (1, 2, 3)]
    v = [u / np.maximum(np.linalg.norm(u, axis=-1, keepdims=True), 1e-9) for u in v]
    return (v[0] * np.cross(v[1], v[2])).sum(-1)


def _barycentric(xyz: np.ndarray, tetra4: np.ndarray) -> np.ndarray:
    """(K, T4, 4) barycentric coordinates of each centre in its neighbours' tetrahedron."""

    def vol(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, p3: np.ndarray) -> np.ndarray:
        return ((p1 - p0) * np.cross(p2 - p0, p3 - p0)).sum(-1)

    c = xyz[:, tetra4[:, 0]]
    n = [xyz[:, tetra4[:, m]] for m in (1, 2, 3, 4)]
    total = vol(*n)
    total = np.where(np.abs(total) < 1e-9, 1e-9, total)
    parts = [
        vol(c, n[1], n[2], n[3]),
        vol(n[0], c, n[2], n[3]),
        vol(n[0], n[1], c, n[3]),
        vol(n[0], n[1], n[2], c),
    ]
    return np.stack(parts, axis=-1) / total[..., None]


def _barycentric_torch(x: torch.Tensor, tetra4: torch.Tensor) -> torch.Tensor:
    """:func:`_barycentric` in torch (differentiable): (K, T4, 4)."""

    def vol(p0: torch.Tensor, p1: torch.Tensor, p2: torch.Tensor, p3: torch.Tensor):
        return ((p1 - p0) * torch.cross(p2 - p0, p3 - p0, dim=-1)).sum(-1)

    c = x[:, tetra4[:, 0]]
    n = [x[:, tetra4[:, m]] for m in (1, 2, 3, 4)]
    total = vol(*n)
    total = torch.where(total.abs() < 1e-9, torch.full_like(total, 1e-9), total)
    parts = [
        vol(c, n[1], n[2], n[3]),
        vol(n[0], c, n[2], n[3]),
        vol(n[0], n[1], c, n[3]),
        vol(n[0], n[1], n[2], c),
    ]
    return torch.stack(parts, dim=-1) / total.unsqueeze(-1)


def bounds_refine(
    xyz: np.ndarray,
    gate: GeometryGate,
    chiral_idx: np.ndarray,
    chiral_sign: np.ndarray,
    steps: int = 300,
    lr: float = 0.05,
    deadline: Deadline | None = None,
) -> np.ndarray:
    """Move conformers into their bounds; enforced centres keep their side.

    Minimises, per conformer, the flat-bottomed bounds error
    ``sum relu(l - d)^2 + relu(d - u)^2`` (inner bounds: RDKit's, not the tolerance
    band, so a repaired pair lands well inside it) plus hinges
    ``relu(0.5 - s * V)^2`` on the signed volumes V (A^3) of ``chiral_idx`` with
    required signs ``s`` (:meth:`GeometryGate.hands` gives signs that agree with the
    barycentric hinge) and ``relu(0.15 - lambda)^2`` on the barycentric coordinates of
    four-neighbour centres, by a hand-written Adam (no ``torch.optim``). A conformer
    stops moving once no hinge is active and no pair is more than
    :data:`_REPAIR_SLACK` (bonds and 1-3 pairs :data:`_BONDED_SLACK`) outside its bounds
    (Adam at a fixed rate circles the exact bound without reaching it, and a molecule's
    bounds often cannot all be met at once); later steps compute only the conformers still
    moving. The pair term's
    gradient is written out; each step follows only the pairs with an upper bound or
    within :data:`_NEAR` of their lower bound, found again from all pairs every
    :data:`_REFRESH_EVERY` steps and before stopping (a 144-atom macrolide has 10,296
    pairs). ``deadline`` is checked every :data:`_DEADLINE_EVERY` steps. Returns new
    coordinates (K, N, 3), float64.

    Shapes: xyz (K, N, 3); chiral_idx (C, 4); chiral_sign (K, C) or (C,).
    """
    x = torch.tensor(xyz, dtype=torch.float64)
    k_confs = x.shape[0]
    pi, pj = torch.from_numpy(gate.pair_i), torch.from_numpy(gate.pair_j)
    lower = torch.from_numpy(gate.bounds_lower)
    upper = torch.from_numpy(np.where(np.isfinite(gate.upper), gate.bounds_upper, np.inf))
    t4 = torch.from_numpy(gate.tetra4)
    ci = torch.from_numpy(np.asarray(chiral_idx, dtype=np.int64).reshape(-1, 4))
    cs = torch.as_tensor(np.asarray(chiral_sign, dtype=np.float64))
    m = torch.zeros_like(x)
    v = torch.zeros_like(x)
    b1, b2 = 0.9, 0.999
    n_atoms = x.shape[1]
    # the pairs the error can reach soon: every bounded pair and the ones near their
    # lower bound, found again from all pairs every _REFRESH_EVERY steps and before stopping
    bounded = torch.isfinite(upper)
    slack = torch.where(bounded, _BONDED_SLACK, _REPAIR_SLACK).to(x.dtype)
    live = torch.arange(k_confs)  # the conformers still moving
    near = _near_pairs(x, pi, pj, lower, bounded)
    taken = 1  # the step whose coordinates ``near`` was found from
    step = 1
    while step <= steps:
        if deadline is not None and step % _DEADLINE_EVERY == 0:
            deadline.check("geometry repair")
        if step % _REFRESH_EVERY == 0 and taken != step:
            near, taken = _near_pairs(x[live], pi, pj, lower, bounded), step
        with torch.no_grad():
            xl = x[live]
            si, sj = pi[near], pj[near]
            diff = xl[:, si] - xl[:, sj]  # (L, P', 3): the conformers still moving
            d = diff.pow(2).sum(-1).add(1e-12).sqrt()
            low, high = torch.relu(lower[near] - d), torch.relu(d - upper[near])
            outside = ((low > slack[near]) | (high > slack[near])).any(-1)
        hinge, hinge_grad = _hinges(xl, ci, cs[live] if cs.dim() == 2 else cs, t4)
        active = outside | (hinge > 1e-6)
        if not bool(active.all()):
            if taken != step:  # judge the settled ones again on a list taken from all pairs
                near, taken = _near_pairs(x[live], pi, pj, lower, bounded), step
                continue
            live = live[active]  # nothing outside its bounds, on a list just taken: settled
            if live.numel() == 0:
                break
            keep = active.nonzero().squeeze(-1)
            diff, d, low, high, hinge_grad = (t[keep] for t in (diff, d, low, high, hinge_grad))
        with torch.no_grad():
            # d/dx_i of relu(l - d)^2 + relu(d - u)^2 = 2 (high - low) (x_i - x_j) / d
            kk, pp = (low + high > 0).nonzero(as_tuple=True)
            coef = (2.0 * (high[kk, pp] - low[kk, pp]) / d[kk, pp]).unsqueeze(-1)
            g = coef * diff[kk, pp]
            n_live = live.numel()
            flat = torch.zeros(n_live * n_atoms, 3, dtype=x.dtype)
            flat.index_add_(0, kk * n_atoms + si[pp], g)
            flat.index_add_(0, kk * n_atoms + sj[pp], -g)
            grad = flat.view(n_live, n_atoms, 3) + hinge_grad
            m[live] = b1 * m[live] + (1 - b1) * grad
            v[live] = b2 * v[live] + (1 - b2) * grad * grad
            mh = m[live] / (1 - b1**step)
            vh = v[live] / (1 - b2**step)
            x[live] = x[live] - lr * mh / (vh.sqrt() + 1e-8)
        step += 1
    return x.numpy()


def _near_pairs(
    x: torch.Tensor,
    pi: torch.Tensor,
    pj: torch.Tensor,
    lower: torch.Tensor,
    bounded: torch.Tensor,
) -> torch.Tensor:
    """Indices of the pairs that have an upper bound or lie, in some conformer, less than
    :data:`_NEAR` above their lower bound."""
    with torch.no_grad():
        d = (x[:, pi] - x[:, pj]).pow(2).sum(-1).sqrt()
        close = (d < lower + _NEAR).any(0)
    return (close | bounded).nonzero().squeeze(-1)


def _hinges(
    x: torch.Tensor, ci: torch.Tensor, cs: torch.Tensor, t4: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The stereo hinges of :func:`bounds_refine` per conformer (K,) and their gradient
    (K, N, 3): few terms, so autograd over a small graph."""
    if not (ci.shape[0] or t4.shape[0]):
        return torch.zeros(x.shape[0], dtype=x.dtype), torch.zeros_like(x)

    def energy(xx: torch.Tensor) -> torch.Tensor:
        err = torch.zeros(xx.shape[0], dtype=xx.dtype)
        if ci.shape[0]:
            c = xx[:, ci[:, 0]]
            a, b, e = (xx[:, ci[:, k]] - c for k in (1, 2, 3))
            vol = (a * torch.cross(b, e, dim=-1)).sum(-1)
            err = err + 10.0 * torch.relu(0.5 - cs * vol).pow(2).sum(-1)
        if t4.shape[0]:
            lam = _barycentric_torch(xx, t4)
            err = err + 10.0 * torch.relu(_REPAIR_BARYCENTRIC - lam).pow(2).sum((-1, -2))
        return err

    with torch.no_grad():
        err = energy(x)
    if not bool((err > 0).any()):  # the usual case: no hinge active, no gradient
        return err, torch.zeros_like(x)
    xg = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(energy(xg).sum(), xg)
    return err, grad
