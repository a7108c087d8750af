"""Stereo bookkeeping on the RDKit side.

Distances are mirror-blind, so the coordinates a distance solver returns may be
the wrong enantiomer or, where the distances are imprecise, a wrong
diastereomer. The embed module repairs this with signed volumes (see
:func:`rdconfvae.geometry.solver.stereo_violations`): this module fixes the sign
convention and gives an independent check against RDKit's own perception.

Sign convention (verified against RDKit-embedded conformers in
tests/test_stereo.py): for a centre c with neighbours n1, n2, n3 taken in bond
order, the volume (n1 - c) . ((n2 - c) x (n3 - c)) is positive for
``CHI_TETRAHEDRAL_CCW`` and negative for ``CHI_TETRAHEDRAL_CW``, with three or
four neighbours alike. A centre with four heavy neighbours is seen from their centroid
(:func:`rdconfvae.geometry.solver.signed_volumes`): its hand is their arrangement, wherever the
centre itself sits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
from rdkit import Chem

from rdconfvae.geometry import solver

if TYPE_CHECKING:  # pragma: no cover
    from rdconfvae.model.featurize import MolGraph

__all__ = [
    "chiral_reference_sign",
    "stereo_signature",
    "conformer_stereo_matches",
    "declared_stereo_broken",
]


def chiral_reference_sign(tag: Chem.ChiralType, degree: int) -> float:
    """Required sign of the signed volume for an RDKit tetrahedral tag."""
    del degree  # same convention for 3 and 4 explicit neighbours
    if tag == Chem.ChiralType.CHI_TETRAHEDRAL_CCW:
        return 1.0
    if tag == Chem.ChiralType.CHI_TETRAHEDRAL_CW:
        return -1.0
    raise ValueError(f"not a tetrahedral chiral tag: {tag}")


def stereo_signature(mol: Chem.Mol) -> tuple[dict[int, str], dict[int, str]]:
    """CIP labels of atoms (R/S) and double bonds (E/Z) as perceived from the graph."""
    work = Chem.Mol(mol)
    Chem.AssignStereochemistry(work, cleanIt=True, force=True)
    atoms = {a.GetIdx(): a.GetProp("_CIPCode") for a in work.GetAtoms() if a.HasProp("_CIPCode")}
    bonds = {
        b.GetIdx(): str(b.GetStereo())
        for b in work.GetBonds()
        if b.GetStereo() in (Chem.BondStereo.STEREOE, Chem.BondStereo.STEREOZ)
    }
    return atoms, bonds


def conformer_stereo_matches(mol: Chem.Mol, conf_id: int = -1) -> bool:
    """True when the 3D stereo of conformer ``conf_id`` equals the declared stereo of ``mol``.

    Independent of the signed-volume code: RDKit re-perceives R/S and E/Z from
    the coordinates and the labels are compared with those of the graph.
    Unspecified centres are ignored.
    """
    declared_atoms, declared_bonds = stereo_signature(mol)
    work = Chem.Mol(mol)
    Chem.AssignStereochemistryFrom3D(work, confId=conf_id)
    got_atoms, got_bonds = stereo_signature(work)
    if any(got_atoms.get(i) != lab for i, lab in declared_atoms.items()):
        return False
    return all(got_bonds.get(i) == lab for i, lab in declared_bonds.items())


class FragmentGraph(Protocol):
    """A connected piece of the molecule (:class:`rdconfvae.embedding.fragments.Fragment`)."""

    atoms: tuple[int, ...]  # indices into the heavy molecule
    graph: MolGraph | None  # None for a single atom


def declared_stereo_broken(frags: Sequence[FragmentGraph], heavy_xyz: np.ndarray) -> np.ndarray:
    """(K,) True where a conformer violates a declared centre or E/Z bond of any fragment.

    Signed volumes and cis/trans cosines (:func:`rdconfvae.geometry.solver.stereo_violations`)
    of the featurized graphs; ``heavy_xyz`` (K, N_heavy, 3) in the heavy molecule's order.
    """
    bad = np.zeros(len(heavy_xyz), dtype=bool)
    for frag in frags:
        g = frag.graph
        if g is None or (g.chiral_idx.shape[0] == 0 and g.dbl_idx.shape[0] == 0):
            continue
        x = torch.tensor(heavy_xyz[:, list(frag.atoms)], dtype=torch.float32)
        wc, wd = solver.stereo_violations(x, g.chiral_idx, g.chiral_sign, g.dbl_idx, g.dbl_cis)
        bad |= ((wc + wd) > 0).numpy()
    return bad
