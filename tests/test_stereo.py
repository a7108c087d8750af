"""Sign convention of signed volumes against RDKit's own embedding and perception."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rdkit import Chem
from rdkit.Chem import AllChem

from rdconfvae import featurize as fz
from rdconfvae import solver
from rdconfvae.stereo import conformer_stereo_matches

CHIRAL = [
    "N[C@@H](C)C(=O)O",
    "N[C@H](C)C(=O)O",
    "C[C@@](F)(Cl)Br",
    "O[C@H]1CC[C@@H](C)CC1",
    "C1C[C@H]2CC[C@@H]1C2",
    "F[C@]1(Cl)CCCC1",
    "CC[C@@H](O)[C@H](C)N",
    "C[S@](=O)c1ccccc1",
    "C[C@H]1CC[C@@]2(C)CC[C@H](O)C[C@@H]2C1",
    "C/C=C/C(=O)O",
    "C/C=C\\c1ccccc1",
]


@pytest.mark.parametrize("smiles", CHIRAL)
def test_volume_signs_match_rdkit_conformers(smiles):
    """RDKit's ETKDG honours the declared stereo; our signed volumes and cis/trans
    signs must agree with every centre of its conformers, and the mirror image
    must violate every centre."""
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    AllChem.EmbedMultipleConfs(mol, 3, randomSeed=11)
    heavy, idx = fz.heavy_atom_mol(mol)
    g = fz.featurize(heavy)
    x = torch.tensor(
        np.array([c.GetPositions()[idx] for c in mol.GetConformers()]), dtype=torch.float32
    )
    wrong_c, wrong_d = solver.stereo_violations(
        x, g.chiral_idx, g.chiral_sign, g.dbl_idx, g.dbl_cis
    )
    assert wrong_c.tolist() == [0, 0, 0] and wrong_d.tolist() == [0, 0, 0]
    mirror_c, _ = solver.stereo_violations(
        x * torch.tensor([-1.0, 1, 1]), g.chiral_idx, g.chiral_sign, g.dbl_idx, g.dbl_cis
    )
    assert mirror_c.tolist() == [g.chiral_idx.shape[0]] * 3


def test_rdkit_check_detects_mirror_image():
    mol = Chem.AddHs(Chem.MolFromSmiles("N[C@@H](C)C(=O)O"))
    AllChem.EmbedMolecule(mol, randomSeed=3)
    assert conformer_stereo_matches(mol, 0)
    conf = mol.GetConformer(0)
    for i in range(mol.GetNumAtoms()):
        p = conf.GetAtomPosition(i)
        conf.SetAtomPosition(i, (-p.x, p.y, p.z))
    assert not conformer_stereo_matches(mol, 0)
