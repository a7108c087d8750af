"""Conformer-quality metrics: symmetry-aware RMSD, ensemble coverage, pose recovery, validity.

Units: Angstrom. Pure RDKit + numpy (no torch), reusable outside the benchmark.

This module holds the ensemble metrics (COV / MAT against a reference ensemble, the minimum
RMSD to a pose and its summary) and is the one place to import every metric from; the rest
lives by job and is re-exported here: the RMSD core (``GetBestRMS`` semantics,
symmetry-aware, vectorised Kabsch, with its example) in :mod:`rdconfvae.geometry.rmsd`, shared with
inference; PoseBusters' checks and stereo from 3D in :mod:`rdconfvae.evaluation.validity`; the
energy-ratio reference ensembles in :mod:`rdconfvae.evaluation.energy_ratio`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
from rdkit import Chem

from rdconfvae.evaluation.energy_ratio import reference_energy
from rdconfvae.evaluation.posebusters_support import require_posebusters
from rdconfvae.evaluation.validity import posebusters_checks, stereo_preserved
from rdconfvae.geometry.rmsd import (
    DEFAULT_MAX_MATCHES,
    TERMINAL_GROUP_SMARTS,
    best_rms,
    conformer_coords,
    heavy_atom_mol,
    rmsd_matrix,
    superposed_rmsd,
    symmetry_matches,
)

__all__ = [
    "DEFAULT_MAX_MATCHES",
    "POSE_THRESHOLDS",
    "heavy_atom_mol",
    "symmetry_matches",
    "superposed_rmsd",
    "rmsd_matrix",
    "best_rms",
    "min_rmsd_to_pose",
    "ensemble_metrics",
    "pose_summary",
    "posebusters_checks",
    "reference_energy",
    "require_posebusters",
    "stereo_preserved",
    # importable from here before the RMSD core moved to rdconfvae.geometry.rmsd
    "TERMINAL_GROUP_SMARTS",
    "conformer_coords",
]

#: RMSD thresholds (Angstrom) reported for bioactive-pose recovery.
POSE_THRESHOLDS = (0.5, 1.0, 1.5, 2.0)


def min_rmsd_to_pose(
    gen_mol: Chem.Mol,
    pose_mol: Chem.Mol,
    *,
    pose_conf: int = -1,
    max_matches: int = DEFAULT_MAX_MATCHES,
) -> float:
    """Smallest heavy-atom RMSD of any conformer of ``gen_mol`` to the pose (Platinum protocol).

    Raises:
        ValueError: ``gen_mol`` has no conformers or the graphs differ.
    """
    ids_b = [pose_mol.GetConformer(int(pose_conf)).GetId()]
    d = rmsd_matrix(gen_mol, pose_mol, conf_ids_b=ids_b, max_matches=max_matches)
    return float(d.min())


def ensemble_metrics(
    gen_mol: Chem.Mol,
    ref_mol: Chem.Mol,
    delta: float = 1.25,
    strict: bool = False,
    *,
    max_matches: int = DEFAULT_MAX_MATCHES,
) -> dict[str, float]:
    """Coverage and matching of a generated ensemble against a reference ensemble.

    GEOM protocol (ConfGF / ConfVAE / GeoDiff): with D the (generated x reference) RMSD
    matrix, COV-R is the fraction of reference conformers whose closest generated conformer
    is within ``delta``; MAT-R the mean over reference conformers of that closest RMSD;
    COV-P / MAT-P the same with the roles swapped (precision). ``strict=True`` uses
    ``< delta`` (torsional diffusion's variant, with delta 0.75 A) instead of ``<= delta``.

    Returns:
        dict with ``cov_r``, ``cov_p`` (fractions in [0, 1]), ``mat_r``, ``mat_p``
        (Angstrom), ``n_gen``, ``n_ref``, ``delta``, ``strict``.
    """
    d = rmsd_matrix(gen_mol, ref_mol, max_matches=max_matches)  # (G, R)
    min_per_ref = d.min(axis=0)
    min_per_gen = d.min(axis=1)
    if strict:
        cov_r = float(np.mean(min_per_ref < delta))
        cov_p = float(np.mean(min_per_gen < delta))
    else:
        cov_r = float(np.mean(min_per_ref <= delta))
        cov_p = float(np.mean(min_per_gen <= delta))
    return {
        "cov_r": cov_r,
        "mat_r": float(min_per_ref.mean()),
        "cov_p": cov_p,
        "mat_p": float(min_per_gen.mean()),
        "n_gen": int(d.shape[0]),
        "n_ref": int(d.shape[1]),
        "delta": float(delta),
        "strict": bool(strict),
    }


def pose_summary(
    min_rmsds: Iterable[float | None], thresholds: Sequence[float] = POSE_THRESHOLDS
) -> dict[str, float]:
    """Median, mean and share below each threshold of per-molecule minimum RMSDs.

    A missing value (``None``, NaN or inf: the generator produced nothing) counts as a miss:
    it enters ``n`` and the median as +inf and is below no threshold. ``mean`` is over the
    finite values only. Shares are fractions in [0, 1], strictly below the threshold.

    Returns:
        ``{"n", "n_finite", "median", "mean", "below_0.5", "below_1.0", ...}``.
    """
    vals = np.array(
        [math.inf if (v is None or not math.isfinite(v)) else float(v) for v in min_rmsds],
        dtype=np.float64,
    )
    finite = vals[np.isfinite(vals)]
    out: dict[str, float] = {
        "n": int(vals.size),
        "n_finite": int(finite.size),
        "median": float(np.median(vals)) if vals.size else math.nan,
        "mean": float(finite.mean()) if finite.size else math.nan,
    }
    for t in thresholds:
        out[f"below_{t:g}" if t != int(t) else f"below_{t:.1f}"] = (
            float(np.mean(vals < t)) if vals.size else math.nan
        )
    return out
