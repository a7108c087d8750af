"""Symmetry-aware heavy-atom RMSD between conformers, and pruning by a threshold.

RMSD semantics follow ``rdMolAlign.GetBestRMS``: heavy atoms, optimal rigid
superposition without reflection, minimum over the graph automorphisms of the
heavy-atom graph (so swapping the oxygens of a carboxylate costs nothing).
Highly symmetric molecules are guarded by ``max_matches`` (the first that many
automorphisms are tried; documented bias: the RMSD can only be overestimated).
"""

from __future__ import annotations

import numpy as np
from rdkit import Chem

__all__ = ["automorphisms", "rmsd_matrix", "prune_indices", "MAX_MATCHES"]

MAX_MATCHES = 1000


def automorphisms(heavy: Chem.Mol, max_matches: int = MAX_MATCHES) -> np.ndarray:
    """Heavy-atom graph automorphisms as permutations, (S, N) int64; row 0 is the identity."""
    matches = heavy.GetSubstructMatches(
        heavy, uniquify=False, useChirality=False, maxMatches=max_matches
    )
    ident = tuple(range(heavy.GetNumAtoms()))
    perms = [ident] + [m for m in matches if m != ident]
    return np.asarray(perms, dtype=np.int64).reshape(len(perms), heavy.GetNumAtoms())


def _kabsch_rmsd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """RMSD after optimal proper rotation for centred coordinate sets.

    Shapes: a (..., N, 3), b (..., N, 3) broadcastable; returns (...).
    """
    h = np.einsum("...ni,...nj->...ij", a, b)
    u, s, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(np.einsum("...ij,...jk->...ik", u, vt)))
    s = s.copy()
    s[..., 2] *= d
    n = a.shape[-2]
    sq = (a * a).sum((-1, -2)) + (b * b).sum((-1, -2)) - 2.0 * s.sum(-1)
    return np.sqrt(np.clip(sq, 0.0, None) / n)


def rmsd_matrix(coords: np.ndarray, perms: np.ndarray) -> np.ndarray:
    """Symmetric (K, K) matrix of symmetry-aware RMSD between K conformers.

    Shapes: coords (K, N, 3) heavy atoms, Angstrom; perms (S, N).
    """
    x = coords - coords.mean(axis=1, keepdims=True)
    k = x.shape[0]
    best = np.full((k, k), np.inf)
    for perm in perms:
        r = _kabsch_rmsd(x[:, None], x[None, :, perm])
        np.minimum(best, r, out=best)
    best = np.minimum(best, best.T)
    np.fill_diagonal(best, 0.0)
    return best


def prune_indices(rmsd: np.ndarray, threshold: float, order: list[int] | None = None) -> list[int]:
    """Greedy selection: walk ``order`` and keep a conformer whose RMSD to every
    conformer kept so far is at least ``threshold``. Every kept pair therefore
    differs by >= threshold; returns the kept indices in ascending order."""
    k = rmsd.shape[0]
    kept: list[int] = []
    for i in order if order is not None else range(k):
        if all(rmsd[i, j] >= threshold for j in kept):
            kept.append(i)
    return sorted(kept)
