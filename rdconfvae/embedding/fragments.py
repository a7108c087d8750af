"""Fragments of a heavy-atom molecule (salts, mixtures): featurized one by one, each
sampled on its own, then laid side by side.

Each fragment with two or more heavy atoms is featurized for the model; a fragment
of one heavy atom (a counter-ion of :data:`ION_ELEMENTS`, or an atom of the model's
vocabulary such as the O of water) is placed without it; any other single-atom
fragment is out of the model's domain. After
sampling, fragments are centred and placed along x with :data:`FRAGMENT_GAP`
Angstrom between their enclosing spheres.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rdkit import Chem

from rdconfvae.errors import UnsupportedMoleculeError
from rdconfvae.model import featurize as fz

__all__ = ["Fragment", "ION_ELEMENTS", "FRAGMENT_GAP", "split_fragments", "layout_fragments"]

#: Gap between fragments laid side by side, Angstrom.
FRAGMENT_GAP = 4.0
#: Elements accepted as single-atom fragments (counter-ions of salts).
ION_ELEMENTS = frozenset(
    {"Li", "Na", "K", "Rb", "Cs", "Mg", "Ca", "Sr", "Ba", "F", "Cl", "Br", "I"}
)


@dataclass
class Fragment:
    """One connected piece of the heavy-atom graph (indices into the heavy molecule)."""

    atoms: tuple[int, ...]
    mol: Chem.Mol
    graph: fz.MolGraph | None  # None for a single atom


def split_fragments(heavy: Chem.Mol) -> list[Fragment]:
    """Featurize every fragment; raises UnsupportedMoleculeError before any work is done.

    A fragment of one heavy atom needs no model: an atom of the model's vocabulary (water,
    methane, ammonium; :func:`rdconfvae.model.featurize.check_atom_supported`) or a counter-ion
    of :data:`ION_ELEMENTS` is placed at the origin, its hydrogens are added around it.
    """
    atom_sets = Chem.GetMolFrags(heavy, asMols=False, sanitizeFrags=False)
    if len(atom_sets) == 1 and heavy.GetNumAtoms() > 1:
        return [Fragment(atom_sets[0], heavy, fz.featurize(heavy))]
    mols = Chem.GetMolFrags(heavy, asMols=True, sanitizeFrags=False)
    frags = []
    for atoms, frag in zip(atom_sets, mols, strict=True):
        if frag.GetNumAtoms() == 1:
            _check_single_atom(frag.GetAtomWithIdx(0), atoms[0])
            frags.append(Fragment(atoms, frag, None))
            continue
        frag.UpdatePropertyCache(strict=False)
        Chem.FastFindRings(frag)
        try:
            graph = fz.featurize(frag)
        except UnsupportedMoleculeError as exc:
            raise UnsupportedMoleculeError(f"fragment of heavy atoms {list(atoms)}: {exc}") from exc
        frags.append(Fragment(atoms, frag, graph))
    return frags


def _check_single_atom(atom: Chem.Atom, index: int) -> None:
    """A one-heavy-atom fragment is a counter-ion or an atom of the model's vocabulary."""
    if atom.GetSymbol() in ION_ELEMENTS and atom.GetSymbol() not in fz.ELEMENTS:
        return
    if atom.GetSymbol() in fz.ELEMENTS:
        try:
            fz.check_atom_supported(atom)
        except UnsupportedMoleculeError as exc:
            raise UnsupportedMoleculeError(f"single-atom fragment, {exc}") from exc
        return
    raise UnsupportedMoleculeError(
        f"atom {index} ({atom.GetSymbol()}): single-atom fragment of an element that is "
        f"neither in the model's vocabulary nor a supported counter-ion "
        f"({' '.join(sorted(ION_ELEMENTS))})"
    )


def layout_fragments(
    heavy: Chem.Mol, frags: list[Fragment], per_frag: list[np.ndarray], count: int
) -> np.ndarray:
    """Combine fragment conformers into (count, N_heavy, 3), Angstrom.

    Each fragment is centred, then placed along x so that the spheres enclosing
    consecutive fragments are :data:`FRAGMENT_GAP` apart.
    """
    out = np.zeros((count, heavy.GetNumAtoms(), 3))
    cursor = None  # (count,) x of the right edge of the fragments placed so far
    for frag, xyz in zip(frags, per_frag, strict=True):
        xyz = xyz[:count] - xyz[:count].mean(axis=1, keepdims=True)
        radius = np.linalg.norm(xyz, axis=-1).max(axis=1)
        centre = np.zeros(count) if cursor is None else cursor + FRAGMENT_GAP + radius
        xyz[..., 0] += centre[:, None]
        out[:, list(frag.atoms)] = xyz
        cursor = centre + radius
    return out
