"""RDKit's ``coordMap`` (``{atom index: Point3D}``) read and checked; no torch here.

:func:`parse_coord_map` checks the indices and values, :func:`check_bounds` the mapped
distances against RDKit's bounds matrix; both raise :class:`InvalidInputError` naming
the fault. The embedding with fixed atoms is :mod:`rdconfvae.embedding.constraints`.
Units: Angstrom.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from rdkit import Chem
from rdkit.Chem import rdDistGeom

from rdconfvae.errors import InvalidInputError

__all__ = [
    "COORD_MAP_TOLERANCE",
    "parse_coord_map",
    "check_bounds",
    "coord_map_json",
    "coord_map_from_json",
    "bounds_ok",
    "kabsch",
    "superpose_onto",
]

#: A mapped distance may leave RDKit's bounds by this much (Angstrom): RDKit's own
#: embedding tests accept conformers within 0.425 A of the bounds.
COORD_MAP_TOLERANCE = 0.425


def _point(key: int, value: Any) -> np.ndarray:
    """One coordMap value (Point3D, an object with x/y/z, or 3 numbers) as a float array."""
    if all(hasattr(value, c) for c in ("x", "y", "z")):
        raw: Any = (value.x, value.y, value.z)
    elif isinstance(value, str | bytes) or not hasattr(value, "__len__"):
        raise InvalidInputError(
            f"coordMap[{key}]: expected a Point3D or 3 numbers, got {type(value).__name__}"
        )
    else:
        raw = value
    try:
        xyz = np.asarray(raw, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise InvalidInputError(
            f"coordMap[{key}]: expected a Point3D or 3 numbers, got {value!r}"
        ) from None
    if xyz.shape != (3,) or not np.isfinite(xyz).all():
        raise InvalidInputError(f"coordMap[{key}]: expected 3 finite numbers, got {value!r}")
    return xyz


def parse_coord_map(mol: Chem.Mol, coord_map: Any) -> dict[int, np.ndarray]:
    """``coord_map`` checked against ``mol``: ``{atom index: (3,) float64}``, sorted.

    Raises :class:`InvalidInputError` for a non-mapping, a non-integer or out-of-range
    index, a value that is not a Point3D or 3 finite numbers, or a hydrogen.
    """
    if coord_map is None:
        return {}
    if not isinstance(coord_map, Mapping):
        raise InvalidInputError(
            f"coordMap must be a dict {{atom index: Point3D}}, got {type(coord_map).__name__}"
        )
    n = mol.GetNumAtoms()
    out: dict[int, np.ndarray] = {}
    for key, value in coord_map.items():
        if isinstance(key, bool) or not isinstance(key, int | np.integer):
            raise InvalidInputError(f"coordMap key {key!r} is not an atom index (int)")
        idx = int(key)
        if not 0 <= idx < n:
            raise InvalidInputError(
                f"coordMap atom index {idx} is out of range for a molecule of {n} atoms"
            )
        out[idx] = _point(idx, value)
    hydrogens = [i for i in out if mol.GetAtomWithIdx(i).GetAtomicNum() == 1]
    if hydrogens:
        raise InvalidInputError(
            f"coordMap fixes hydrogen atom(s) {hydrogens}: only heavy atoms can be fixed "
            "(hydrogens are placed on the heavy-atom frame)"
        )
    return dict(sorted(out.items()))


def check_bounds(mol: Chem.Mol, points: dict[int, np.ndarray]) -> None:
    """Every mapped pair within RDKit's distance bounds +- :data:`COORD_MAP_TOLERANCE`."""
    idx = list(points)
    if len(idx) < 2:
        return
    bounds = rdDistGeom.GetMoleculeBoundsMatrix(mol)
    xyz = np.stack([points[i] for i in idx])
    dist = np.linalg.norm(xyz[:, None] - xyz[None], axis=-1)
    tol = COORD_MAP_TOLERANCE
    for a in range(len(idx)):
        for b in range(a + 1, len(idx)):
            i, j = min(idx[a], idx[b]), max(idx[a], idx[b])
            upper, lower, d = bounds[i, j], bounds[j, i], dist[a, b]
            if d < lower - tol:
                raise InvalidInputError(
                    f"coordMap: atoms {i} and {j} are {d:.3f} A apart, below RDKit's lower "
                    f"distance bound {lower:.3f} A by more than {tol} A"
                )
            if d > upper + tol:
                raise InvalidInputError(
                    f"coordMap: atoms {i} and {j} are {d:.3f} A apart, above RDKit's upper "
                    f"distance bound {upper:.3f} A by more than {tol} A"
                )


def coord_map_json(coord_map: Any) -> dict[str, list[float]] | None:
    """A coordMap as JSON-ready data: ``{"3": [x, y, z]}`` (None stays None)."""
    if coord_map is None:
        return None
    return {str(int(k)): _point(int(k), v).tolist() for k, v in dict(coord_map).items()}


def coord_map_from_json(data: Any) -> dict[int, Any] | None:
    """Inverse of :func:`coord_map_json`: ``{3: Point3D}``."""
    if data is None:
        return None
    from rdkit.Geometry import Point3D

    return {int(k): Point3D(*map(float, v)) for k, v in data.items()}


def bounds_ok(mol: Chem.Mol, xyz: np.ndarray, tol: float = COORD_MAP_TOLERANCE) -> np.ndarray:
    """Which conformers pass RDKit's embedding check: every atom pair at least its lower
    distance bound - ``tol``, every bond at most its upper bound + ``tol``
    (``GetMoleculeBoundsMatrix``). Shapes: xyz (K, N, 3) in ``mol``'s atom order; returns (K,)."""
    bounds = rdDistGeom.GetMoleculeBoundsMatrix(mol)
    i, j = np.triu_indices(mol.GetNumAtoms(), k=1)
    d = np.linalg.norm(xyz[:, i] - xyz[:, j], axis=-1)
    ok = (d >= bounds[j, i] - tol).all(-1)
    if mol.GetNumBonds():
        b = np.array([sorted((x.GetBeginAtomIdx(), x.GetEndAtomIdx())) for x in mol.GetBonds()])
        db = np.linalg.norm(xyz[:, b[:, 0]] - xyz[:, b[:, 1]], axis=-1)
        ok &= (db <= bounds[b[:, 0], b[:, 1]] + tol).all(-1)
    return ok


def kabsch(p: np.ndarray, q: np.ndarray, reflect: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Rotation R (3, 3) and translation t (3,) with ``p @ R + t`` closest to ``q``.

    Shapes: p, q (M, 3). ``reflect`` allows an improper transform (a mirror image).
    """
    pc, qc = p.mean(0), q.mean(0)
    h = (p - pc).T @ (q - qc)
    u, _, vt = np.linalg.svd(h)
    if not reflect and np.linalg.det(u @ vt) < 0:
        u[:, -1] *= -1
    rot = u @ vt
    return rot, qc - pc @ rot


def superpose_onto(xyz: np.ndarray, points: dict[int, np.ndarray]) -> np.ndarray:
    """A conformer (N, 3) moved rigidly so that the mapped atoms best fit their points."""
    idx = list(points)
    rot, shift = kabsch(xyz[idx], np.stack([points[i] for i in idx]))
    return xyz @ rot + shift
