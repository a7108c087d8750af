"""EmbedMolecule, coordMap and constrained_embed (issue 18, items 5 and 6).

The congeneric series are public drugs sharing a scaffold (none of them, by InChIKey
skeleton, on the evaluation exclusion list): four BCR-ABL inhibitors of the imatinib
family around the N-(2-methylphenyl)pyrimidin-2-amine core (planar, no stereo), and four
penicillins around the 6-aminopenicillanic acid core (three stereocentres; ampicillin
and amoxicillin carry a fourth in the side chain). The core coordinates are those of
an RDKit ETKDGv3 conformer of one member; distances bounds come from RDKit's
``GetMoleculeBoundsMatrix``, core RMSDs from ``rdMolAlign.AlignMol``: both independent of
the code under test.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem, rdDistGeom, rdMolAlign
from rdkit.Geometry import Point3D

import rdconfvae
from rdconfvae import api
from rdconfvae.errors import EmbeddingFailedError, InvalidInputError
from rdconfvae.geometry.stereo import conformer_stereo_matches

KINASE_CORE = "Cc1ccccc1Nc1ncccn1"
KINASE_SERIES = {
    "nilotinib": "Cc1cn(-c2cc(NC(=O)c3ccc(C)c(Nc4nccc(-c5cccnc5)n4)c3)cc(C(F)(F)F)c2)cn1",
    "N-desmethyl imatinib": "Cc1ccc(NC(=O)c2ccc(CN3CCNCC3)cc2)cc1Nc1nccc(-c2cccnc2)n1",
    "radotinib": "Cc1ccc(C(=O)Nc2cc(-n3cnc(C)c3)cc(C(F)(F)F)c2)cc1Nc1nccc(-c2cnccn2)n1",
    "imatinib amine intermediate": "Cc1ccc(N)cc1Nc1nccc(-c2cccnc2)n1",
}
PENAM_CORE = "CC1(C)S[C@@H]2[C@H](N)C(=O)N2[C@H]1C(=O)O"
PENAM_SERIES = {
    "ampicillin": "CC1(C)S[C@@H]2[C@H](NC(=O)[C@H](N)c3ccccc3)C(=O)N2[C@H]1C(=O)O",
    "amoxicillin": "CC1(C)S[C@@H]2[C@H](NC(=O)[C@H](N)c3ccc(O)cc3)C(=O)N2[C@H]1C(=O)O",
    "methicillin": "COc1cccc(OC)c1C(=O)N[C@@H]1C(=O)N2[C@@H](C(=O)O)C(C)(C)S[C@H]12",
    "oxacillin": "Cc1onc(-c2ccccc2)c1C(=O)N[C@@H]1C(=O)N2[C@@H](C(=O)O)C(C)(C)S[C@H]12",
}
#: RDKit's embedding tests: pairs >= lower bound - 0.425 A, bonds <= upper bound + 0.425 A.
TOL = 0.425


def _core_with_coords(core_smiles: str, donor_smiles: str, seed: int = 42) -> Chem.Mol:
    """The core as a molecule whose conformer is taken from an ETKDGv3 pose of the donor."""
    donor = Chem.AddHs(Chem.MolFromSmiles(donor_smiles))
    assert AllChem.EmbedMolecule(donor, randomSeed=seed) == 0
    core = Chem.MolFromSmiles(core_smiles)
    match = donor.GetSubstructMatch(core, useChirality=True)
    conf = Chem.Conformer(core.GetNumAtoms())
    for i, j in enumerate(match):
        conf.SetAtomPosition(i, donor.GetConformer().GetAtomPosition(j))
    core.AddConformer(conf, assignId=True)
    return core


def _bounds_failures(mol: Chem.Mol, conf_id: int) -> list[str]:
    bounds = rdDistGeom.GetMoleculeBoundsMatrix(mol)
    xyz = mol.GetConformer(conf_id).GetPositions()
    d = np.linalg.norm(xyz[:, None] - xyz[None], axis=-1)
    out = []
    for i, j in zip(*np.triu_indices(len(xyz), k=1), strict=True):
        if d[i, j] < bounds[j, i] - TOL:
            out.append(f"pair {i}-{j} {d[i, j]:.2f} < lower {bounds[j, i]:.2f}")
    for b in mol.GetBonds():
        i, j = sorted((b.GetBeginAtomIdx(), b.GetEndAtomIdx()))
        if d[i, j] > bounds[i, j] + TOL:
            out.append(f"bond {i}-{j} {d[i, j]:.2f} > upper {bounds[i, j]:.2f}")
    return out


def _snapshot(mol: Chem.Mol) -> list[np.ndarray]:
    return [c.GetPositions() for c in mol.GetConformers()]


@pytest.mark.parametrize(
    ("core_smiles", "series", "donor"),
    [
        (KINASE_CORE, KINASE_SERIES, "imatinib amine intermediate"),
        (PENAM_CORE, PENAM_SERIES, "methicillin"),
    ],
    ids=["anilinopyrimidines", "penicillins"],
)
def test_congeneric_series_hold_the_core(core_smiles, series, donor):
    core = _core_with_coords(core_smiles, series[donor])
    core_xyz = core.GetConformer().GetPositions()
    for name, smi in series.items():
        mol = Chem.AddHs(Chem.MolFromSmiles(smi))
        ids = rdconfvae.constrained_embed(mol, core, n=4, seed=11)
        assert ids == [0, 1, 2, 3], name
        match = mol.GetSubstructMatch(core)
        for cid in ids:
            # in the core's frame, without alignment ...
            xyz = mol.GetConformer(cid).GetPositions()[list(match)]
            assert np.sqrt(((xyz - core_xyz) ** 2).sum(-1).mean()) < 0.05, name
            # ... and after RDKit's own alignment
            rms = rdMolAlign.AlignMol(
                Chem.Mol(mol), core, prbCid=cid, atomMap=[(j, i) for i, j in enumerate(match)]
            )
            assert rms < 0.05, name
            assert mol.GetConformer(cid).GetDoubleProp("EmbedRMS") < 0.05
            assert _bounds_failures(mol, cid) == [], (name, cid)
            assert conformer_stereo_matches(mol, cid), (name, cid)
        assert float(mol.GetProp("EmbedRMS")) < 0.05


def _penam_coord_map() -> tuple[Chem.Mol, dict[int, Point3D]]:
    core = _core_with_coords(PENAM_CORE, PENAM_SERIES["methicillin"])
    mol = Chem.AddHs(Chem.MolFromSmiles(PENAM_SERIES["ampicillin"]))
    match = mol.GetSubstructMatch(core)
    conf = core.GetConformer()
    return mol, {j: conf.GetAtomPosition(i) for i, j in enumerate(match)}


def _assert_at(mol: Chem.Mol, conf_id: int, coord_map: dict[int, Point3D]) -> None:
    xyz = mol.GetConformer(conf_id).GetPositions()
    for i, p in coord_map.items():
        assert np.linalg.norm(xyz[i] - np.array([p.x, p.y, p.z])) < 1e-3


def test_coord_map_in_every_api():
    mol, cmap = _penam_coord_map()
    ids = rdconfvae.EmbedMultipleConfs(mol, 3, randomSeed=5, coordMap=cmap)
    assert ids == [0, 1, 2]
    for cid in ids:
        _assert_at(mol, cid, cmap)
    params = rdconfvae.EmbedParameters(randomSeed=5)
    params.SetCoordMap(cmap)  # RDKit's setter
    assert rdconfvae.EmbedMultipleConfs(mol, 2, params) == [0, 1]
    _assert_at(mol, 1, cmap)
    rd_params = AllChem.ETKDGv3()  # RDKit's own params: its SetCoordMap is read too
    rd_params.randomSeed = 5
    rd_params.SetCoordMap(cmap)
    assert rdconfvae.EmbedMultipleConfs(mol, 2, rd_params) == [0, 1]
    _assert_at(mol, 1, cmap)
    assert rdconfvae.EmbedMolecule(mol, coordMap=cmap, randomSeed=3) == 0
    _assert_at(mol, 0, cmap)
    assert rdconfvae.embed(mol, n=2, seed=3, coord_map=cmap, mmff=True) == [0, 1]
    for cid in (0, 1):
        _assert_at(mol, cid, cmap)
        assert mol.GetConformer(cid).HasProp("MMFF_ENERGY")
        assert _bounds_failures(mol, cid) == []
        assert conformer_stereo_matches(mol, cid)
    # numpy arrays and (x, y, z) tuples are Point3D-like too
    as_tuples = {i: (p.x, p.y, p.z) for i, p in cmap.items()}
    assert rdconfvae.embed(mol, n=1, seed=3, coord_map=as_tuples) == [0]
    _assert_at(mol, 0, cmap)


def test_coord_map_params_json_round_trip():
    _, cmap = _penam_coord_map()
    params = rdconfvae.EmbedParameters(coordMap=cmap)
    back = rdconfvae.EmbedParameters.FromJSON(params.ToJSON())
    assert sorted(back.coordMap) == sorted(cmap)
    for i, p in cmap.items():
        assert back.coordMap[i].Distance(p) < 1e-9


def test_coord_map_same_coordinates_for_two_threads():
    mol, cmap = _penam_coord_map()
    one, two = Chem.Mol(mol), Chem.Mol(mol)
    rdconfvae.embed(one, n=20, seed=9, coord_map=cmap, num_threads=1)
    rdconfvae.embed(two, n=20, seed=9, coord_map=cmap, num_threads=2)
    np.testing.assert_array_equal(np.stack(_snapshot(one)), np.stack(_snapshot(two)))


def test_coord_map_reaches_the_etkdg_fallback():
    # silicon is outside the model's domain: ETKDGv3 with RDKit's coordMap, then superposed
    mol = Chem.AddHs(Chem.MolFromSmiles("C[Si](C)(C)OCc1ccccc1"))
    ref = Chem.Mol(mol)
    assert AllChem.EmbedMolecule(ref, randomSeed=3) == 0
    ring = list(range(6, 12))
    cmap = {i: ref.GetConformer().GetAtomPosition(i) for i in ring}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rdconfvae.FallbackWarning)  # warned once per process
        ids = rdconfvae.EmbedMultipleConfs(mol, 3, randomSeed=1, coordMap=cmap)
    assert ids == [0, 1, 2]
    target = ref.GetConformer().GetPositions()[ring]
    for cid in ids:
        assert mol.GetConformer(cid).GetProp("rdconfvae_generator") == "etkdg"
        xyz = mol.GetConformer(cid).GetPositions()[ring]
        assert np.sqrt(((xyz - target) ** 2).sum(-1).mean()) < 0.05


def test_heavy_atom_molecule_with_coord_map():
    mol, cmap = _penam_coord_map()
    heavy = Chem.RemoveHs(mol)  # same heavy-atom order as the AddHs molecule
    assert rdconfvae.embed(heavy, n=2, seed=4, coord_map=cmap) == [0, 1]
    _assert_at(heavy, 1, cmap)
    assert _bounds_failures(heavy, 1) == []


def _bad_call(mol: Chem.Mol, cmap, match: str) -> None:
    before = _snapshot(mol)
    with pytest.raises(InvalidInputError, match=match):
        rdconfvae.embed(mol, n=2, seed=1, coord_map=cmap, clear_confs=True)
    with pytest.raises(InvalidInputError, match=match):
        rdconfvae.EmbedMultipleConfs(mol, 2, coordMap=cmap)
    with pytest.raises(InvalidInputError, match=match):
        rdconfvae.EmbedMolecule(mol, coordMap=cmap)
    after = _snapshot(mol)
    assert len(after) == len(before)
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)


def test_impossible_or_malformed_coord_map_is_refused_molecule_untouched():
    mol, cmap = _penam_coord_map()
    rdconfvae.embed(mol, n=1, seed=2)  # a conformer that must survive the failures
    n = mol.GetNumAtoms()
    i, j = sorted(cmap)[:2]
    bond = mol.GetBondWithIdx(0)
    a, b = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
    _bad_call(mol, {a: Point3D(0, 0, 0), b: Point3D(3.0, 0, 0)}, f"atoms {min(a, b)} and")
    _bad_call(mol, {i: Point3D(0, 0, 0), j: Point3D(0, 0, 0.1)}, f"atoms {i} and {j}")
    _bad_call(mol, {n + 3: Point3D(0, 0, 0)}, f"index {n + 3} is out of range")
    _bad_call(mol, {-1: Point3D(0, 0, 0)}, "out of range")
    _bad_call(mol, {i: "0 0 0"}, rf"coordMap\[{i}\]")
    _bad_call(mol, {i: (1.0, 2.0)}, rf"coordMap\[{i}\]")
    _bad_call(mol, {i: (1.0, float("nan"), 2.0)}, "finite")
    _bad_call(mol, {"1": Point3D(0, 0, 0)}, "not an atom index")
    _bad_call(mol, [(i, Point3D(0, 0, 0))], "must be a dict")
    hydrogen = next(a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() == 1)
    _bad_call(mol, {hydrogen: Point3D(0, 0, 0)}, "hydrogen")
    salt = Chem.AddHs(Chem.MolFromSmiles("CCO.Cl"))
    _bad_call(salt, {0: Point3D(0, 0, 0)}, "2 fragments")


def test_constrained_embed_errors_leave_molecule_untouched():
    core = _core_with_coords(PENAM_CORE, PENAM_SERIES["methicillin"])
    other = Chem.AddHs(Chem.MolFromSmiles(KINASE_SERIES["nilotinib"]))
    rdconfvae.embed(other, n=1, seed=1)
    before = _snapshot(other)
    with pytest.raises(InvalidInputError, match="does not match the molecule"):
        rdconfvae.constrained_embed(other, core, n=2)
    with pytest.raises(InvalidInputError, match="no conformer"):
        rdconfvae.constrained_embed(other, Chem.MolFromSmiles("c1ccccc1"), n=2)
    with pytest.raises(InvalidInputError, match="hydrogen"):
        rdconfvae.constrained_embed(other, Chem.AddHs(core, addCoords=True), n=2)
    np.testing.assert_array_equal(np.stack(before), np.stack(_snapshot(other)))
    assert other.GetNumConformers() == 1


def test_embed_molecule_contract(monkeypatch):
    mol = Chem.AddHs(Chem.MolFromSmiles(PENAM_SERIES["amoxicillin"]))
    assert rdconfvae.EmbedMolecule(mol, randomSeed=7) == 0
    first = mol.GetConformer(0).GetPositions()
    assert conformer_stereo_matches(mol, 0)
    # clearConfs: replaced by default, appended otherwise
    assert rdconfvae.EmbedMolecule(mol, randomSeed=7) == 0
    assert mol.GetNumConformers() == 1
    np.testing.assert_array_equal(first, mol.GetConformer(0).GetPositions())
    assert rdconfvae.EmbedMolecule(mol, randomSeed=8, clearConfs=False) == 1
    assert mol.GetNumConformers() == 2
    # RDKit's params object, RDKit's ignored knobs, RDKit's positional maxAttempts
    params = AllChem.ETKDGv3()
    params.randomSeed = 7
    assert rdconfvae.EmbedMolecule(mol, params) == 0
    np.testing.assert_array_equal(first, mol.GetConformer(0).GetPositions())
    assert rdconfvae.EmbedMolecule(mol, 0, randomSeed=7) == 0
    kw = {"useRandomCoords": True, "forceTol": 1e-3, "boxSizeMult": 2.0, "ETversion": 2}
    assert rdconfvae.EmbedMolecule(mol, randomSeed=7, enforceChirality=True, **kw) == 0
    np.testing.assert_array_equal(first, mol.GetConformer(0).GetPositions())
    with pytest.raises(TypeError, match="EmbedMolecule"):
        rdconfvae.EmbedMolecule(mol, randomseed=7)
    with pytest.raises(InvalidInputError):
        rdconfvae.EmbedMolecule(None)
    # failure: -1 and the molecule keeps its conformer

    def fail(*args, **kwargs):
        raise EmbeddingFailedError("forced")

    monkeypatch.setattr(api, "generate", fail)
    before = mol.GetConformer(0).GetPositions()
    assert rdconfvae.EmbedMolecule(mol, randomSeed=1) == -1
    assert mol.GetNumConformers() == 1
    np.testing.assert_array_equal(before, mol.GetConformer(0).GetPositions())


def test_embed_molecule_is_exported():
    assert "EmbedMolecule" in rdconfvae.__all__
    assert "constrained_embed" in rdconfvae.__all__


def test_doctests():
    import doctest

    from rdconfvae import constrained

    assert doctest.testmod(constrained, raise_on_error=False).failed == 0
    result = doctest.DocTestFinder().find(api.EmbedMolecule)
    runner = doctest.DocTestRunner()
    for test in result:
        runner.run(test)
    assert runner.failures == 0
