"""Branches of embed that the happy path never takes: sampling rounds exhausted,
enforceChirality off, MMFF with worker processes, unsanitizable input, charges out of
range, a weights manifest that does not match.

The failure paths are forced by replacing the stereo check of the sampling step with one
that reports every sample wrong (monkeypatch, as spyrmsd forces its fallbacks).
"""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import rdMolTransforms

import rdconfvae
from rdconfvae.errors import (
    EmbeddingFailedError,
    InvalidInputError,
    UnsupportedMoleculeError,
    WeightsError,
)
from rdconfvae.geometry import solver
from rdconfvae.model import store as modelstore

CHIRAL = "C[C@H](N)C(=O)Nc1ccccc1"  # alaninanilide, one stereocentre


@pytest.fixture
def every_sample_wrong(monkeypatch):
    """The sampler's stereo check reports one wrong centre in every sample; returns the
    list of calls (each call appends), so a test can see the patch took effect."""
    calls: list[int] = []
    real = solver.stereo_violations

    def always_wrong(x, *args, **kwargs):
        calls.append(1)
        wrong_c, wrong_d = real(x, *args, **kwargs)
        return wrong_c.clamp(min=1), wrong_d

    monkeypatch.setattr(solver, "stereo_violations", always_wrong)
    return calls


def _mol() -> Chem.Mol:
    return Chem.AddHs(Chem.MolFromSmiles(CHIRAL))


def test_max_attempts_exhausted_raises_and_leaves_the_molecule(every_sample_wrong):
    mol = _mol()
    with pytest.raises(EmbeddingFailedError, match="after 1 sampling rounds"):
        rdconfvae.embed(mol, n=2, seed=0, params=rdconfvae.EmbedParameters(maxAttempts=1))
    one_round = len(every_sample_wrong)
    assert one_round > 0 and mol.GetNumConformers() == 0

    del every_sample_wrong[:]
    with pytest.raises(EmbeddingFailedError, match="after 3 sampling rounds"):
        rdconfvae.embed(mol, n=2, seed=0, params=rdconfvae.EmbedParameters(maxAttempts=3))
    assert len(every_sample_wrong) > one_round  # each round sampled and checked again
    assert mol.GetNumConformers() == 0


def test_max_attempts_exhausted_in_embed_multiple_confs_returns_empty(every_sample_wrong):
    """RDKit's contract: an empty list, never -1, the molecule untouched (not ETKDG:
    the fallback is for molecules outside the model's domain, not for failures)."""
    mol = _mol()
    mol.AddConformer(Chem.Conformer(mol.GetNumAtoms()), assignId=True)
    assert rdconfvae.EmbedMultipleConfs(mol, 3, randomSeed=0, maxAttempts=2) == []
    assert mol.GetNumConformers() == 1


def test_enforce_chirality_false_keeps_samples_the_check_rejects(every_sample_wrong):
    mol = _mol()
    ids = rdconfvae.EmbedMultipleConfs(mol, 3, randomSeed=0, enforceChirality=False)
    assert ids == [0, 1, 2] and every_sample_wrong
    for conf in mol.GetConformers():  # still a sensible geometry
        assert 1.45 < rdMolTransforms.GetBondLength(conf, 0, 1) < 1.60  # C-C sp3
    with pytest.raises(EmbeddingFailedError):
        rdconfvae.embed(mol, n=3, seed=0, params=rdconfvae.EmbedParameters(maxAttempts=1))


def test_enforce_chirality_false_without_patch_gives_conformers():
    mol = _mol()
    params = rdconfvae.EmbedParameters(randomSeed=3, enforceChirality=False)
    assert rdconfvae.EmbedMultipleConfs(mol, 4, params) == [0, 1, 2, 3]
    xyz = mol.GetConformer(0).GetPositions()
    assert np.isfinite(xyz).all()


def test_mmff_with_two_threads_equals_one_thread():
    a, b = _mol(), _mol()
    assert rdconfvae.embed(a, n=4, seed=11, mmff=True, num_threads=1) == [0, 1, 2, 3]
    assert rdconfvae.embed(b, n=4, seed=11, mmff=True, num_threads=2) == [0, 1, 2, 3]
    for ca, cb in zip(a.GetConformers(), b.GetConformers(), strict=True):
        np.testing.assert_allclose(ca.GetPositions(), cb.GetPositions(), atol=1e-6)
        assert cb.HasProp("MMFF_ENERGY")
        assert ca.GetDoubleProp("MMFF_ENERGY") == pytest.approx(cb.GetDoubleProp("MMFF_ENERGY"))
    Chem.AssignStereochemistryFrom3D(b)
    assert Chem.FindMolChiralCenters(b) == Chem.FindMolChiralCenters(_mol())


def test_unsanitizable_input_is_invalid_input():
    mol = Chem.MolFromSmiles("CC(C)(C)(C)(C)C", sanitize=False)  # pentavalent carbon
    assert mol is not None
    with pytest.raises(InvalidInputError, match="does not sanitize"):
        rdconfvae.embed(mol, n=2, seed=0)
    with pytest.raises(InvalidInputError, match="does not sanitize"):
        rdconfvae.EmbedMultipleConfs(mol, 2, randomSeed=0)
    assert mol.GetNumConformers() == 0


def test_charge_outside_the_vocabulary():
    mol = Chem.AddHs(Chem.MolFromSmiles("CCC[C+3]"))
    with pytest.raises(UnsupportedMoleculeError, match=r"formal charge \+3 is outside -2..\+2"):
        rdconfvae.embed(mol, n=2, seed=0)
    assert mol.GetNumConformers() == 0
    # EmbedMultipleConfs falls back to ETKDGv3 for out-of-domain molecules, and says so
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fallback warning (fires once per process)
        assert rdconfvae.EmbedMultipleConfs(mol, 2, randomSeed=0) == [0, 1]
    assert {c.GetProp("rdconfvae_generator") for c in mol.GetConformers()} == {"etkdg"}


def test_weights_manifest_mismatch_reaches_the_caller(tmp_path, monkeypatch):
    """A manifest for another featurizer: embed raises WeightsError naming the manifest,
    EmbedMultipleConfs does too (no silent ETKDG, no empty list), the molecule untouched."""
    w = tmp_path / "w"
    shutil.copytree(modelstore.weights_dir(), w)
    manifest = json.loads((w / "manifest.json").read_text())
    manifest["featurizer"]["atom_dim"] += 1
    (w / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setenv("RDCONFVAE_WEIGHTS", str(w))
    modelstore.clear_cache()
    try:
        mol = _mol()
        with pytest.raises(WeightsError, match="featurizer check failed") as info:
            rdconfvae.embed(mol, n=2, seed=0)
        assert str(w / "manifest.json") in str(info.value)
        with pytest.raises(WeightsError):
            rdconfvae.EmbedMultipleConfs(mol, 2, randomSeed=0)
        assert mol.GetNumConformers() == 0
    finally:
        modelstore.clear_cache()
