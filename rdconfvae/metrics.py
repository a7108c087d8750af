"""Conformer-quality metrics: symmetry-aware RMSD, ensemble coverage, pose recovery, validity.

Units: Angstrom. Pure RDKit + numpy (no torch), reusable outside the benchmark.

The RMSD core (``GetBestRMS`` semantics, symmetry-aware, vectorised Kabsch, with its
example) lives in :mod:`rdconfvae.rmsd`, shared with inference; its names are re-exported here.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Iterable, Sequence

import numpy as np
from rdkit import Chem

from rdconfvae.rmsd import (
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
]

log = logging.getLogger(__name__)

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


def stereo_preserved(mol: Chem.Mol, conf_ids: Sequence[int] | None = None) -> list[bool]:
    """Per conformer: does the stereo perceived from 3D equal the molecule's own stereo?

    Compares canonical isomeric heavy-atom SMILES of the input graph with the SMILES after
    ``AssignStereochemistryFrom3D`` on each conformer (tetrahedral centres and double bonds).
    """
    heavy = heavy_atom_mol(mol)
    want = Chem.MolToSmiles(heavy)
    ids = [c.GetId() for c in heavy.GetConformers()] if conf_ids is None else list(conf_ids)
    out = []
    for cid in ids:
        probe = Chem.Mol(heavy)
        Chem.AssignStereochemistryFrom3D(probe, confId=int(cid), replaceExistingTags=True)
        out.append(Chem.MolToSmiles(probe) == want)
    return out


def require_posebusters() -> type:
    """PoseBusters' ``PoseBusters`` class; ``ImportError`` with the install hint when the
    optional package is missing (checked before a validity run starts)."""
    try:
        from posebusters import PoseBusters
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "validity checks need the optional 'posebusters' package: "
            "pip install 'rdconfvae[bench]' (or pip install posebusters)"
        ) from exc
    return PoseBusters


@functools.cache
def _mol_config() -> dict:
    """PoseBusters' own "mol" config (``posebusters/config/mol.yml``), as shipped; read once,
    never modified."""
    from pathlib import Path

    import posebusters
    import yaml

    path = Path(posebusters.__file__).parent / "config" / "mol.yml"
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _truthy(value: object) -> bool:
    """PoseBusters cells are numpy bools, NaN or pd.NA (check not run): only True passes."""
    try:
        return bool(value is not None and value == value and value)
    except TypeError:  # pd.NA
        return False


def _with_defaults(func, params: dict | None) -> dict:
    """``params`` over the keyword defaults of PoseBusters' own ``func`` (nothing invented)."""
    import inspect

    out = {
        k: p.default
        for k, p in inspect.signature(func).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    out.update(params or {})
    return out


def _bound_percent_error(d: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> np.ndarray:
    """PoseBusters' ``bpe``: relative excess beyond [lb, ub], 0 inside (NaN counts as inside)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(d < lb, (d - lb) / lb, np.where(d > ub, (d - ub) / ub, 0.0))


def _geometry_checks(mol: Chem.Mol, xyz: np.ndarray, **params) -> list[dict]:
    """PoseBusters' ``check_geometry`` (bond lengths, angles, internal clash), all conformers.

    Same pairs, bounds and formulas as ``posebusters.modules.distance_geometry``: RDKit
    distance-geometry bounds (``GetMoleculeBoundsMatrix``, computed once: they depend on the
    graph only), bounds of conjugated terminal O/N bonds symmetrised per element pair,
    hydrogen pairs dropped; a bond fails when its length is more than
    ``threshold_bad_bond_length`` (relative) outside its bounds, a 1-3 pair (angle) when it is
    more than ``threshold_bad_angle`` outside, any other pair clashes when it is more than
    ``threshold_clash`` below its lower bound. Only the per-pair row loop is vectorised.

    Shapes:
        xyz: (C, N, 3) Angstrom -> C dicts
    """
    from posebusters.modules.distance_geometry import check_geometry
    from rdkit.Chem.rdDistGeom import GetMoleculeBoundsMatrix

    p = _with_defaults(check_geometry, params)
    keys = ("bond_lengths_within_bounds", "bond_angles_within_bounds", "no_internal_clash")
    n_conf = xyz.shape[0]
    failed = [dict.fromkeys(keys, math.nan) for _ in range(n_conf)]
    work = Chem.Mol(mol)
    n = work.GetNumAtoms()
    if n == 1:
        return [dict.fromkeys(keys, True) for _ in range(n_conf)]
    try:
        if p["sanitize"] and Chem.SanitizeMol(work) != Chem.SanitizeFlags.SANITIZE_NONE:
            return failed
    except (ValueError, RuntimeError):  # RDKit's sanitisation errors (PoseBusters: NaN)
        return failed
    try:
        bounds = GetMoleculeBoundsMatrix(work, **p["bound_matrix_params"])
    except RuntimeError:
        return failed
    hi, lo = np.tril_indices(n, k=-1)  # pair (lo, hi), lo < hi, as PoseBusters' atom_pair
    lb = bounds[hi, lo].astype(np.float64)
    ub = bounds[lo, hi].astype(np.float64)
    bonded = np.zeros((n, n), dtype=bool)
    angle = np.zeros((n, n), dtype=bool)
    for bond in work.GetBonds():
        a, b = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        bonded[a, b] = bonded[b, a] = True
    for atom in work.GetAtoms():  # two bonds sharing one atom: its neighbour pairs
        nbrs = [x.GetIdx() for x in atom.GetNeighbors()]
        for i, a in enumerate(nbrs):
            for b in nbrs[i + 1 :]:
                angle[a, b] = angle[b, a] = True
    if p["symmetrize_conjugated_terminal_groups"]:
        # PoseBusters' pattern (the same as TERMINAL_GROUP_SMARTS); bounds -> min / max per
        # element pair over all matched bonds
        groups: dict[tuple[str, ...], list[int]] = {}
        for match in work.GetSubstructMatches(TERMINAL_GROUP_SMARTS):
            a, b = sorted(match)
            key = tuple(sorted(work.GetAtomWithIdx(i).GetSymbol() for i in (a, b)))
            groups.setdefault(key, []).append(b * (b - 1) // 2 + a)  # row of pair (a, b)
        for rows in groups.values():
            lb[rows], ub[rows] = lb[rows].min(), ub[rows].max()
    keep = np.ones(lo.shape, dtype=bool)
    if p["ignore_hydrogens"]:
        heavy = np.array([a.GetAtomicNum() != 1 for a in work.GetAtoms()])
        keep = heavy[lo] & heavy[hi]
    lo, hi, lb, ub = lo[keep], hi[keep], lb[keep], ub[keep]
    is_bond = bonded[lo, hi]
    is_angle = angle[lo, hi] & ~is_bond
    is_other = ~is_bond & ~angle[lo, hi]
    dist = np.linalg.norm(xyz[:, lo, :] - xyz[:, hi, :], axis=-1)  # (C, P)
    err = _bound_percent_error(dist, lb, ub)
    t_bond, t_angle = p["threshold_bad_bond_length"], p["threshold_bad_angle"]
    bad_bond = ((err < -t_bond) | (err > t_bond)) & is_bond
    bad_angle = (np.abs(err) > t_angle) & is_angle
    with np.errstate(invalid="ignore", divide="ignore"):
        clash_err = np.where(dist >= lb, 0.0, (dist - lb) / lb)
    clash = (clash_err < -p["threshold_clash"]) & is_other
    return [
        {
            keys[0]: not bool(bad_bond[c].any()),
            keys[1]: not bool(bad_angle[c].any()),
            keys[2]: not bool(clash[c].any()),
        }
        for c in range(n_conf)
    ]


def _flatness_checks(mol: Chem.Mol, xyz: np.ndarray, **params) -> list[dict]:
    """PoseBusters' ``check_flatness`` for all conformers (SMARTS matched once).

    For each match of each ``flat_systems`` pattern: signed distances of its atoms to their
    least-squares plane (normal = last right singular vector), maximum over the atoms, as
    PoseBusters computes it; passes when <= ``threshold_flatness`` (>= with
    ``check_nonflat``) for every match, or when nothing matches.

    Shapes:
        xyz: (C, N, 3) Angstrom -> C dicts
    """
    from posebusters.modules.flatness import check_flatness

    p = _with_defaults(check_flatness, params)
    n_conf = xyz.shape[0]
    work = Chem.Mol(mol)
    try:
        Chem.SanitizeMol(work)
    except (ValueError, RuntimeError):
        return [{"flatness_passes": math.nan} for _ in range(n_conf)]
    passes = np.ones(n_conf, dtype=bool)
    for smarts in p["flat_systems"].values():
        for group in work.GetSubstructMatches(Chem.MolFromSmarts(smarts)):
            pts = xyz[:, list(group), :]
            pts = pts - pts.mean(axis=1, keepdims=True)
            normal = np.linalg.svd(pts)[2][:, -1, :]  # (C, 3)
            dmax = np.einsum("ckx,cx->ck", pts, normal).max(axis=1)
            if p["check_nonflat"]:
                passes &= dmax >= p["threshold_flatness"]
            else:
                passes &= dmax <= p["threshold_flatness"]
    return [{"flatness_passes": bool(v)} for v in passes]


@functools.lru_cache(maxsize=4096)
def reference_energy(inchi: str, n_confs: int, num_threads: int) -> float:
    """Mean UFF energy (kcal/mol) of PoseBusters' reference ensemble for one InChI.

    ``posebusters.modules.energy_ratio.get_energies``: ``n_confs`` ETKDGv3 conformers (seed
    42, random starting coordinates) of the molecule rebuilt from the InChI, each
    UFF-minimised; identical for any ``num_threads``. Computed once per InChI and process; a
    failure is remembered as NaN (the check then fails, as in PoseBusters, which would retry
    it for every conformer).
    """
    from posebusters.modules.energy_ratio import get_energies

    try:
        energies = get_energies(inchi, n_confs, num_threads)
        return float(sum(energies) / len(energies))
    except Exception as exc:  # noqa: BLE001 - PoseBusters' semantics: any failure -> NaN
        log.warning("energy-ratio reference ensemble failed for %s: %s", inchi, exc)
        return math.nan


def _input_inchi(mol: Chem.Mol, inchi_strict: bool) -> str | None:
    """InChI of ``mol``'s graph with its declared stereo (no coordinates read), prepared as
    PoseBusters' energy module prepares a conformer (sanitised, radicals filled with H,
    hydrogens explicit); None when that fails."""
    from posebusters.tools.inchi import get_inchi
    from posebusters.tools.logging import CaptureLogger
    from posebusters.tools.molecules import hydrate_radicals

    work = Chem.Mol(mol)
    work.RemoveAllConformers()
    try:
        with CaptureLogger():
            return get_inchi(Chem.AddHs(hydrate_radicals(work)), inchi_strict=inchi_strict)
    except Exception:  # noqa: BLE001 - as PoseBusters: no InChI, no reference
        return None


def _energy_ratio_check(
    single: Chem.Mol, *, ref_inchi: str | None, num_threads: int, **params
) -> dict:
    """PoseBusters' ``check_energy_ratio`` on a one-conformer molecule (conformer id 0), with
    the reference ensemble of ``ref_inchi`` (the input molecule's InChI).

    UFF energy of the conformer (missing hydrogens added and UFF-placed first, none for a
    molecule with explicit H) divided by the mean UFF energy of the reference ensemble
    (:func:`reference_energy`), passing when the ratio is <= ``threshold_energy_ratio``.
    PoseBusters takes the ensemble of the conformer's own InChI (stereo perceived from its
    coordinates); that is ``ref_inchi`` for any conformer with the input's stereo, so the
    result is the same. For a conformer whose InChI differs (``inchi_matches_input`` False)
    PoseBusters would embed that other stereoisomer instead, which can take tens of minutes
    per conformer when it is geometrically impossible (a cage with an inverted centre).
    """
    from posebusters.modules.energy_ratio import check_energy_ratio
    from posebusters.tools.inchi import get_inchi
    from posebusters.tools.logging import CaptureLogger
    from posebusters.tools.molecules import add_hydrogens_with_uff_positions
    from rdkit.Chem.rdForceFieldHelpers import UFFHasAllMoleculeParams

    p = _with_defaults(check_energy_ratio, params)
    failed = {"energy_ratio": math.nan, "energy_ratio_passes": math.nan, "inchi": None}
    work = Chem.Mol(single)
    if work.GetNumConformers() == 0 or Chem.SanitizeMol(work, catchErrors=True):
        return failed
    try:
        with CaptureLogger():
            work, _, observed = add_hydrogens_with_uff_positions(work)
        if not UFFHasAllMoleculeParams(work):
            return failed
        inchi = get_inchi(work, inchi_strict=p["inchi_strict"])
    except Exception:  # noqa: BLE001 - PoseBusters: any failure here -> NaN
        return failed
    mean = reference_energy(
        ref_inchi or inchi, int(p["ensemble_number_conformations"]), int(num_threads)
    )
    if mean == 0:
        mean = p["epsilon"]
    ratio = observed / mean
    ok = ratio <= p["threshold_energy_ratio"] if math.isfinite(ratio) else math.nan
    return {"energy_ratio": ratio, "energy_ratio_passes": ok, "inchi": inchi}


#: PoseBusters module functions that read no coordinates: run once per molecule.
_GRAPH_ONLY = frozenset({"loading", "rdkit_sanity", "atoms_connected", "check_radicals"})


def posebusters_checks(
    mol: Chem.Mol, conf_ids: Sequence[int] | None = None, *, num_threads: int = 1
) -> list[dict]:
    """PoseBusters molecule checks (its "mol" config) for each conformer of ``mol``.

    The checks and thresholds are PoseBusters' own, read from its ``mol.yml`` (values of
    posebusters 0.6.5 below): sanitisation,
    InChI conversion, one fragment, no radicals, bond lengths / bond angles / internal clash
    against RDKit distance-geometry bounds (25 % / 25 % / 30 % tolerance, hydrogens
    ignored), aromatic 5- and 6-rings and C=C double bonds flat (0.25 A), non-aromatic
    6-rings not flat (0.05 A), UFF energy at most 100 x the mean of a 50-conformer
    reference ensemble. ``PoseBusters(config="mol").bust`` on one-conformer copies gives the
    same pass/fail (tested); only the work is shared: graph-only checks once per molecule,
    geometry and flatness vectorised over the conformers with bounds and SMARTS matches
    computed once, InChI and the conformer's UFF energy per conformer, and the energy
    ratio's reference ensemble (ETKDGv3 seed 42 from random coordinates, UFF-minimised)
    once per molecule: that of the input's InChI, cached for the process.

    The one difference: PoseBusters builds the reference from each conformer's own InChI
    (stereo perceived from 3D). For conformers with the input's stereo that is the same
    ensemble; for the others (``inchi_matches_input`` False) it would embed that other
    stereoisomer, per conformer, which takes minutes to hours when the stereoisomer cannot
    exist (an inverted centre in a cage); the input's ensemble is used instead.
    ``stereo`` (RDKit stereo perceived from 3D equals the input's) is added.

    Args:
        num_threads: threads of the reference ensemble's ETKDG and UFF steps (0 = all cores,
            PoseBusters' default); the results do not depend on it.

    Returns:
        One dict per conformer: ``{"conf_id", "checks": {name: bool}, "pass_all": bool,
        "stereo": bool, "energy_ratio": float, "inchi_matches_input": bool}``; ``pass_all``
        covers the PoseBusters checks only; names are PoseBusters' report columns
        (``bond_lengths``, ``internal_energy``, ...).

    Raises:
        ImportError: posebusters is not installed.
    """
    require_posebusters()
    from posebusters.posebusters import module_dict

    ids = [c.GetId() for c in mol.GetConformers()] if conf_ids is None else list(conf_ids)
    if not ids:
        return []
    cfg = _mol_config()
    xyz = conformer_coords(mol, ids)
    bare = Chem.Mol(mol)
    bare.RemoveAllConformers()
    singles = []
    for cid in ids:
        # one conformer, re-numbered 0: PoseBusters' energy module reads conformer id 0
        single = Chem.Mol(bare)
        conf = Chem.Conformer(mol.GetConformer(int(cid)))
        conf.SetId(0)
        single.AddConformer(conf)
        singles.append(single)
    names = {
        (m["name"], k): v for m in cfg["modules"] for k, v in m.get("rename_outputs", {}).items()
    }
    columns: dict[str, list] = {}
    ratios = [math.nan] * len(ids)
    same_inchi = [False] * len(ids)
    for module in cfg["modules"]:
        outputs = module.get("chosen_binary_test_output") or []
        if not outputs:  # mol.yml lists the energy ratio twice, once reporting nothing
            continue
        fname, params = module["function"], module.get("parameters") or {}
        if fname == "distance_geometry":
            res = _geometry_checks(mol, xyz, **params)
        elif fname == "flatness":
            res = _flatness_checks(mol, xyz, **params)
        elif fname == "energy_ratio":
            strict = _with_defaults(module_dict[fname], params)["inchi_strict"]
            ref_inchi = _input_inchi(bare, strict)
            res = [
                _energy_ratio_check(s, ref_inchi=ref_inchi, num_threads=num_threads, **params)
                for s in singles
            ]
            ratios = [r["energy_ratio"] for r in res]
            same_inchi = [r["inchi"] is not None and r["inchi"] == ref_inchi for r in res]
        elif fname in _GRAPH_ONLY:
            res = [module_dict[fname](Chem.Mol(singles[0]), **params)["results"]] * len(ids)
        else:  # any other module: PoseBusters' function per conformer
            res = [module_dict[fname](Chem.Mol(s), **params)["results"] for s in singles]
        for out in outputs:
            col = str(names.get((module["name"], out), out)).lower().replace(" ", "_")
            columns[col] = [r.get(out, math.nan) for r in res]
    stereo = stereo_preserved(mol, ids)
    out = []
    for k, (cid, st) in enumerate(zip(ids, stereo, strict=True)):
        checks = {name: _truthy(vals[k]) for name, vals in columns.items()}
        out.append(
            {
                "conf_id": int(cid),
                "checks": checks,
                "pass_all": all(checks.values()),
                "stereo": st,
                "energy_ratio": float(ratios[k]),
                "inchi_matches_input": same_inchi[k],
            }
        )
    return out
