"""MMFF94s refinement of conformers already attached to a molecule.

Units: energies in kcal/mol, coordinates in Angstrom.

The dielectric model matters for protein-bound poses: measured on Platinum
(see README, "Refinement"), a distance-dependent dielectric (eps = 4 r) keeps
poses extended, while gas-phase minimisation (constant eps = 1) collapses them
onto internal hydrogen bonds. ``dielectric="distance"`` is therefore the default.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from rdkit import Chem
from rdkit.Chem import rdForceFieldHelpers

__all__ = ["MinimizeResult", "Dielectric", "mmff_minimize", "ENERGY_PROP", "CONVERGED_PROP"]

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
    if dielectric not in ("distance", "constant"):
        raise ValueError(f"dielectric must be 'distance' or 'constant', got {dielectric!r}")
    if mol.GetNumConformers() == 0:
        return []
    ids = [c.GetId() for c in mol.GetConformers()] if conf_ids is None else list(conf_ids)
    props = rdForceFieldHelpers.MMFFGetMoleculeProperties(mol, mmffVariant=variant)
    if props is None or not rdForceFieldHelpers.MMFFHasAllMoleculeParams(mol):
        return None
    if dielectric == "distance":
        props.SetMMFFDielectricModel(_DIEL_DISTANCE)
    else:
        props.SetMMFFDielectricModel(_DIEL_CONSTANT)
    props.SetMMFFDielectricConstant(float(dielectric_constant))

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
