"""RDKit's embedding contract at its edges: tiny molecules, unspecified and impossible
stereo, and RDKit's own distance-bound tolerance on every returned conformer.

The bound check here is written from RDKit's embedding tests, independently of
``rdconfvae.geometry.bounds``: every atom pair no more than 0.425 A below its lower bound and every
bond no more than 0.425 A above its upper bound (``GetMoleculeBoundsMatrix``).
"""

from __future__ import annotations

import warnings
from collections import Counter

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem, rdDistGeom

import rdconfvae
from rdconfvae.errors import EmbeddingFailedError
from rdconfvae.geometry.stereo import conformer_stereo_matches

TOL = 0.425 + 1e-6  # RDKit's tolerance; the 1e-6 only absorbs rounding of the distance

ERYTHROMYCIN = (
    "CC[C@@H]1[C@@]([C@@H]([C@H](C(=O)[C@@H](C[C@@]([C@@H]([C@H]([C@@H]([C@H](C(=O)O1)C)"
    "O[C@H]2C[C@@]([C@H]([C@@H](O2)C)O)(C)OC)C)O[C@H]3[C@@H]([C@H](C[C@H](O3)C)N(C)C)O)(C)O)"
    "C)C)O)(C)O"
)
PEPTIDE = (  # a linear hexapeptide, 57 heavy atoms
    "CC(C)C[C@H](NC(=O)[C@H](CC(C)C)NC(=O)[C@H](C)NC(=O)[C@H](Cc1ccccc1)NC(=O)[C@H](CO)NC(=O)"
    "[C@H](N)CCCCN)C(=O)N[C@@H](CC(=O)O)C(=O)O"
)
IMATINIB = "Cc1ccc(cc1Nc2nccc(n2)c3cccnc3)NC(=O)c4ccc(cc4)CN5CCN(CC5)C"


def _bound_faults(mol: Chem.Mol, conf_id: int) -> list[str]:
    bm = rdDistGeom.GetMoleculeBoundsMatrix(mol)
    x = mol.GetConformer(conf_id).GetPositions()
    faults = []
    n = mol.GetNumAtoms()
    for i in range(n):
        for j in range(i + 1, n):
            d = float(np.linalg.norm(x[i] - x[j]))
            if d < bm[j, i] - TOL:
                faults.append(f"{i}-{j} {d:.2f} < lower {bm[j, i]:.2f}")
    for b in mol.GetBonds():
        i, j = sorted((b.GetBeginAtomIdx(), b.GetEndAtomIdx()))
        d = float(np.linalg.norm(x[i] - x[j]))
        if d > bm[i, j] + TOL:
            faults.append(f"bond {i}-{j} {d:.2f} > upper {bm[i, j]:.2f}")
    return faults


def _all_within_bounds(mol: Chem.Mol) -> None:
    for conf in mol.GetConformers():
        assert _bound_faults(mol, conf.GetId()) == [], conf.GetId()


def _snapshot(mol: Chem.Mol) -> list[tuple[int, np.ndarray]]:
    return [(c.GetId(), c.GetPositions().copy()) for c in mol.GetConformers()]


# ------------------------------------------------------------------ 1. tiny molecules

TINY = ["CC", "CO", "C=C", "C#C", "C#N", "CN", "CCl", "OO", "O", "C", "N", "[NH4+]", "[Na+]"]


@pytest.mark.parametrize("smiles", TINY)
@pytest.mark.parametrize("hs", [True, False])
def test_one_and_two_heavy_atoms_embed_within_bounds(smiles, hs):
    mol = Chem.MolFromSmiles(smiles)
    mol = Chem.AddHs(mol) if hs else mol
    assert rdconfvae.embed(mol, n=3, seed=1) == [0, 1, 2]
    _all_within_bounds(mol)
    drop_in = Chem.Mol(mol)
    assert rdconfvae.EmbedMultipleConfs(drop_in, 2, randomSeed=1) == [0, 1]
    _all_within_bounds(drop_in)
    assert all(c.GetProp(rdconfvae.GENERATOR_PROP) == "rdconfvae" for c in mol.GetConformers())


def test_water_has_its_bond_lengths_and_angle():
    mol = Chem.AddHs(Chem.MolFromSmiles("O"))
    rdconfvae.embed(mol, n=1, seed=1)
    x = mol.GetConformer().GetPositions()
    oh = np.linalg.norm(x[1:] - x[0], axis=-1)
    cos = np.dot(x[1] - x[0], x[2] - x[0]) / oh.prod()
    assert np.all(np.abs(oh - 0.97) < 0.05)  # O-H 0.96-0.97 A
    assert 95 < np.degrees(np.arccos(cos)) < 115  # H-O-H ~104.5 degrees


# ------------------------------------------------------------ 2. unspecified stereo


def _cip_from_3d(mol: Chem.Mol, conf_id: int) -> dict[int, str]:
    work = Chem.Mol(mol)
    Chem.AssignStereochemistryFrom3D(work, confId=conf_id)
    return {a.GetIdx(): a.GetProp("_CIPCode") for a in work.GetAtoms() if a.HasProp("_CIPCode")}


def _unit_volume(x: np.ndarray, centre: int, nbrs: list[int]) -> float:
    v = [(x[n] - x[centre]) / np.linalg.norm(x[n] - x[centre]) for n in nbrs[:3]]
    return float(np.dot(v[0], np.cross(v[1], v[2])))


@pytest.mark.parametrize("num_threads", [1, 2])
def test_unspecified_centre_gets_both_hands_each_a_real_tetrahedron(num_threads):
    mol = Chem.AddHs(Chem.MolFromSmiles("ClC(C)(F)Br"))
    rdconfvae.embed(mol, n=30, seed=3, num_threads=num_threads)
    hands = Counter(_cip_from_3d(mol, c.GetId())[1] for c in mol.GetConformers())
    assert set(hands) == {"R", "S"} and min(hands.values()) >= 3, hands
    nbrs = [n.GetIdx() for n in mol.GetAtomWithIdx(1).GetNeighbors()]
    for conf in mol.GetConformers():
        assert abs(_unit_volume(conf.GetPositions(), 1, nbrs)) > 0.5  # ideal: 0.77
    _all_within_bounds(mol)


def test_specified_centre_stays_while_unspecified_one_varies():
    mol = Chem.AddHs(Chem.MolFromSmiles("C[C@H](O)C(C)(F)Br"))
    rdconfvae.embed(mol, n=30, seed=3)
    labels = [_cip_from_3d(mol, c.GetId()) for c in mol.GetConformers()]
    assert {lab[1] for lab in labels} == {"S"}  # as declared, every conformer
    free = Counter(lab[3] for lab in labels)
    assert set(free) == {"R", "S"} and min(free.values()) >= 3, free
    assert all(conformer_stereo_matches(mol, c.GetId()) for c in mol.GetConformers())


def test_unspecified_double_bond_gets_e_and_z():
    mol = Chem.AddHs(Chem.MolFromSmiles("CC=CC"))
    rdconfvae.embed(mol, n=30, seed=3)
    seen = Counter()
    for conf in mol.GetConformers():
        work = Chem.Mol(mol)
        Chem.AssignStereochemistryFrom3D(work, confId=conf.GetId())
        seen[str(work.GetBondWithIdx(1).GetStereo())] += 1
    assert set(seen) == {"STEREOE", "STEREOZ"} and min(seen.values()) >= 3, seen


# -------------------------------------------------------------- 3. impossible stereo

IMPOSSIBLE = [
    "C1C[C@H]2CC[C@H]1C2",  # norbornane, one bridgehead inverted
    "O[C@@H]1C[C@@H]2CC[C@@H]1C2",  # norbornan-2-ol, inverted bridgehead
]
STRAINED_REAL = [
    "C1C[C@H]2CC[C@@H]1C2",  # norbornane as it exists
    "C12C3C4C1C5C2C3C45",  # cubane
    "C1C2CC1C2",  # bicyclo[1.1.1]pentane
    "C1CCC/C=C/CC1",  # trans-cyclooctene
    "C1C2C1C2",  # bicyclo[1.1.0]butane: bridgeheads outside their neighbours' tetrahedron
    "C1CC12CC2",  # spiropentane
]


@pytest.mark.parametrize("smiles", IMPOSSIBLE)
def test_impossible_stereo_fails_like_any_embedding_failure(smiles):
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    assert len(AllChem.EmbedMultipleConfs(Chem.Mol(mol), 3, randomSeed=1)) == 0  # RDKit agrees
    mol.AddConformer(Chem.Conformer(mol.GetNumAtoms()), assignId=True)
    before = _snapshot(mol)
    with pytest.raises(EmbeddingFailedError, match="impossible"):
        rdconfvae.embed(mol, n=3, seed=1, clear_confs=True)
    assert rdconfvae.EmbedMultipleConfs(mol, 3, randomSeed=1) == []
    after = _snapshot(mol)
    assert len(after) == len(before) and all(
        i == j and np.array_equal(a, b) for (i, a), (j, b) in zip(before, after, strict=True)
    )


@pytest.mark.parametrize("smiles", STRAINED_REAL)
def test_strained_but_real_molecules_embed(smiles):
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    assert rdconfvae.embed(mol, n=5, seed=1) == list(range(5))
    _all_within_bounds(mol)
    assert all(conformer_stereo_matches(mol, c.GetId()) for c in mol.GetConformers())


# ------------------------------------------------- 4. RDKit's tolerance, every conformer


_SLOW = pytest.mark.slow  # a macrocycle or a peptide outside the default output: ~20 s each


@pytest.mark.parametrize(
    ("smiles", "n", "mode"),
    [
        (IMATINIB, 10, "default"),
        (IMATINIB, 10, "raw"),
        (IMATINIB, 10, "mmff"),
        (ERYTHROMYCIN, 5, "default"),
        (PEPTIDE, 5, "default"),
        pytest.param(ERYTHROMYCIN, 5, "raw", marks=_SLOW),
        pytest.param(ERYTHROMYCIN, 5, "mmff", marks=_SLOW),
        pytest.param(PEPTIDE, 5, "raw", marks=_SLOW),
        pytest.param(PEPTIDE, 5, "mmff", marks=_SLOW),
    ],
    ids=lambda v: {IMATINIB: "imatinib", ERYTHROMYCIN: "erythromycin", PEPTIDE: "peptide"}.get(
        v, str(v)
    ),
)
def test_every_conformer_within_rdkit_bounds(smiles, n, mode):
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    kwargs = {
        "default": {},
        "raw": {"params": rdconfvae.EmbedParameters(polishIters=0)},
        "mmff": {"mmff": True},
    }[mode]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ids = rdconfvae.embed(mol, n=n, seed=1, **kwargs)
    assert ids == list(range(n))
    assert all(conformer_stereo_matches(mol, i) for i in ids)
    if mode != "mmff":
        _all_within_bounds(mol)
        return
    # an MMFF minimum may hold hydrogen bonds closer than RDKit's distance-geometry lower
    # bounds (the gate judges the start of the minimisation): bonds and clashes instead
    topo = Chem.GetDistanceMatrix(mol)
    heavy = [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() > 1]
    for conf in mol.GetConformers():
        assert [f for f in _bound_faults(mol, conf.GetId()) if f.startswith("bond")] == []
        x = conf.GetPositions()[heavy]
        d = np.linalg.norm(x[:, None] - x[None], axis=-1)
        far = topo[np.ix_(heavy, heavy)] >= 4  # the training set's clash rule: >= 2.2 A
        assert d[far].min() >= 2.2


# ------------------------------------------------------------------ 8. argument types


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"n": 3.0}, "n must be an integer"),
        ({"n": "3"}, "n must be an integer"),
        ({"n": True}, "n must be an integer"),
        ({"n": 2, "seed": "1"}, "seed"),
        ({"n": 2, "num_threads": 1.5}, "num_threads"),
        ({"n": 2, "prune_rms": "0.5"}, "prune_rms"),
        ({"n": 2, "timeout": -1}, "timeout"),
        ({"n": 2, "mmff": "yes"}, "mmff"),
        ({"n": 2, "fallback": "rdkit"}, "fallback"),
        ({"n": 2, "params": rdconfvae.EmbedParameters(temperature=0)}, "temperature"),
        ({"n": 2, "params": rdconfvae.EmbedParameters(dielectric="water")}, "dielectric"),
        ({"n": 2, "params": rdconfvae.EmbedParameters(maxAttempts=-1)}, "maxAttempts"),
    ],
)
def test_bad_argument_types_name_the_argument_and_keep_the_molecule(kwargs, named):
    mol = Chem.AddHs(Chem.MolFromSmiles("CCO"))
    rdconfvae.embed(mol, n=1, seed=1)
    before = _snapshot(mol)
    with pytest.raises(rdconfvae.InvalidInputError, match=named):
        rdconfvae.embed(mol, **kwargs)
    after = _snapshot(mol)
    assert [i for i, _ in after] == [i for i, _ in before]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(before, after, strict=True))


@pytest.mark.parametrize("num_confs", [3.0, "3", None])
def test_drop_in_refuses_a_non_integer_count(num_confs):
    with pytest.raises(rdconfvae.InvalidInputError, match="numConfs"):
        rdconfvae.EmbedMultipleConfs(Chem.MolFromSmiles("CCO"), num_confs)


def test_batch_options_share_the_checks():
    from rdconfvae.batch.unit import EmbedOptions

    with pytest.raises(rdconfvae.InvalidInputError, match="seed"):
        EmbedOptions(seed=1.5)
    with pytest.raises(rdconfvae.InvalidInputError, match="n must be an integer"):
        EmbedOptions(n="10")


def test_drop_in_raises_out_of_domain_when_asked_to():
    mol = Chem.AddHs(Chem.MolFromSmiles("C[Si](C)(C)C"))
    with pytest.raises(rdconfvae.UnsupportedMoleculeError, match="Si"):
        rdconfvae.EmbedMultipleConfs(mol, 2, fallback="raise")
    assert mol.GetNumConformers() == 0
