"""Heavy-atom coordinates -> RDKit conformers, planar groups, hydrogens.

The model places heavy atoms; :func:`heavy_with_confs` turns its coordinates into
conformers of the heavy-atom molecule (snapping acyclic amides and esters planar),
hydrogens are then added on that frame (``Chem.AddHs(addCoords=True)``) and
:func:`hydrogen_map` says which of those hydrogens stands for which of the caller's.
"""

from __future__ import annotations

import numpy as np
from rdkit import Chem
from rdkit.Chem import rdMolTransforms

from rdconfvae.errors import UnsupportedMoleculeError

__all__ = ["heavy_with_confs", "hydrogen_map", "PLANAR_GROUP"]

#: Acyclic amide, ester, carbamate and urea bonds: O=C-X-R, X = N or O, R heavy.
PLANAR_GROUP = Chem.MolFromSmarts("[OX1]=[CX3]-!@[NX3,OX2]-[!#1]")


def heavy_with_confs(heavy: Chem.Mol, coords: np.ndarray) -> Chem.Mol:
    """The heavy-atom molecule with one conformer per coordinate set (K, N, 3), Angstrom.

    Acyclic amide/ester groups are snapped to the nearest planar form (O=C-X-R
    dihedral 0 or 180 degrees) by a rigid rotation about the C-X bond, which keeps
    every bond length and angle: crystal structures show them planar, and the
    distance solver can leave them twisted where the predicted distances disagree.
    """
    work = Chem.Mol(heavy)
    work.RemoveAllConformers()
    groups = []
    for o, c, x, r in {m[:3]: m for m in heavy.GetSubstructMatches(PLANAR_GROUP)}.values():
        others = [n.GetIdx() for n in heavy.GetAtomWithIdx(c).GetNeighbors()]
        others = [i for i in others if i not in (o, x)]
        groups.append((o, c, x, r, others[0] if others else -1))
    for k, xyz in enumerate(coords):
        conf = Chem.Conformer(heavy.GetNumAtoms())
        conf.Set3D(True)
        conf.SetPositions(xyz)
        conf.SetId(k)
        work.AddConformer(conf, assignId=False)
        owned = work.GetConformer(k)  # dihedral setters need the molecule's graph
        for o, c, x, r, a in groups:
            # rotate about C-X so that O and the other C substituent A sit, on average,
            # in the plane (O cis or trans to R, A opposite): pyramidal noise is shared
            phi_o = rdMolTransforms.GetDihedralDeg(owned, o, c, x, r)
            target_o = 0.0 if abs(phi_o) < 90 else 180.0
            delta = _wrap(target_o - phi_o)
            if a >= 0:
                phi_a = rdMolTransforms.GetDihedralDeg(owned, a, c, x, r)
                delta = 0.5 * (delta + _wrap(target_o + 180.0 - phi_a))
            rdMolTransforms.SetDihedralDeg(owned, o, c, x, r, phi_o + delta)
    return work


def _wrap(angle: float) -> float:
    """Angle in degrees mapped to [-180, 180)."""
    return (angle + 180.0) % 360.0 - 180.0


def hydrogen_map(mol: Chem.Mol, heavy_idx: list[int], full: Chem.Mol) -> dict[int, int]:
    """Caller atom index -> atom index in ``full`` (heavy atoms first, then AddHs' H).

    ``heavy_idx`` is the caller's index of each heavy atom (see
    :func:`rdconfvae.model.featurize.heavy_atom_mol`).
    """
    pos_of = {orig: k for k, orig in enumerate(heavy_idx)}
    mapping = dict(pos_of)
    free: dict[int, list[int]] = {}
    for atom in full.GetAtoms():
        if atom.GetIdx() >= len(heavy_idx):
            (nbr,) = (a.GetIdx() for a in atom.GetNeighbors())
            free.setdefault(nbr, []).append(atom.GetIdx())
    for atom in mol.GetAtoms():
        if atom.GetAtomicNum() != 1:
            continue
        heavy_nbrs = [a.GetIdx() for a in atom.GetNeighbors() if a.GetAtomicNum() != 1]
        if len(heavy_nbrs) != 1 or not free.get(pos_of[heavy_nbrs[0]]):
            raise UnsupportedMoleculeError(
                f"atom {atom.GetIdx()} (H): hydrogen not bonded to exactly one heavy atom"
            )
        mapping[atom.GetIdx()] = free[pos_of[heavy_nbrs[0]]].pop(0)
    return mapping
