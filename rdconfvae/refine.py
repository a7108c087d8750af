"""MMFF94s refinement of conformers already attached to a molecule.

Units: energies in kcal/mol, coordinates in Angstrom.

The dielectric model matters for protein-bound poses: measured on Platinum
(see docs/method.md), a distance-dependent dielectric (eps = 4 r) keeps
poses extended, while gas-phase minimisation (constant eps = 1) collapses them
onto internal hydrogen bonds. ``dielectric="distance"`` is therefore the default.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from rdkit import Chem
from rdkit.Chem import rdForceFieldHelpers
from rdkit.ForceField import rdForceField

__all__ = [
    "MinimizeResult",
    "Dielectric",
    "mmff_minimize",
    "mmff_polish",
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


def mmff_polish(mol: Chem.Mol, max_iters: int, *, variant: str = "MMFF94s") -> bool:
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
        ff = rdForceFieldHelpers.MMFFGetMoleculeForceField(
            mol, props, nonBondedThresh=POLISH_NONBONDED_CUTOFF, confId=conf.GetId()
        )
        ff.Minimize(maxIts=int(max_iters))
    return True


def mmff_minimize(
    mol: Chem.Mol,
    conf_ids: list[int] | None = None,
    *,
    dielectric: Dielectric = "distance",
    dielectric_constant: float = 4.0,
    variant: str = "MMFF94s",
    max_iters: int = DEFAULT_MAX_ITERS,
    num_threads: int = 1,
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
    if conf_ids is None and num_threads != 1:
        ff = rdForceFieldHelpers.MMFFGetMoleculeForceField(mol, props, confId=ids[0])
        out = rdForceFieldHelpers.OptimizeMoleculeConfs(
            mol, ff, numThreads=num_threads, maxIters=max_iters
        )
        for cid, (not_conv, energy) in zip(ids, out, strict=True):
            results.append(MinimizeResult(cid, float(energy), not_conv == 0))
    else:
        for cid in ids:
            ff = rdForceFieldHelpers.MMFFGetMoleculeForceField(mol, props, confId=cid)
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
