"""Pruning conformers by a symmetry-aware RMSD threshold.

The RMSD is :func:`rdconfvae.evaluation.metrics.superposed_rmsd` over the heavy-atom
automorphisms from :func:`rdconfvae.evaluation.metrics.symmetry_matches` (``GetBestRMS``
semantics, conjugated terminal groups such as carboxylates symmetrised).
"""

from __future__ import annotations

import numpy as np

__all__ = ["prune_indices"]


def prune_indices(rmsd: np.ndarray, threshold: float, order: list[int] | None = None) -> list[int]:
    """Greedy selection: walk ``order`` and keep a conformer whose RMSD to every
    conformer kept so far is at least ``threshold``. Every kept pair therefore
    differs by >= threshold; returns the kept indices in ascending order.

    Shapes: rmsd (K, K), Angstrom.
    """
    k = rmsd.shape[0]
    kept: list[int] = []
    for i in order if order is not None else range(k):
        if all(rmsd[i, j] >= threshold for j in kept):
            kept.append(i)
    return sorted(kept)
