"""The one place that writes conformers onto the caller's molecule (after success only)."""

from __future__ import annotations

import numpy as np
from rdkit import Chem

from rdconfvae.forcefield.mmff import CONVERGED_PROP, ENERGY_PROP

__all__ = ["attach", "GENERATOR_PROP"]

#: Conformer property naming the generator that made it: "rdconfvae" or "etkdg".
GENERATOR_PROP = "rdconfvae_generator"


def attach(
    mol: Chem.Mol,
    coords: list[np.ndarray],
    energies: list[float | None],
    converged: list[bool | None],
    generator: str,
    clear: bool,
) -> list[int]:
    """Add one conformer per coordinate set (N, 3) to ``mol``; return the new ids.

    ``clear`` removes the existing conformers first (ids from 0); otherwise the ids
    continue after the largest existing id. Energies (kcal/mol) and convergence go to
    the conformer properties ``MMFF_ENERGY`` / ``MMFF_CONVERGED`` where given.
    """
    if clear:
        mol.RemoveAllConformers()
    start = max((c.GetId() for c in mol.GetConformers()), default=-1) + 1
    ids = []
    for k, xyz in enumerate(coords):
        conf = Chem.Conformer(mol.GetNumAtoms())
        conf.Set3D(True)
        conf.SetPositions(np.ascontiguousarray(xyz, dtype=float))
        conf.SetId(start + k)
        conf.SetProp(GENERATOR_PROP, generator)
        energy = energies[k]
        if energy is not None:
            conf.SetDoubleProp(ENERGY_PROP, float(energy))
            conf.SetBoolProp(CONVERGED_PROP, bool(converged[k]))
        mol.AddConformer(conf, assignId=False)
        ids.append(start + k)
    return ids
