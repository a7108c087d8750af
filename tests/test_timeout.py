"""The per-molecule time limit holds inside every long stage, not only between them.

Stages that once ran to their end past the limit: the geometry repair (300 Adam steps over
all atom pairs of a big molecule), the MMFF polish and minimisation of many conformers, and
the ETKDGv3 fallback, which was handed the whole limit again after the model had used part
of it. Each stage is tested with a limit that has already passed (deterministic: no timing
threshold), and one end-to-end call on a large molecule with a generous margin.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import rdDistGeom

import rdconfvae
from rdconfvae.deadline import Deadline
from rdconfvae.embedding.fallback import FallbackWarning, embed_etkdg
from rdconfvae.errors import EmbeddingTimeoutError
from rdconfvae.forcefield.mmff import mmff_minimize, mmff_polish
from rdconfvae.geometry.bounds import GeometryGate, bounds_refine
from rdconfvae.params import EmbedParameters

# an 18-membered macrocyclic lactone with two centres: many pairs, some stereo
MACROCYCLE = "C[C@@H]1CCCCCCCC(=O)O[C@H](C)CCCCCC1"
ALA10 = "N[C@@H](C)C(=O)" + "N[C@@H](C)C(=O)" * 8 + "N[C@@H](C)C(=O)O"


def _expired() -> Deadline:
    deadline = Deadline(1e-6)
    time.sleep(0.01)
    return deadline


def _etkdg(smiles: str, n: int, seed: int = 7) -> Chem.Mol:
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    params = rdDistGeom.ETKDGv3()
    params.randomSeed = seed
    rdDistGeom.EmbedMultipleConfs(mol, n, params)
    return mol


def _distorted(mol: Chem.Mol, noise: float, seed: int) -> np.ndarray:
    xyz = np.stack([c.GetPositions() for c in mol.GetConformers()])
    return xyz + np.random.default_rng(seed).normal(scale=noise, size=xyz.shape)


def test_geometry_repair_stops_at_the_time_limit():
    mol = _etkdg(MACROCYCLE, 4)
    gate = GeometryGate.for_mol(mol)
    xyz = _distorted(mol, 0.3, seed=1)
    assert gate.failures(xyz).all()
    sign = gate.hands(np.stack([c.GetPositions() for c in mol.GetConformers()]))
    with pytest.raises(EmbeddingTimeoutError, match="geometry repair"):
        bounds_refine(xyz, gate, gate.tetra, sign, deadline=_expired())


def test_geometry_repair_brings_every_pair_into_its_bounds():
    """The repair follows only the pairs near their bounds between full refreshes; what it
    returns is judged on all pairs, hydrogens included, and keeps every centre's side."""
    mol = _etkdg(MACROCYCLE, 6)
    gate = GeometryGate.for_mol(mol)
    start = np.stack([c.GetPositions() for c in mol.GetConformers()])
    sign = gate.hands(start)
    xyz = _distorted(mol, 0.3, seed=2)
    assert gate.failures(xyz).all()
    fixed = bounds_refine(xyz, gate, gate.tetra, sign)
    assert not gate.failures(fixed).any()
    assert np.array_equal(gate.hands(fixed), sign)


def test_a_centre_pushed_through_a_face_is_repaired_back_with_its_own_hand():
    """A four-neighbour centre moved outside its neighbours' tetrahedron has, seen from
    itself, the other sign; the repair keeps the hand of the neighbours' arrangement and
    brings the centre back inside (it used to keep the outside, and fail)."""
    mol = _etkdg("C[C@@](F)(Cl)CC", 2)
    gate = GeometryGate.for_mol(mol)
    start = np.stack([c.GetPositions() for c in mol.GetConformers()])
    row = int(np.flatnonzero(gate.tetra[:, 0] == 1)[0])
    nbrs = gate.tetra4[gate.tetra4[:, 0] == 1, 1:][0]
    far = start[:, nbrs[3]]
    face = start[:, nbrs[:3]].mean(axis=1)  # the face opposite the fourth neighbour
    pushed = start.copy()
    pushed[:, 1] = face + 0.4 * (face - far) / np.linalg.norm(face - far, axis=-1)[:, None]
    c = pushed[:, gate.tetra[row, 0]]
    own = np.sign(
        np.einsum(
            "kx,kx->k",
            pushed[:, gate.tetra[row, 1]] - c,
            np.cross(pushed[:, gate.tetra[row, 2]] - c, pushed[:, gate.tetra[row, 3]] - c),
        )
    )
    assert gate.failures(pushed).all() and (own != gate.hands(start)[:, row]).all()
    assert np.array_equal(gate.hands(pushed), gate.hands(start))
    fixed = bounds_refine(pushed, gate, gate.tetra, gate.hands(pushed))
    assert not gate.failures(fixed).any()
    assert np.array_equal(gate.hands(fixed), gate.hands(start))


def test_force_field_stages_stop_at_the_time_limit_before_changing_a_conformer():
    mol = _etkdg("CC(C)Cc1ccc(cc1)[C@@H](C)C(=O)O", 3)
    before = np.stack([c.GetPositions() for c in mol.GetConformers()])
    with pytest.raises(EmbeddingTimeoutError, match="MMFF polish"):
        mmff_polish(mol, 80, deadline=_expired())
    with pytest.raises(EmbeddingTimeoutError, match="MMFF"):
        mmff_minimize(mol, deadline=_expired())
    after = np.stack([c.GetPositions() for c in mol.GetConformers()])
    assert np.array_equal(before, after)


class _ExpiresAfter(Deadline):
    """A limit that passes after ``checks`` calls of :meth:`check` (no clock involved)."""

    def __init__(self, checks: int) -> None:
        super().__init__(1000.0)
        self.left = checks

    def check(self, stage: str) -> None:
        self.left -= 1
        if self.left < 0:
            raise EmbeddingTimeoutError(f"timeout reached during {stage}")


def test_threaded_minimisation_stops_between_blocks_with_the_same_result():
    """RDKit's threaded MMFF path once ran all conformers to their end past the limit; it
    now checks the limit between blocks of conformers, which changes no coordinate."""
    mol = _etkdg("CC(C)Cc1ccc(cc1)[C@@H](C)C(=O)O", 9)
    whole, blocked = Chem.Mol(mol), Chem.Mol(mol)
    ref = mmff_minimize(whole, num_threads=2)
    got = mmff_minimize(blocked, num_threads=2, deadline=Deadline(1000.0))
    assert [r.energy for r in got] == [r.energy for r in ref]
    for a, b in zip(whole.GetConformers(), blocked.GetConformers(), strict=True):
        assert np.array_equal(a.GetPositions(), b.GetPositions())
    stopped = Chem.Mol(mol)
    with pytest.raises(EmbeddingTimeoutError, match="MMFF"):
        mmff_minimize(stopped, num_threads=2, deadline=_ExpiresAfter(1))
    moved = [
        not np.array_equal(a.GetPositions(), b.GetPositions())
        for a, b in zip(mol.GetConformers(), stopped.GetConformers(), strict=True)
    ]
    assert moved == [True] * 4 + [False] * 5  # one block of 2 per thread, then the limit


def test_fallback_gets_only_the_time_left():
    """An out-of-domain molecule reaching the ETKDGv3 fallback with its limit spent times
    out there and keeps its conformers (the fallback once restarted the full limit)."""
    mol = _etkdg("C[Si](C)(C)C", 2)
    before = mol.GetConformer(0).GetPositions()
    opts = EmbedParameters()
    opts.timeout = 1e-6
    with pytest.raises(EmbeddingTimeoutError, match="fallback"), pytest.warns(FallbackWarning):
        embed_etkdg(mol, 5, opts, mmff=False, reason="test", deadline=_expired())
    assert mol.GetNumConformers() == 2
    assert np.array_equal(mol.GetConformer(0).GetPositions(), before)


def test_a_large_molecule_stops_near_its_limit():
    """A 10-residue peptide at n = 200 takes far longer than 2 s; the limit is checked
    inside sampling, repair and polish, so the call ends well within a few seconds of it."""
    mol = Chem.AddHs(Chem.MolFromSmiles(ALA10))
    rdconfvae.embed(Chem.AddHs(Chem.MolFromSmiles("CCO")), 2, seed=0)  # model loaded
    start = time.monotonic()
    with pytest.raises(EmbeddingTimeoutError):
        rdconfvae.embed(mol, 200, seed=0, timeout=2.0)
    assert time.monotonic() - start < 2.0 + 4.0
    assert mol.GetNumConformers() == 0
