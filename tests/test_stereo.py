"""Sign convention of signed volumes against RDKit's own embedding and perception."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rdkit import Chem
from rdkit.Chem import AllChem

from rdconfvae.geometry import solver
from rdconfvae.geometry.stereo import conformer_stereo_matches
from rdconfvae.model import featurize as fz

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


def _neighbour_volumes(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """(M, C) volume (n1 - n4) . ((n2 - n4) x (n3 - n4)): the hand of four neighbours
    alone, independent of where the centre sits (and of solver.signed_volumes)."""
    n4 = x[:, idx[:, 4]]
    a, b, c = (x[:, idx[:, m]] - n4 for m in (1, 2, 3))
    return (a * torch.cross(b, c, dim=-1)).sum(-1)


QUATERNARY = "C[C@H]1CC[C@@]2(C)CC[C@H](O)C[C@@H]2C1"  # one centre with four heavy neighbours


def test_four_neighbour_centre_takes_the_hand_of_its_neighbours():
    """A centre pushed through a face of its neighbours' tetrahedron keeps the hand of the
    neighbours: the stereo check must not call it inverted (nor call its mirror right),
    or the stereo repair "fixes" a wrong hand by pushing the centre out."""
    mol = Chem.AddHs(Chem.MolFromSmiles(QUATERNARY))
    AllChem.EmbedMolecule(mol, randomSeed=5)
    heavy, idx = fz.heavy_atom_mol(mol)
    g = fz.featurize(heavy)
    four = [k for k, row in enumerate(g.chiral_idx.tolist()) if row[4] != row[0]]
    assert len(four) == 1 and g.chiral_idx.shape == (4, 5)
    c, n1, n2, n3, _ = g.chiral_idx[four[0]].tolist()
    x = torch.tensor(mol.GetConformer().GetPositions()[idx], dtype=torch.float32)[None]
    # reflect the centre through the plane of n1, n2, n3: outside the tetrahedron now
    p = x[0, [n1, n2, n3]]
    normal = torch.cross(p[1] - p[0], p[2] - p[0], dim=-1)
    normal = normal / normal.norm()
    pushed = x.clone()
    pushed[0, c] -= 2 * ((x[0, c] - p[0]) @ normal) * normal
    args = (g.chiral_sign, g.dbl_idx, g.dbl_cis)
    assert solver.stereo_violations(pushed, g.chiral_idx, *args)[0].tolist() == [0]
    # seen from the centre itself (four columns) the pushed centre looks inverted
    assert solver.stereo_violations(pushed, g.chiral_idx[:, :4], *args)[0].tolist() == [1]
    mirror = pushed * torch.tensor([-1.0, 1, 1])
    assert solver.stereo_violations(mirror, g.chiral_idx, *args)[0].tolist() == [4]


def test_sampled_conformers_have_the_declared_hand_by_their_neighbours():
    """What the sampler reports as stereo-correct has every four-neighbour centre in the
    declared hand of its neighbours (testosterone: before the neighbours' hand was used,
    about half of such conformers had a centre pushed out instead, and were lost later)."""
    from rdconfvae.embedding.sampling import bounds_geometry, sample_chunk
    from rdconfvae.model.store import load_model

    smiles = "C[C@]12CC[C@H]3[C@@H](CCC4=CC(=O)CC[C@@]43C)[C@@H]1CC[C@@H]2O"
    heavy = Chem.MolFromSmiles(smiles)
    g = fz.featurize(heavy)
    model = load_model()
    eps = torch.randn(24, g.num_atoms, model.latent, generator=torch.Generator().manual_seed(0))
    x, ok = sample_chunk(model, g, bounds_geometry(heavy, g), eps, 1.0, 30, True)
    four = g.chiral_idx[:, 4] != g.chiral_idx[:, 0]
    assert int(four.sum()) == 2 and int(ok.sum()) >= 20
    vol = _neighbour_volumes(x[ok], g.chiral_idx[four]) * g.chiral_sign[four]
    assert bool((vol > 0).all())
