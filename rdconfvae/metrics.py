"""Conformer-quality metrics: symmetry-aware RMSD, ensemble coverage, pose recovery, validity.

Units: Angstrom. Pure RDKit + numpy (no torch), reusable outside the benchmark.

RMSD semantics follow ``rdMolAlign.GetBestRMS`` on hydrogen-free copies of the molecules:
heavy atoms only, optimal rigid superposition without reflection, minimum over all graph
symmetries (substructure matches of the reference graph onto the probe graph, chirality
ignored, conjugated terminal groups such as carboxylates and nitro groups symmetrised).
Unlike ``GetBestRMS`` nothing is moved: the probe's coordinates are left as they are.

Speed: the symmetry matches are enumerated once per molecule pair and every
(probe conformer, reference conformer, match) triple is superposed at once with a vectorised
Kabsch step (singular values of the 3x3 covariance, sign-corrected for proper rotations).

Guard for huge symmetry: at most ``max_matches`` matches are enumerated
(:data:`DEFAULT_MAX_MATCHES`; RDKit's own default is 10**6). When the cap is hit a warning
is logged and the result is an upper bound of the true symmetry-aware RMSD.

Example:
    >>> from rdkit import Chem
    >>> from rdkit.Chem import AllChem
    >>> m = Chem.AddHs(Chem.MolFromSmiles("CCO"))
    >>> AllChem.EmbedMolecule(m, randomSeed=7)
    0
    >>> round(best_rms(m, Chem.Mol(m)), 6)
    0.0
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Iterable, Sequence

import numpy as np
from rdkit import Chem

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
    "stereo_preserved",
]

log = logging.getLogger(__name__)

#: Cap on the number of symmetry matches enumerated per molecule pair.
DEFAULT_MAX_MATCHES = 10_000
#: RMSD thresholds (Angstrom) reported for bioactive-pose recovery.
POSE_THRESHOLDS = (0.5, 1.0, 1.5, 2.0)

# Same pattern as RDKit's MolAlign::details::symmetrizeTerminalAtoms: a terminal O/N bound to
# an atom that also carries another terminal O/N by the other bond order (C(=O)[O-], N(=O)=O).
_TERMINAL_SMARTS = Chem.MolFromSmarts(
    "[O,N;D1;$([O,N;D1]-[*]=[O,N;D1]),$([O,N;D1]=[*]-[O,N;D1])]~[*]"
)
# Work-array budget (float64 elements) for one vectorised Kabsch chunk (~64 MB).
_CHUNK_ELEMENTS = 8_000_000


def heavy_atom_mol(mol: Chem.Mol) -> Chem.Mol:
    """Copy of ``mol`` without any hydrogen, conformers kept.

    Uses ``Chem.RemoveAllHs``: ``RemoveHs`` keeps hydrogens that carry MDL query flags
    (as in the Platinum SDF files).
    """
    try:
        return Chem.RemoveAllHs(mol)
    except (ValueError, RuntimeError):  # unsanitisable input: strip H without sanitising
        heavy = Chem.RemoveAllHs(mol, sanitize=False)
        heavy.UpdatePropertyCache(strict=False)
        return heavy


def _symmetrised(mol: Chem.Mol) -> Chem.Mol:
    """Graph used for matching: conjugated terminal O/N neutral, their bonds single.

    Applied to both molecules, this makes ``C(=O)[O-]`` match itself with the two oxygens
    swapped, as RDKit's ``symmetrizeConjugatedTerminalGroups=True`` does.
    """
    hits = mol.GetSubstructMatches(_TERMINAL_SMARTS, uniquify=False)
    if not hits:
        return mol
    rw = Chem.RWMol(mol)
    for term, nbr in hits:
        rw.GetAtomWithIdx(term).SetFormalCharge(0)
        bond = rw.GetBondBetweenAtoms(term, nbr)
        bond.SetBondType(Chem.BondType.SINGLE)
        bond.SetIsAromatic(False)
    return rw.GetMol()


def symmetry_matches(
    probe: Chem.Mol, ref: Chem.Mol, *, max_matches: int = DEFAULT_MAX_MATCHES
) -> np.ndarray:
    """Atom correspondences between two hydrogen-free molecules with the same graph.

    Returns:
        int array (K, N): row k maps probe atom i to reference atom ``out[k, i]``.

    Raises:
        ValueError: the graphs differ (no complete match).
    """
    if probe.GetNumAtoms() != ref.GetNumAtoms():
        raise ValueError(
            f"different heavy-atom counts: {probe.GetNumAtoms()} vs {ref.GetNumAtoms()}"
        )
    query = _symmetrised(probe)
    target = _symmetrised(ref)
    params = Chem.SubstructMatchParameters()
    # rdkit's stubs type these attributes as the parameter class itself
    params.uniquify = False  # type: ignore[assignment]
    params.useChirality = False  # type: ignore[assignment]
    params.maxMatches = int(max_matches)  # type: ignore[assignment]
    matches = target.GetSubstructMatches(query, params)
    if not matches:
        raise ValueError("no substructure match between the two heavy-atom graphs")
    if len(matches) >= max_matches:
        log.warning(
            "symmetry matches capped at %d (molecule %s): RMSD is an upper bound",
            max_matches,
            probe.GetProp("_Name") if probe.HasProp("_Name") else "?",
        )
    return np.asarray(matches, dtype=np.intp)


def _coords(mol: Chem.Mol, conf_ids: Sequence[int] | None) -> np.ndarray:
    """(C, N, 3) float64 coordinates of the selected conformers."""
    if mol.GetNumConformers() == 0:
        raise ValueError("molecule has no conformers")
    if conf_ids is None:
        confs = list(mol.GetConformers())
    else:
        confs = [mol.GetConformer(int(c)) for c in conf_ids]
    return np.stack([c.GetPositions() for c in confs]).astype(np.float64, copy=False)


def _max_rotational_trace(cov: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Largest eigenvalue of Horn's 4x4 quaternion key matrix built from ``cov``.

    That eigenvalue is max over proper rotations U of trace(U cov), i.e. s1 + s2 + sign(det)
    s3 with s the singular values of ``cov`` (Kabsch without reflection). Found by Newton's
    method on the characteristic quartic, started from ``upper`` >= the root (the QCP
    method of Theobald, Acta Cryst. A 2005): fully vectorised, no per-matrix LAPACK call.

    Shapes:
        cov: (..., 3, 3), upper: broadcastable to cov.shape[:-2] -> cov.shape[:-2]
    """
    sxx, sxy, sxz = cov[..., 0, 0], cov[..., 0, 1], cov[..., 0, 2]
    syx, syy, syz = cov[..., 1, 0], cov[..., 1, 1], cov[..., 1, 2]
    szx, szy, szz = cov[..., 2, 0], cov[..., 2, 1], cov[..., 2, 2]
    # key matrix (symmetric, traceless)
    k00 = sxx + syy + szz
    k01 = syz - szy
    k02 = szx - sxz
    k03 = sxy - syx
    k11 = sxx - syy - szz
    k12 = sxy + syx
    k13 = szx + sxz
    k22 = -sxx + syy - szz
    k23 = syz + szy
    k33 = -sxx - syy + szz
    # det(K) by 2x2-minor expansion (rows 0-1 against rows 2-3)
    m0 = k00 * k11 - k01 * k01
    m1 = k00 * k12 - k01 * k02
    m2 = k00 * k13 - k01 * k03
    m3 = k01 * k12 - k11 * k02
    m4 = k01 * k13 - k11 * k03
    m5 = k02 * k13 - k12 * k03
    n5 = k22 * k33 - k23 * k23
    n4 = k12 * k33 - k13 * k23
    n3 = k12 * k23 - k13 * k22
    n2 = k02 * k33 - k03 * k23
    n1 = k02 * k23 - k03 * k22
    n0 = k02 * k13 - k03 * k12
    c0 = m0 * n5 - m1 * n4 + m2 * n3 + m3 * n2 - m4 * n1 + m5 * n0
    det = sxx * (syy * szz - syz * szy) - sxy * (syx * szz - syz * szx)
    det += sxz * (syx * szy - syy * szx)
    c1 = -8.0 * det
    c2 = -2.0 * np.einsum("...ij,...ij->...", cov, cov)
    lam = np.broadcast_to(upper, c0.shape).astype(np.float64, copy=True)
    for _ in range(60):
        lam2 = lam * lam
        f = (lam2 + c2) * lam2 + c1 * lam + c0
        fp = 4.0 * lam2 * lam + 2.0 * c2 * lam + c1
        # f' ~ 0: (near-)double largest root (linear molecules); Newton is ill-posed there
        simple = np.abs(fp) > 1e-6 * np.maximum(np.abs(lam), 1e-12) ** 3
        step = np.divide(f, fp, out=np.zeros_like(f), where=simple)
        lam -= step
        if np.all(np.abs(step) <= 1e-13 * np.maximum(np.abs(lam), 1.0)):
            break
    if not np.all(simple):
        # rare: exact Kabsch by SVD for those matrices
        sub = cov[~simple]
        sv = np.linalg.svd(sub, compute_uv=False)
        sign = np.where(np.linalg.det(sub) < 0, -1.0, 1.0)
        lam[~simple] = sv[:, 0] + sv[:, 1] + sign * sv[:, 2]
    return lam


def superposed_rmsd(probe: np.ndarray, ref: np.ndarray, matches: np.ndarray) -> np.ndarray:
    """Minimum over matches of the optimally superposed RMSD, no reflection.

    Coordinates in Angstrom; also used by the embed API's conformer pruning.

    Shapes:
        probe: (P, N, 3), ref: (R, N, 3), matches: (K, N) -> (P, R)
    """
    n_atoms = probe.shape[1]
    probe = probe - probe.mean(axis=1, keepdims=True)
    ref = ref - ref.mean(axis=1, keepdims=True)
    sq_p = np.einsum("pni,pni->p", probe, probe)
    sq_r = np.einsum("rni,rni->r", ref, ref)
    n_p, n_r, n_k = probe.shape[0], ref.shape[0], matches.shape[0]
    best = np.full((n_p, n_r), np.inf)
    # Chunk over probe conformers and matches so the gathered reference and the covariance
    # stack (about 30 float64 temporaries per covariance) stay within the work budget.
    p_step = max(1, min(n_p, _CHUNK_ELEMENTS // max(n_r * 30, 1)))
    k_step = max(1, min(n_k, _CHUNK_ELEMENTS // max(p_step * n_r * 30, n_r * n_atoms * 3, 1)))
    for k0 in range(0, n_k, k_step):
        ref_k = ref[:, matches[k0 : k0 + k_step]]  # (R, k, N, 3) in probe atom order
        k = ref_k.shape[1]
        ref_flat = ref_k.transpose(2, 0, 1, 3).reshape(n_atoms, n_r * k * 3)
        for p0 in range(0, n_p, p_step):
            p1 = min(n_p, p0 + p_step)
            # (3p, N) @ (N, 3Rk): one GEMM gives every 3x3 covariance of the chunk
            probe_t = probe[p0:p1].transpose(0, 2, 1).reshape((p1 - p0) * 3, n_atoms)
            cov = (probe_t @ ref_flat).reshape(p1 - p0, 3, n_r, k, 3).transpose(0, 2, 3, 1, 4)
            total = sq_p[p0:p1, None, None] + sq_r[None, :, None]
            lam = _max_rotational_trace(cov, 0.5 * total)
            msd = (total - 2.0 * lam) / n_atoms
            np.minimum(best[p0:p1], msd.min(axis=2), out=best[p0:p1])
    return np.sqrt(np.clip(best, 0.0, None))


def rmsd_matrix(
    mol_a: Chem.Mol,
    mol_b: Chem.Mol,
    *,
    conf_ids_a: Sequence[int] | None = None,
    conf_ids_b: Sequence[int] | None = None,
    max_matches: int = DEFAULT_MAX_MATCHES,
) -> np.ndarray:
    """Heavy-atom symmetry-aware RMSD between every conformer of ``mol_a`` and of ``mol_b``.

    The two molecules must have the same heavy-atom graph; atom order and hydrogens may
    differ. Equivalent to ``rdMolAlign.GetBestRMS`` on ``Chem.RemoveAllHs`` copies for every
    pair (within rounding), without moving any coordinates.

    Shapes:
        returns (Ca, Cb) float64, Angstrom.

    Raises:
        ValueError: a molecule has no conformers or the graphs differ.
    """
    heavy_a, heavy_b = heavy_atom_mol(mol_a), heavy_atom_mol(mol_b)
    xyz_a = _coords(heavy_a, conf_ids_a)
    xyz_b = _coords(heavy_b, conf_ids_b)
    matches = symmetry_matches(heavy_a, heavy_b, max_matches=max_matches)
    return superposed_rmsd(xyz_a, xyz_b, matches)


def best_rms(
    probe_mol: Chem.Mol,
    ref_mol: Chem.Mol,
    probe_conf: int = -1,
    ref_conf: int = -1,
    *,
    max_matches: int = DEFAULT_MAX_MATCHES,
) -> float:
    """Heavy-atom symmetry-aware RMSD of one probe conformer to one reference conformer.

    ``GetBestRMS`` semantics on hydrogen-free copies (no reflection); coordinates are not
    moved. Conformer id -1 means the default conformer, as in RDKit.
    """
    ids_a = [probe_mol.GetConformer(int(probe_conf)).GetId()]
    ids_b = [ref_mol.GetConformer(int(ref_conf)).GetId()]
    d = rmsd_matrix(probe_mol, ref_mol, conf_ids_a=ids_a, conf_ids_b=ids_b, max_matches=max_matches)
    return float(d[0, 0])


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


def _posebusters():
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
        # PoseBusters' pattern (the same as _TERMINAL_SMARTS); bounds -> min / max per
        # element pair over all matched bonds
        groups: dict[tuple[str, ...], list[int]] = {}
        for match in work.GetSubstructMatches(_TERMINAL_SMARTS):
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
def _reference_energy(inchi: str, n_confs: int, num_threads: int) -> float:
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
    (:func:`_reference_energy`), passing when the ratio is <= ``threshold_energy_ratio``.
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
    mean = _reference_energy(
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
    _posebusters()
    from posebusters.posebusters import module_dict

    ids = [c.GetId() for c in mol.GetConformers()] if conf_ids is None else list(conf_ids)
    if not ids:
        return []
    cfg = _mol_config()
    xyz = _coords(mol, ids)
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
