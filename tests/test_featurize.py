"""Featurizer: vocabulary, sizes, stereo encodings, clear errors."""

from __future__ import annotations

import pytest
import torch
from rdkit import Chem

from rdconfvae.errors import InvalidInputError, MoleculeTooLargeError, UnsupportedMoleculeError
from rdconfvae.model import featurize as fz


def _graph(smiles: str) -> fz.MolGraph:
    return fz.featurize(Chem.MolFromSmiles(smiles))


def test_sizes_follow_the_vocabulary():
    g = _graph("CC(=O)Nc1ccc(O)cc1")
    n = 11
    assert g.atom_feat.shape == (n, fz.ATOM_DIM)
    assert g.pair_feat.shape == (n * (n - 1) // 2, fz.PAIR_DIM)
    assert torch.all(g.pair_i < g.pair_j)
    # every pair has exactly one topological-distance bin set
    assert torch.all(g.pair_feat[:, : fz.MAX_PATH + 1].sum(-1) == 1)
    # one element bit per atom
    assert torch.all(g.atom_feat[:, : len(fz.ELEMENTS)].sum(-1) == 1)


def test_cis_trans_pairs_from_declared_double_bond_stereo():
    e = _graph("C/C=C/C")  # E-2-butene: the methyls (0, 3) are trans
    z = _graph("C/C=C\\C")
    col = fz.PAIR_DIM - 2  # cis, trans
    row = 2  # pair (0, 3) of 4 atoms: (0,1) (0,2) (0,3)
    assert e.pair_feat[row, col + 1] == 1 and e.pair_feat[row, col] == 0
    assert z.pair_feat[row, col] == 1 and z.pair_feat[row, col + 1] == 0
    assert e.dbl_idx.shape == (1, 4) and float(e.dbl_cis[0]) == -1.0
    assert float(z.dbl_cis[0]) == 1.0


def test_cis_trans_reading_ignores_and_keeps_the_global_depiction_setting():
    from rdkit.Chem import rdDepictor

    before = rdDepictor.GetPreferCoordGen()
    try:
        for prefer in (True, False):
            rdDepictor.SetPreferCoordGen(prefer)
            g = _graph("OC(=O)/C=C/c1ccccc1")  # trans-cinnamic acid
            assert rdDepictor.GetPreferCoordGen() is prefer
            assert g.dbl_cis.tolist() == [-1.0]  # carboxyl C and ring C are trans
    finally:
        rdDepictor.SetPreferCoordGen(before)


def test_chiral_centres_listed_with_their_sign():
    l_ala = _graph("N[C@@H](C)C(=O)O")
    d_ala = _graph("N[C@H](C)C(=O)O")
    assert l_ala.chiral_idx.shape == (1, 5)
    assert float(l_ala.chiral_sign[0]) == -float(d_ala.chiral_sign[0])
    assert _graph("NC(C)C(=O)O").chiral_idx.shape == (0, 5)


@pytest.mark.parametrize(
    ("smiles", "fault"),
    [
        ("CC[Sn](C)(C)C", "Sn"),
        ("C[Si](C)(C)C", "Si"),
        ("OB(O)c1ccccc1", "B"),
        ("C[Se]C", "Se"),
        ("[Fe]", "heavy atom"),
        ("C[CH2]", "radical"),
    ],
)
def test_out_of_vocabulary_names_the_fault(smiles, fault):
    with pytest.raises(UnsupportedMoleculeError, match=fault):
        _graph(smiles)


def test_size_limit_is_named():
    with pytest.raises(MoleculeTooLargeError, match=str(fz.MAX_HEAVY_ATOMS)):
        _graph("C" * (fz.MAX_HEAVY_ATOMS + 1))


def test_heavy_atom_mol_drops_every_hydrogen_and_keeps_counts():
    mol = Chem.AddHs(Chem.MolFromSmiles("[2H]C([2H])([2H])[C@@H](N)C(=O)O"))
    heavy, idx = fz.heavy_atom_mol(mol)
    assert heavy.GetNumAtoms() == 6
    assert [mol.GetAtomWithIdx(i).GetSymbol() for i in idx] == [
        a.GetSymbol() for a in heavy.GetAtoms()
    ]
    assert sum(a.GetTotalNumHs() for a in heavy.GetAtoms()) == 7
    with pytest.raises(InvalidInputError):
        fz.featurize(mol)
