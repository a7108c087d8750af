"""Tests for rdconfvae.evaluation.metrics: RMSD semantics, ensemble and pose summaries, validity."""

from __future__ import annotations

import doctest
import logging
import math

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import rdDistGeom, rdMolAlign

from rdconfvae.evaluation import metrics, validity

DRUGS = {
    "ibuprofen": "CC(C)Cc1ccc([C@@H](C)C(=O)O)cc1",
    "imatinib": "Cc1ccc(NC(=O)c2ccc(CN3CCN(C)CC3)cc2)cc1Nc1nccc(-c2cccnc2)n1",
    "diclofenac_anion": "O=C([O-])Cc1ccccc1Nc1c(Cl)cccc1Cl",
    "nitro_chiral": "O=[N+]([O-])c1ccc(cc1)[C@H](N)C(=O)OCC",
    "tbu_cf3": "CC(C)(C)c1cc(C(F)(F)F)cc(C(F)(F)F)c1NC(=O)C",
}


def embed(smiles: str, n: int, seed: int) -> Chem.Mol:
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    params = rdDistGeom.ETKDGv3()
    params.randomSeed = seed
    assert len(rdDistGeom.EmbedMultipleConfs(mol, n, params)) == n
    return mol


def rotation(seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


def transformed(mol: Chem.Mol, matrix: np.ndarray, shift: np.ndarray) -> Chem.Mol:
    out = Chem.Mol(mol)
    for conf in out.GetConformers():
        conf.SetPositions(conf.GetPositions() @ matrix.T + shift)
    return out


def renumbered(mol: Chem.Mol, seed: int) -> Chem.Mol:
    order = np.random.default_rng(seed).permutation(mol.GetNumAtoms()).tolist()
    return Chem.RenumberAtoms(mol, order)


def two_atom_ensemble(distances: list[float]) -> Chem.Mol:
    """Heavy-atom C-O 'molecule' whose conformers differ only by the C-O distance.

    Superposing two such conformers moves each atom by half the length difference, so the
    RMSD is |d1 - d2| / 2 exactly (hand-computed values below).
    """
    mol = Chem.MolFromSmiles("CO")
    for d in distances:
        conf = Chem.Conformer(2)
        conf.SetPositions(np.array([[0.0, 0.0, 0.0], [d, 0.0, 0.0]]))
        mol.AddConformer(conf, assignId=True)
    return mol


def test_docstring_examples():
    assert doctest.testmod(metrics, raise_on_error=False).failed == 0


@pytest.mark.parametrize("name", sorted(DRUGS))
def test_agrees_with_get_best_rms(name):
    # Expected values: rdMolAlign.GetBestRMS on RemoveAllHs copies, pair by pair.
    gen = embed(DRUGS[name], 6, seed=1)
    ref = renumbered(embed(DRUGS[name], 3, seed=2), seed=3)  # atom order differs too
    got = metrics.rmsd_matrix(gen, ref)
    gen_h, ref_h = Chem.RemoveAllHs(gen), Chem.RemoveAllHs(ref)
    want = np.array(
        [
            [rdMolAlign.GetBestRMS(Chem.Mol(gen_h), ref_h, prbId=i, refId=j) for j in range(3)]
            for i in range(6)
        ]
    )
    assert got.shape == (6, 3)
    np.testing.assert_allclose(got, want, atol=1e-3)
    assert metrics.best_rms(gen, ref, 2, 1) == pytest.approx(want[2, 1], abs=1e-3)
    assert metrics.min_rmsd_to_pose(gen, ref, pose_conf=1) == pytest.approx(
        want[:, 1].min(), abs=1e-3
    )


def test_rotated_translated_copy_has_zero_rmsd():
    mol = embed(DRUGS["imatinib"], 1, seed=5)
    moved = transformed(mol, rotation(0), np.array([10.0, -3.0, 7.5]))
    assert metrics.best_rms(moved, mol) == pytest.approx(0.0, abs=1e-5)
    # with a different atom order and no hydrogens on one side
    other = renumbered(Chem.RemoveAllHs(moved), seed=1)
    assert metrics.best_rms(other, mol) == pytest.approx(0.0, abs=1e-5)


def test_mirror_image_is_not_superposable():
    mol = embed(DRUGS["nitro_chiral"], 1, seed=3)
    mirror = transformed(mol, np.diag([1.0, 1.0, -1.0]), np.zeros(3))
    rms = metrics.best_rms(mirror, mol)
    assert rms > 0.1
    # RDKit agrees: no reflection in GetBestRMS either
    want = rdMolAlign.GetBestRMS(Chem.RemoveAllHs(mirror), Chem.RemoveAllHs(mol))
    assert rms == pytest.approx(want, abs=1e-3)
    assert metrics.stereo_preserved(mirror) == [False]
    assert metrics.stereo_preserved(mol) == [True]


def test_carboxylate_oxygens_are_symmetric():
    mol = Chem.RemoveAllHs(embed("CC(=O)[O-]", 1, seed=1))
    swapped = Chem.Mol(mol)
    xyz = swapped.GetConformer().GetPositions()
    xyz[[2, 3]] = xyz[[3, 2]]  # exchange the two oxygens' coordinates
    swapped.GetConformer().SetPositions(xyz)
    assert metrics.best_rms(swapped, mol) == pytest.approx(0.0, abs=1e-5)


def test_hand_computed_ensemble_metrics():
    ref = two_atom_ensemble([1.4, 3.0])
    gen = two_atom_ensemble([1.5, 1.4, 2.0])
    # |d_gen - d_ref| / 2: rows 1.5, 1.4, 2.0; columns 1.4, 3.0
    want = np.array([[0.05, 0.75], [0.0, 0.8], [0.3, 0.5]])
    np.testing.assert_allclose(metrics.rmsd_matrix(gen, ref), want, atol=1e-6)
    res = metrics.ensemble_metrics(gen, ref, delta=0.5)
    assert res["cov_r"] == pytest.approx(1.0)  # min per ref: 0.0, 0.5 (<= 0.5)
    assert res["mat_r"] == pytest.approx(0.25, abs=1e-6)
    assert res["cov_p"] == pytest.approx(1.0)  # min per gen: 0.05, 0.0, 0.3
    assert res["mat_p"] == pytest.approx(0.35 / 3, abs=1e-6)
    strict = metrics.ensemble_metrics(gen, ref, delta=0.5, strict=True)
    assert strict["cov_r"] == pytest.approx(0.5)
    assert metrics.ensemble_metrics(gen, ref, delta=0.04)["cov_p"] == pytest.approx(1 / 3)
    assert (res["n_gen"], res["n_ref"]) == (3, 2)


def test_identical_ensembles_cover_everything():
    mol = embed(DRUGS["ibuprofen"], 5, seed=11)
    res = metrics.ensemble_metrics(mol, Chem.Mol(mol), delta=0.75, strict=True)
    assert res["cov_r"] == 1.0 and res["cov_p"] == 1.0
    assert res["mat_r"] == pytest.approx(0.0, abs=1e-5)
    assert res["mat_p"] == pytest.approx(0.0, abs=1e-5)


def test_pose_summary_hand_computed():
    s = metrics.pose_summary([0.3, 0.8, 1.2, 1.7, None])  # None: generator failed
    assert s["n"] == 5 and s["n_finite"] == 4
    assert s["median"] == pytest.approx(1.2)
    assert s["mean"] == pytest.approx(1.0)
    assert s["below_0.5"] == pytest.approx(0.2)
    assert s["below_1.0"] == pytest.approx(0.4)
    assert s["below_1.5"] == pytest.approx(0.6)
    assert s["below_2.0"] == pytest.approx(0.8)
    assert metrics.pose_summary([math.nan, math.inf])["median"] == math.inf


def test_match_cap_gives_upper_bound(caplog):
    gen = embed(DRUGS["tbu_cf3"], 3, seed=1)
    ref = embed(DRUGS["tbu_cf3"], 1, seed=2)
    full = metrics.rmsd_matrix(gen, ref)
    with caplog.at_level(logging.WARNING, logger="rdconfvae.evaluation.metrics"):
        capped = metrics.rmsd_matrix(gen, ref, max_matches=2)
    assert "capped" in caplog.text
    assert np.all(capped >= full - 1e-9)


def test_errors():
    mol = embed("CCO", 1, seed=1)
    with pytest.raises(ValueError):
        metrics.best_rms(mol, embed("CCN", 1, seed=1))
    with pytest.raises(ValueError):
        metrics.min_rmsd_to_pose(Chem.AddHs(Chem.MolFromSmiles("CCO")), mol)


def test_posebusters_checks():
    pytest.importorskip("posebusters")
    mol = embed(DRUGS["ibuprofen"], 2, seed=4)
    mol.RemoveConformer(0)  # a non-zero conformer id must work too
    res = metrics.posebusters_checks(mol)
    assert [r["conf_id"] for r in res] == [1]
    assert res[0]["pass_all"] and res[0]["stereo"]
    assert {"bond_lengths", "internal_steric_clash", "internal_energy"} <= set(res[0]["checks"])


def _move(mol: Chem.Mol, conf_id: int, atoms: list[int], shift: np.ndarray) -> None:
    conf = mol.GetConformer(conf_id)
    xyz = conf.GetPositions()
    xyz[atoms] += shift
    conf.SetPositions(xyz)


def _with_broken_conformers(mol: Chem.Mol) -> dict[str, int]:
    """Adds copies of conformer 0, each broken one way; returns {kind: conformer id}."""
    base = Chem.Conformer(mol.GetConformer(0))
    xyz = base.GetPositions()
    kinds = {}

    def add(kind: str) -> int:
        kinds[kind] = mol.AddConformer(Chem.Conformer(base), assignId=True)
        return kinds[kind]

    # a terminal heavy atom (with its hydrogens) pulled away: that bond becomes 3.0 A
    atom = next(
        a
        for a in mol.GetAtoms()
        if a.GetAtomicNum() == 6 and a.GetDegree() - a.GetTotalNumHs(includeNeighbors=True) == 1
    )
    nbr = next(n for n in atom.GetNeighbors() if n.GetAtomicNum() > 1)
    axis = xyz[atom.GetIdx()] - xyz[nbr.GetIdx()]
    length = np.linalg.norm(axis)
    group = [atom.GetIdx()] + [n.GetIdx() for n in atom.GetNeighbors() if n.GetAtomicNum() == 1]
    _move(mol, add("stretched"), group, axis / length * (3.0 - length))
    # the mirror image: every stereo element inverted, geometry otherwise perfect
    conf = mol.GetConformer(add("mirrored"))
    conf.SetPositions(xyz * np.array([-1.0, 1.0, 1.0]))
    # an aromatic ring puckered like a chair: atoms 0.4 A above and below its plane in turn
    # (both sides: PoseBusters takes the largest signed distance along an SVD normal whose
    # sign is arbitrary, so one atom pushed out of plane can go unnoticed)
    rings = mol.GetRingInfo().AtomRings()
    ring = next((r for r in rings if mol.GetAtomWithIdx(r[0]).GetIsAromatic()), None)
    if ring is not None:
        pts = xyz[list(ring)] - xyz[list(ring)].mean(axis=0)
        normal = np.linalg.svd(pts)[2][-1]
        cid = add("bent_ring")
        for k, idx in enumerate(ring):
            _move(mol, cid, [idx], 0.4 * (-1) ** k * normal)
    return kinds


@pytest.mark.parametrize(
    "smiles", [DRUGS["nitro_chiral"], "C/C=C/[C@H]1CCC[C@@H](O)C1"], ids=["nitro", "ring"]
)
def test_posebusters_checks_agree_with_posebusters(smiles):
    # Expected pass/fail: PoseBusters' own PoseBusters(config="mol").bust on one-conformer
    # copies (conformer id 0), the slow path the fast checks replace.
    pytest.importorskip("posebusters")
    from posebusters import PoseBusters

    mol = embed(smiles, 2, seed=11)
    kinds = _with_broken_conformers(mol)
    ids = [c.GetId() for c in mol.GetConformers()]
    # num_threads=0 as PoseBusters' default: both share its cached reference energies
    fast = {r["conf_id"]: r for r in metrics.posebusters_checks(mol, num_threads=0)}
    singles = []
    for cid in ids:
        single = Chem.Mol(mol)
        single.RemoveAllConformers()
        conf = Chem.Conformer(mol.GetConformer(cid))
        conf.SetId(0)
        single.AddConformer(conf)
        singles.append(single)
    table = PoseBusters(config="mol").bust(singles, None, None, full_report=False)
    assert len(table.columns) == 12
    for cid, (_, row) in zip(ids, table.iterrows(), strict=True):
        want = {str(k): validity._truthy(v) for k, v in row.items()}
        assert fast[cid]["checks"] == want, cid
    for cid in (0, 1):
        assert fast[cid]["pass_all"] and fast[cid]["stereo"] and fast[cid]["inchi_matches_input"]
    stretched = fast[kinds["stretched"]]
    assert not stretched["checks"]["bond_lengths"] and stretched["stereo"]
    mirrored = fast[kinds["mirrored"]]
    assert mirrored["pass_all"] and not mirrored["stereo"]  # only the stereo check sees it
    # its InChI is the enantiomer's: the input's reference ensemble is used (PoseBusters
    # embeds the enantiomer; same outcome, compared above)
    assert not mirrored["inchi_matches_input"]
    if "bent_ring" in kinds:
        assert not fast[kinds["bent_ring"]]["checks"]["aromatic_ring_flatness"]


def test_energy_reference_once_per_molecule():
    pytest.importorskip("posebusters")
    first = embed(DRUGS["ibuprofen"], 2, seed=21)
    metrics.posebusters_checks(first)
    misses = metrics.reference_energy.cache_info().misses
    again = embed(DRUGS["ibuprofen"], 4, seed=22)  # other conformers, same molecule
    res = metrics.posebusters_checks(again)
    assert all(r["stereo"] for r in res)
    assert metrics.reference_energy.cache_info().misses == misses  # no new ensemble
    assert all(0.0 < r["energy_ratio"] < 100.0 and r["checks"]["internal_energy"] for r in res)
