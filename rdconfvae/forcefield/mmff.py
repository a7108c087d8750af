"""MMFF94s refinement of conformers already attached to a molecule.

Units: energies in kcal/mol, coordinates in Angstrom.

The dielectric model matters for protein-bound poses: measured on Platinum
(see docs/method.md), a distance-dependent dielectric (eps = 4 r) keeps
poses extended, while gas-phase minimisation (constant eps = 1) collapses them
onto internal hydrogen bonds. ``dielectric="distance"`` is therefore the default.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
from rdkit import Chem
from rdkit.Chem import rdForceFieldHelpers
from rdkit.ForceField import rdForceField

from rdconfvae.deadline import Deadline

if TYPE_CHECKING:
    from rdconfvae.forcefield import torch_mmff

__all__ = [
    "MinimizeResult",
    "Dielectric",
    "mmff_minimize",
    "mmff_polish",
    "mmff_polish_torch",
    "mmff_terms",
    "mmff_can_type",
    "POLISH_NONBONDED_CUTOFF",
    "ENERGY_PROP",
    "CONVERGED_PROP",
]

log = logging.getLogger(__name__)

Dielectric = Literal["distance", "constant"]
ENERGY_PROP = "MMFF_ENERGY"  # conformer property, kcal/mol
CONVERGED_PROP = "MMFF_CONVERGED"  # conformer property, bool

#: Iteration cap per conformer. RDKit's default of 200 leaves most drug-sized
#: molecules unconverged; converged conformers stop early, so a large cap costs
#: only for the conformers that need it.
DEFAULT_MAX_ITERS = 5000
#: Conformers per thread between two checks of the time limit on RDKit's threaded
#: minimisation (a drug-like conformer takes tens of ms, a macrolide's about a second).
_THREADED_BLOCK = 2

# RDKit's codes for SetMMFFDielectricModel (not exported as named constants).
_DIEL_CONSTANT = 1
_DIEL_DISTANCE = 2


@dataclass(frozen=True)
class MinimizeResult:
    """Outcome for one conformer: final energy (kcal/mol) and convergence flag."""

    conf_id: int
    energy: float
    converged: bool


def _properties(
    mol: Chem.Mol, variant: str, dielectric: Dielectric, dielectric_constant: float
) -> rdForceField.MMFFMolProperties | None:
    """MMFF typing with the chosen dielectric, or ``None`` when MMFF cannot type ``mol``."""
    if dielectric not in ("distance", "constant"):
        raise ValueError(f"dielectric must be 'distance' or 'constant', got {dielectric!r}")
    props = rdForceFieldHelpers.MMFFGetMoleculeProperties(mol, mmffVariant=variant)
    if props is None or not rdForceFieldHelpers.MMFFHasAllMoleculeParams(mol):
        return None
    props.SetMMFFDielectricModel(_DIEL_DISTANCE if dielectric == "distance" else _DIEL_CONSTANT)
    props.SetMMFFDielectricConstant(float(dielectric_constant))
    return props


def mmff_can_type(mol: Chem.Mol, variant: str = "MMFF94s") -> bool:
    """Whether MMFF has parameters for every atom and term of ``mol`` (explicit H needed)."""
    return _properties(mol, variant, "distance", 4.0) is not None


#: Non-bonded pairs farther apart than this (Angstrom) when the polish starts are left
#: out of it: a short polish moves atoms a fraction of an Angstrom, so only close contacts
#: matter, and the pair list is most of the cost of an MMFF step.
POLISH_NONBONDED_CUTOFF = 4.0

#: MMFF atom types with a linear centre (MMFFPROP's ``lin`` flag): their angles bend as
#: ka (1 + cos theta) and they carry no stretch-bend term.
_LINEAR_TYPES = frozenset({4, 53, 61})
#: RDKit's rule for which bonds get torsion terms (its DefaultTorsionBondSmarts).
_TORSION_BOND = Chem.MolFromSmarts("[!$(*#*)&!D1]~[!$(*#*)&!D1]")
_TORSION_HYB = (Chem.HybridizationType.SP2, Chem.HybridizationType.SP3)


def mmff_terms(
    mol: Chem.Mol,
    props: rdForceField.MMFFMolProperties,
    coords: np.ndarray,
    nonbonded_cutoff: float = POLISH_NONBONDED_CUTOFF,
) -> torch_mmff.MMFFTerms:
    """The MMFF term lists of ``mol`` with their parameters, read from RDKit once.

    The same terms as ``MMFFGetMoleculeForceField(mol, props, nonBondedThresh=cutoff)``
    builds for each conformer, without electrostatics: every bond; every angle; a
    stretch-bend per angle at a non-linear centre; three out-of-plane terms per atom with
    three neighbours; torsions about the bonds RDKit selects (no atom in a triple bond,
    no terminal atom, both ends sp2 or sp3); van der Waals between atoms of one fragment
    three or more bonds apart. The van der Waals pair list is per conformer, as RDKit's:
    the pairs closer than ``nonbonded_cutoff`` in that conformer of ``coords``
    (K, N, 3), kept as the union of pairs with a (K, P) mask.
    """
    import torch  # lazily: the rest of this module needs RDKit only

    from rdconfvae.forcefield import torch_mmff

    n = mol.GetNumAtoms()
    types = [props.GetMMFFAtomType(i) for i in range(n)]
    bonds, bond_p = [], []
    r0: dict[tuple[int, int], float] = {}
    for b in mol.GetBonds():
        i, j = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
        p = props.GetMMFFBondStretchParams(mol, i, j)
        if p is None:
            continue
        bonds.append((i, j))
        bond_p.append(p[1:])
        r0[(i, j)] = r0[(j, i)] = p[2]
    angles, angle_p, linear, stbn_p = [], [], [], []
    oops, oop_k = [], []
    for atom in mol.GetAtoms():
        j = atom.GetIdx()
        nbrs = [a.GetIdx() for a in atom.GetNeighbors()]
        is_linear = types[j] in _LINEAR_TYPES
        for a in range(len(nbrs)):
            for c in range(a + 1, len(nbrs)):
                i, k = nbrs[a], nbrs[c]
                p = props.GetMMFFAngleBendParams(mol, i, j, k)
                if p is None:
                    continue
                angles.append((i, j, k))
                angle_p.append(p[1:])
                linear.append(is_linear)
                s = None if is_linear else props.GetMMFFStretchBendParams(mol, i, j, k)
                sb = (0.0, 0.0) if s is None else (s[1], s[2])
                stbn_p.append((*sb, r0.get((i, j), 0.0), r0.get((k, j), 0.0)))
        if len(nbrs) == 3:
            koop = props.GetMMFFOopBendParams(mol, nbrs[0], j, nbrs[1], nbrs[2])
            if koop is not None:
                i, k, l_ = nbrs
                for quad in ((i, j, k, l_), (i, j, l_, k), (k, j, l_, i)):
                    oops.append(quad)
                    oop_k.append(koop)
    tors, tor_v = [], []
    for j, k in mol.GetSubstructMatches(_TORSION_BOND):
        aj, ak = mol.GetAtomWithIdx(j), mol.GetAtomWithIdx(k)
        if aj.GetHybridization() not in _TORSION_HYB or ak.GetHybridization() not in _TORSION_HYB:
            continue
        for ni in aj.GetNeighbors():
            i = ni.GetIdx()
            if i == k:
                continue
            for nl in ak.GetNeighbors():
                l_ = nl.GetIdx()
                if l_ in (j, i):
                    continue
                p = props.GetMMFFTorsionParams(mol, i, j, k, l_)
                if p is not None:
                    tors.append((i, j, k, l_))
                    tor_v.append(p[1:])
    vdw_idx, vdw_p, mask = _vdw_pairs(mol, props, types, coords, nonbonded_cutoff)

    def idx(rows: list, width: int) -> torch.Tensor:
        return torch.tensor(rows, dtype=torch.long).reshape(-1, width)

    def val(rows: list, width: int) -> torch.Tensor:
        return torch.tensor(rows, dtype=torch.float64).reshape(-1, width)

    bp, ap, sp = val(bond_p, 2), val(angle_p, 2), val(stbn_p, 4)
    rstar = torch.from_numpy(vdw_p[:, 0].copy())
    return torch_mmff.MMFFTerms(
        n_atoms=n,
        bond_idx=idx(bonds, 2),
        bond_kb=bp[:, 0],
        bond_r0=bp[:, 1],
        angle_idx=idx(angles, 3),
        angle_ka=ap[:, 0],
        angle_theta0=ap[:, 1],
        angle_linear=torch.tensor(linear, dtype=torch.bool),
        angle_sb_k=sp[:, 0:2].contiguous(),
        angle_sb_r0=sp[:, 2:4].contiguous(),
        oop_idx=idx(oops, 4),
        oop_koop=torch.tensor(oop_k, dtype=torch.float64),
        tor_idx=idx(tors, 4),
        tor_v=val(tor_v, 3),
        vdw_idx=torch.from_numpy(vdw_idx),
        vdw_rstar=rstar,
        vdw_rstar7=rstar.pow(7),
        vdw_eps=torch.from_numpy(vdw_p[:, 1].copy()),
        vdw_mask=torch.from_numpy(mask),
    )


def _vdw_pairs(
    mol: Chem.Mol,
    props: rdForceField.MMFFMolProperties,
    types: list[int],
    coords: np.ndarray,
    cutoff: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs three or more bonds apart in one fragment and closer than ``cutoff`` in at
    least one conformer: (P, 2) indices, (P, 2) R*, epsilon, and the (K, P) float mask of
    the conformers in which each pair is within the cutoff (RDKit's ``dist > thresh``
    test)."""
    topo = Chem.GetDistanceMatrix(mol)
    ii, jj = np.nonzero(np.triu((topo >= 3) & (topo < 1e7)))
    d = np.linalg.norm(coords[:, ii] - coords[:, jj], axis=-1)  # (K, P_all)
    near = d <= cutoff
    keep = near.any(0)
    ii, jj, near = ii[keep], jj[keep], near[:, keep]
    cache: dict[tuple[int, int], tuple[float, float]] = {}
    params = np.zeros((len(ii), 2))
    for p, (i, j) in enumerate(zip(ii.tolist(), jj.tolist(), strict=True)):
        key = (types[i], types[j])
        if key not in cache:
            v = props.GetMMFFVdWParams(i, j)
            cache[key] = (0.0, 0.0) if v is None else (v[2], v[3])  # no pair: eps = 0
        params[p] = cache[key]
    return np.stack([ii, jj], -1).astype(np.int64), params, near.astype(np.float64)


def mmff_polish(
    mol: Chem.Mol,
    max_iters: int,
    *,
    variant: str = "MMFF94s",
    fixed: Sequence[int] = (),
    deadline: Deadline | None = None,
) -> bool:
    """A short MMFF94s minimisation of every conformer of ``mol``, in place.

    Not a minimisation to convergence (that is :func:`mmff_minimize`): the first
    ``max_iters`` optimiser steps on the bonded terms (stretch, bend, stretch-bend,
    out-of-plane, torsion) and van der Waals between atoms closer than
    :data:`POLISH_NONBONDED_CUTOFF` at the start. That straightens bond lengths,
    angles and planar groups, settles torsions and eases close contacts at a
    fraction of the cost. Electrostatics are left out (with eps = 4r they are weak
    at the distances a polish changes). Measured on held-out CCD validation
    molecules (docs/method.md): without van der Waals the polish creates
    clashes; with all pairs it costs 25 % more for the same poses. No energy is
    stored (a partial energy is no basis for ranking). Conformers are polished one
    after the other (each with its own contact list), so the result does not
    depend on any thread count.

    Args:
        mol: molecule with explicit H and at least one conformer; changed in place.
        max_iters: optimiser iterations per conformer (> 0).
        variant: ``"MMFF94s"`` (default) or ``"MMFF94"``.
        fixed: atom indices held in place (``ff.AddFixedPoint``; a coordMap's atoms).
        deadline: checked before each conformer (:class:`EmbeddingTimeoutError`).

    Returns:
        ``False`` when MMFF cannot type the molecule (coordinates left untouched).
    """
    if max_iters <= 0:
        raise ValueError(f"max_iters must be positive, got {max_iters}")
    props = _properties(mol, variant, "distance", 4.0)
    if props is None:
        return False
    props.SetMMFFEleTerm(False)
    for conf in mol.GetConformers():
        if deadline is not None:
            deadline.check("MMFF polish")
        ff = rdForceFieldHelpers.MMFFGetMoleculeForceField(
            mol, props, nonBondedThresh=POLISH_NONBONDED_CUTOFF, confId=conf.GetId()
        )
        for i in fixed:
            ff.AddFixedPoint(int(i))
        ff.Minimize(maxIts=int(max_iters))
    return True


def mmff_polish_torch(mol: Chem.Mol, max_iters: int, *, variant: str = "MMFF94s") -> bool:
    """:func:`mmff_polish` with the force field and optimiser in torch, all conformers at once.

    The same energy term for term (:mod:`rdconfvae.forcefield.torch_mmff`, equal to RDKit's to
    1e-12 kcal/mol), each conformer with its own van der Waals contact list, minimised by
    ``max_iters`` batched L-BFGS steps (:func:`rdconfvae.forcefield.torch_mmff.minimize`, float32)
    instead of RDKit's BFGS one conformer at a time. Not the default: measured on CPU it
    costs 1.2-1.35x RDKit's time for the same final energies (benchmarks/results/
    speed-profile). Same contract as :func:`mmff_polish`.
    """
    import torch

    from rdconfvae.forcefield import torch_mmff

    if max_iters <= 0:
        raise ValueError(f"max_iters must be positive, got {max_iters}")
    props = _properties(mol, variant, "distance", 4.0)
    if props is None:
        return False
    confs = list(mol.GetConformers())
    if not confs:
        return True
    xyz = np.stack([c.GetPositions() for c in confs])
    terms = mmff_terms(mol, props, xyz, POLISH_NONBONDED_CUTOFF)
    out = torch_mmff.minimize(torch.from_numpy(xyz).float(), terms, int(max_iters))
    for conf, x in zip(confs, out.double().numpy(), strict=True):
        conf.SetPositions(x)
    return True


def _with_conformers(mol: Chem.Mol, conf_ids: Sequence[int]) -> Chem.Mol:
    """A copy of ``mol`` holding only the conformers ``conf_ids`` (same ids)."""
    sub = Chem.Mol(mol)
    sub.RemoveAllConformers()
    for cid in conf_ids:
        sub.AddConformer(Chem.Conformer(mol.GetConformer(cid)), assignId=False)
    return sub


def mmff_minimize(
    mol: Chem.Mol,
    conf_ids: list[int] | None = None,
    *,
    dielectric: Dielectric = "distance",
    dielectric_constant: float = 4.0,
    variant: str = "MMFF94s",
    max_iters: int = DEFAULT_MAX_ITERS,
    num_threads: int = 1,
    fixed: Sequence[int] = (),
    deadline: Deadline | None = None,
) -> list[MinimizeResult] | None:
    """Minimise conformers of ``mol`` in place with MMFF and store their energies.

    ``mol`` must carry explicit hydrogens (MMFF types need them). Each
    minimised conformer gets the double property ``MMFF_ENERGY`` (kcal/mol) and
    the bool property ``MMFF_CONVERGED``.

    Args:
        mol: molecule with explicit H and at least one conformer; changed in place.
        conf_ids: conformers to minimise (default: all).
        dielectric: ``"distance"`` (eps = c * r, the default) or ``"constant"`` (eps = c).
        dielectric_constant: c above; 4.0 with the distance model, 1.0 for gas phase.
        variant: ``"MMFF94s"`` (default) or ``"MMFF94"``.
        max_iters: iteration cap per conformer.
        num_threads: RDKit worker threads (0 = all cores).
        fixed: atom indices held in place (``ff.AddFixedPoint``; a coordMap's atoms);
            conformers are then minimised one after the other.
        deadline: checked before each conformer, or on RDKit's threaded path before each
            block of :data:`_THREADED_BLOCK` conformers per thread
            (:class:`EmbeddingTimeoutError`).

    Returns:
        One :class:`MinimizeResult` per conformer, or ``None`` when MMFF cannot
        type the molecule (coordinates are then left untouched).
    """
    if mol.GetNumConformers() == 0:
        return []
    ids = [c.GetId() for c in mol.GetConformers()] if conf_ids is None else list(conf_ids)
    props = _properties(mol, variant, dielectric, dielectric_constant)
    if props is None:
        return None

    results: list[MinimizeResult] = []
    if conf_ids is None and num_threads != 1 and not fixed:
        # one force field (its terms from the first conformer) for every conformer, as RDKit
        # does; with a time limit the conformers go in blocks of a few per thread, the limit
        # checked between blocks (each conformer is minimised on its own, so the result
        # does not depend on the blocks); without one, a single call and no copies
        ff = rdForceFieldHelpers.MMFFGetMoleculeForceField(mol, props, confId=ids[0])
        limited = deadline is not None and deadline.remaining() is not None
        threads = num_threads if num_threads > 0 else (os.cpu_count() or 1)
        block = _THREADED_BLOCK * max(threads, 1) if limited else len(ids)
        for start in range(0, len(ids), block):
            chunk = ids[start : start + block]
            if deadline is not None:
                deadline.check("MMFF")
            sub = mol if len(chunk) == len(ids) else _with_conformers(mol, chunk)
            out = rdForceFieldHelpers.OptimizeMoleculeConfs(
                sub, ff, numThreads=num_threads, maxIters=max_iters
            )
            for cid, (not_conv, energy) in zip(chunk, out, strict=True):
                results.append(MinimizeResult(cid, float(energy), not_conv == 0))
            if sub is not mol:
                for cid, conf in zip(chunk, sub.GetConformers(), strict=True):
                    mol.GetConformer(cid).SetPositions(conf.GetPositions())
    else:
        for cid in ids:
            if deadline is not None:
                deadline.check("MMFF")
            ff = rdForceFieldHelpers.MMFFGetMoleculeForceField(mol, props, confId=cid)
            for i in fixed:
                ff.AddFixedPoint(int(i))
            not_conv = ff.Minimize(maxIts=max_iters)
            results.append(MinimizeResult(cid, float(ff.CalcEnergy()), not_conv == 0))
    for r in results:
        conf = mol.GetConformer(r.conf_id)
        conf.SetDoubleProp(ENERGY_PROP, r.energy)
        conf.SetBoolProp(CONVERGED_PROP, r.converged)
    n_bad = sum(not r.converged for r in results)
    if n_bad:
        log.warning("MMFF did not converge for %d of %d conformers", n_bad, len(results))
    return results
