"""Order of the returned conformers: lowest MMFF94s energy of the polished conformer first.

Callers that keep only the first conformer(s) (``EmbedMolecule``, small ``n``) get the most
plausible ones. Measured on held-out CCD validation molecules before any benchmark was
consulted (``benchmarks/diagnostics/sample_ordering.md``): ranking by the prior's
likelihood (``|eps|^2``) or by the solver's stress does not make the first conformer
measurably closer to experiment; ranking by this energy does. The set of conformers and
their coordinates do not change, only their order.

Energy: MMFF94s with the distance-dependent dielectric eps = 4r (the package's MMFF
default), every term and pair, kcal/mol; one force field per molecule, evaluated at each
conformer's coordinates.
"""

from __future__ import annotations

import numpy as np
from rdkit import Chem
from rdkit.Chem import rdForceFieldHelpers

__all__ = ["mmff_energies", "energy_order", "batch_order"]

_DIEL_DISTANCE = 2  # RDKit's code for SetMMFFDielectricModel(distance)


def mmff_energies(mol: Chem.Mol, xyz: np.ndarray) -> np.ndarray | None:
    """MMFF94s energies (eps = 4r, kcal/mol) of ``mol`` (explicit H) at each coordinate set,
    or None when MMFF cannot type it. Shapes: xyz (K, N, 3) in ``mol``'s atom order; (K,)."""
    props = rdForceFieldHelpers.MMFFGetMoleculeProperties(mol, mmffVariant="MMFF94s")
    if props is None or not rdForceFieldHelpers.MMFFHasAllMoleculeParams(mol):
        return None
    props.SetMMFFDielectricModel(_DIEL_DISTANCE)
    props.SetMMFFDielectricConstant(4.0)
    work = Chem.Mol(mol)
    work.RemoveAllConformers()
    conf = Chem.Conformer(work.GetNumAtoms())
    conf.SetPositions(np.ascontiguousarray(xyz[0], dtype=float))
    work.AddConformer(conf, assignId=True)
    ff = rdForceFieldHelpers.MMFFGetMoleculeForceField(work, props)
    return np.array([ff.CalcEnergy(np.asarray(x, dtype=float).ravel().tolist()) for x in xyz])


def energy_order(mol: Chem.Mol, xyz: np.ndarray) -> np.ndarray:
    """Indices of the conformers, lowest energy first (stable; the given order where MMFF
    cannot type ``mol``). Shapes: xyz (K, N, 3); returns (K,) int."""
    energies = mmff_energies(mol, xyz)
    if energies is None:
        return np.arange(len(xyz))
    return np.argsort(np.nan_to_num(energies, nan=np.inf), kind="stable")


def batch_order(job, batch) -> np.ndarray:
    """:func:`energy_order` of a batch of :class:`rdconfvae.embedding.engine._Job` (hydrogens as
    returned where the caller's molecule has them, else placed on the heavy atoms)."""
    if job.has_h:
        return energy_order(job.work, batch.all_xyz)
    heavy = Chem.Mol(job.heavy)  # the returned heavy atoms as they are (no re-snapping)
    heavy.RemoveAllConformers()
    for xyz in batch.heavy_xyz:
        conf = Chem.Conformer(heavy.GetNumAtoms())
        conf.SetPositions(np.ascontiguousarray(xyz, dtype=float))
        heavy.AddConformer(conf, assignId=True)
    full = Chem.AddHs(heavy, addCoords=True)
    return energy_order(full, np.stack([c.GetPositions() for c in full.GetConformers()]))
