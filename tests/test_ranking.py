"""Returned conformers come lowest polished MMFF94s energy first (issue 18, item 7).

The energies are recomputed here with RDKit's MMFF94s set up independently of
``rdconfvae.embedding.ranking`` (eps = 4r, the package's MMFF default).
"""

from __future__ import annotations

import numpy as np
from rdkit import Chem
from rdkit.Chem import rdForceFieldHelpers

import rdconfvae
from rdconfvae.embedding import engine

NILOTINIB = "Cc1cn(-c2cc(NC(=O)c3ccc(C)c(Nc4nccc(-c5cccnc5)n4)c3)cc(C(F)(F)F)c2)cn1"


def _energies(mol: Chem.Mol) -> np.ndarray:
    mol = Chem.AddHs(mol, addCoords=True)
    props = rdForceFieldHelpers.MMFFGetMoleculeProperties(mol, mmffVariant="MMFF94s")
    props.SetMMFFDielectricModel(2)  # distance-dependent
    props.SetMMFFDielectricConstant(4.0)
    out = []
    for conf in mol.GetConformers():
        ff = rdForceFieldHelpers.MMFFGetMoleculeForceField(mol, props, confId=conf.GetId())
        out.append(ff.CalcEnergy())
    return np.array(out)


def test_conformers_come_lowest_energy_first():
    mol = Chem.AddHs(Chem.MolFromSmiles(NILOTINIB))
    ids = rdconfvae.embed(mol, n=12, seed=3)
    assert ids == list(range(12))
    e = _energies(mol)
    assert np.all(np.diff(e) >= -1e-6), e


def test_order_changes_no_coordinates(monkeypatch):
    mol = Chem.AddHs(Chem.MolFromSmiles(NILOTINIB))
    rdconfvae.embed(mol, n=8, seed=5)
    ranked = np.stack([c.GetPositions() for c in mol.GetConformers()])
    monkeypatch.setattr(engine, "batch_order", lambda job, batch: np.arange(len(batch.all_xyz)))
    rdconfvae.embed(mol, n=8, seed=5)
    plain = np.stack([c.GetPositions() for c in mol.GetConformers()])
    key = lambda xyz: sorted(map(tuple, xyz.reshape(len(xyz), -1).round(8)))  # noqa: E731
    assert key(ranked) == key(plain)
    assert not np.array_equal(ranked, plain)  # 8 random samples are not already sorted


def test_heavy_atom_input_is_ordered_too():
    mol = Chem.MolFromSmiles(NILOTINIB)
    rdconfvae.embed(mol, n=8, seed=2)
    assert mol.GetNumAtoms() == 39  # no hydrogen added to the caller's molecule
    e = _energies(mol)  # hydrogens placed on the returned heavy atoms, as the ranking does
    assert np.all(np.diff(e) >= -1e-6), e
