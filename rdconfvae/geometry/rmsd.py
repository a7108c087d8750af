"""Symmetry-aware heavy-atom RMSD (pure RDKit + numpy): the core shared by inference
(pruning) and evaluation (:mod:`rdconfvae.evaluation.metrics`).

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

Units: Angstrom.

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

import logging
from collections.abc import Sequence

import numpy as np
from rdkit import Chem

__all__ = [
    "DEFAULT_MAX_MATCHES",
    "heavy_atom_mol",
    "symmetry_matches",
    "superposed_rmsd",
    "rmsd_matrix",
    "best_rms",
    "conformer_coords",
    "TERMINAL_GROUP_SMARTS",
]

log = logging.getLogger(__name__)

#: Cap on the number of symmetry matches enumerated per molecule pair.
DEFAULT_MAX_MATCHES = 10_000

# Same pattern as RDKit's MolAlign::details::symmetrizeTerminalAtoms: a terminal O/N bound to
# an atom that also carries another terminal O/N by the other bond order (C(=O)[O-], N(=O)=O).
TERMINAL_GROUP_SMARTS = Chem.MolFromSmarts(
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
    hits = mol.GetSubstructMatches(TERMINAL_GROUP_SMARTS, uniquify=False)
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


def conformer_coords(mol: Chem.Mol, conf_ids: Sequence[int] | None) -> np.ndarray:
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
    xyz_a = conformer_coords(heavy_a, conf_ids_a)
    xyz_b = conformer_coords(heavy_b, conf_ids_b)
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
