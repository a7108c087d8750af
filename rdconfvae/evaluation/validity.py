"""Validity of generated conformers: PoseBusters' molecule checks and stereo from 3D.

:func:`posebusters_checks` runs PoseBusters' "mol" checks (its own config and thresholds) on
every conformer of a molecule with the work shared: graph-only checks once, geometry and
flatness vectorised over the conformers, the energy ratio's reference ensemble once per
molecule (:mod:`rdconfvae.evaluation.energy_ratio`). :func:`stereo_preserved` compares the stereo
perceived from 3D with the molecule's own. Units: Angstrom. Re-exported by
:mod:`rdconfvae.evaluation.metrics`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rdkit import Chem

from rdconfvae.evaluation.energy_ratio import energy_ratio_check, input_inchi
from rdconfvae.evaluation.posebusters_support import require_posebusters, with_defaults
from rdconfvae.geometry.rmsd import TERMINAL_GROUP_SMARTS, conformer_coords, heavy_atom_mol

__all__ = ["posebusters_checks", "stereo_preserved"]


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


@functools.cache
def _mol_config() -> dict[str, Any]:
    """PoseBusters' own "mol" config (``posebusters/config/mol.yml``), as shipped; read once,
    never modified."""
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


def _bound_percent_error(d: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> np.ndarray:
    """PoseBusters' ``bpe``: relative excess beyond [lb, ub], 0 inside (NaN counts as inside)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(d < lb, (d - lb) / lb, np.where(d > ub, (d - ub) / ub, 0.0))


def _geometry_checks(mol: Chem.Mol, xyz: np.ndarray, **params: Any) -> list[dict[str, Any]]:
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

    p = with_defaults(check_geometry, params)
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


def _flatness_checks(mol: Chem.Mol, xyz: np.ndarray, **params: Any) -> list[dict[str, Any]]:
    """PoseBusters' ``check_flatness`` for all conformers (SMARTS matched once).

    For each match of each ``flat_systems`` pattern: signed distances of its atoms to their
    least-squares plane (normal = last right singular vector), maximum over the atoms, as
    PoseBusters computes it; passes when <= ``threshold_flatness`` (>= with
    ``check_nonflat``) for every match, or when nothing matches.

    Shapes:
        xyz: (C, N, 3) Angstrom -> C dicts
    """
    from posebusters.modules.flatness import check_flatness

    p = with_defaults(check_flatness, params)
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


#: PoseBusters module functions that read no coordinates: run once per molecule.
_GRAPH_ONLY = frozenset({"loading", "rdkit_sanity", "atoms_connected", "check_radicals"})


def posebusters_checks(
    mol: Chem.Mol, conf_ids: Sequence[int] | None = None, *, num_threads: int = 1
) -> list[dict[str, Any]]:
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
    columns: dict[str, list[Any]] = {}
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
            strict = with_defaults(module_dict[fname], params)["inchi_strict"]
            ref_inchi = input_inchi(bare, strict)
            res = [
                energy_ratio_check(s, ref_inchi=ref_inchi, num_threads=num_threads, **params)
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
