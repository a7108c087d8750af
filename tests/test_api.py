"""The public API with the shipped weights: chemistry, RDKit conventions, bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem, rdMolAlign

import rdconfvae
from rdconfvae.api import GENERATOR_PROP
from rdconfvae.embedding import engine
from rdconfvae.embedding.fragments import split_fragments
from rdconfvae.errors import (
    EmbeddingTimeoutError,
    InvalidInputError,
    MoleculeTooLargeError,
    UnsupportedMoleculeError,
)
from rdconfvae.forcefield.mmff import CONVERGED_PROP, ENERGY_PROP, mmff_minimize
from rdconfvae.geometry.stereo import conformer_stereo_matches, declared_stereo_broken
from rdconfvae.model import featurize as fz

IMATINIB = "Cc1ccc(cc1Nc2nccc(n2)c3cccnc3)NC(=O)c4ccc(cc4)CN5CCN(CC5)C"


def _mol(smiles: str, hs: bool = True) -> Chem.Mol:
    mol = Chem.MolFromSmiles(smiles)
    return Chem.AddHs(mol) if hs else mol


def _snapshot(mol: Chem.Mol) -> list[tuple[int, np.ndarray]]:
    return [(c.GetId(), c.GetPositions().copy()) for c in mol.GetConformers()]


def _same(a, b) -> bool:
    return len(a) == len(b) and all(
        i == j and np.array_equal(x, y) for (i, x), (j, y) in zip(a, b, strict=True)
    )


# ------------------------------------------------------------------------- chemistry


def _bond_deviations(mol: Chem.Mol, ids: list[int]) -> tuple[np.ndarray, float]:
    """|d - d_MMFF| of every heavy-atom bond of every conformer (A), against the same
    conformer minimised with MMFF94s, and the closest heavy-atom pair 3+ bonds apart."""
    minimised = Chem.Mol(mol)
    mmff_minimize(minimised)
    topo = Chem.GetDistanceMatrix(mol)
    heavy = [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() > 1]
    bonds = [
        (b.GetBeginAtomIdx(), b.GetEndAtomIdx())
        for b in mol.GetBonds()
        if b.GetBeginAtom().GetAtomicNum() > 1 and b.GetEndAtom().GetAtomicNum() > 1
    ]
    i, j = np.array(bonds).T
    dev, closest = [], np.inf
    for cid in ids:
        x = mol.GetConformer(cid).GetPositions()
        ref = minimised.GetConformer(cid).GetPositions()
        dev.append(
            np.abs(np.linalg.norm(x[i] - x[j], axis=-1) - np.linalg.norm(ref[i] - ref[j], axis=-1))
        )
        h = x[heavy]
        d = np.linalg.norm(h[:, None] - h[None], axis=-1)
        closest = min(closest, d[topo[np.ix_(heavy, heavy)] >= 3].min())
    return np.concatenate(dev), float(closest)


@pytest.mark.parametrize(
    "polish, p95", [(0, 0.12), (None, 0.06)], ids=["raw-model", "default-polish"]
)
def test_bond_lengths_match_mmff_and_no_clashes(polish, p95):
    """Heavy-atom bonds against the MMFF-minimised conformer: 95 % of them within
    ``p95`` (measured at seeds 1-3: raw 0.05-0.06 A, polished 0.012-0.028 A) and every one
    within 0.25 A (measured: at most 0.124 A; a conformer the geometry gate repaired and
    the second polish could not improve keeps bonds within RDKit's bounds plus the
    repair's 0.1 A slack); no non-bonded heavy-atom pair (3+ bonds apart) closer than
    0.9 A. For the raw conformers (``polishIters=0``) and the default (polished) output.
    The thresholds sit about twice above the measured values, so rounding differences
    between machines cannot cross them (a single-bond maximum at 0.1 A once did)."""
    mol = _mol(IMATINIB)
    params = None if polish is None else rdconfvae.EmbedParameters(polishIters=polish)
    ids = rdconfvae.embed(mol, n=10, seed=1, params=params)
    assert ids == list(range(10))
    dev, closest = _bond_deviations(mol, ids)
    assert np.percentile(dev, 95) < p95
    assert dev.max() < 0.25
    assert closest > 0.9


def _ring_flatness_and_angles(mol: Chem.Mol) -> tuple[float, float]:
    """Mean out-of-plane spread of aromatic rings (A, smallest singular value of the
    centred ring coordinates) and the worst heavy-atom bond-angle deviation (deg) from
    the same conformers minimised with MMFF94s, over all conformers."""
    minimised = Chem.Mol(mol)
    mmff_minimize(minimised)
    rings = [r for r in mol.GetRingInfo().AtomRings() if mol.GetAtomWithIdx(r[0]).GetIsAromatic()]
    angles = [
        (n1.GetIdx(), a.GetIdx(), n2.GetIdx())
        for a in mol.GetAtoms()
        for n1 in a.GetNeighbors()
        for n2 in a.GetNeighbors()
        if min(a.GetAtomicNum(), n1.GetAtomicNum(), n2.GetAtomicNum()) > 1
        and n1.GetIdx() < n2.GetIdx()
    ]  # fmt: skip
    i, j, k = np.array(angles).T

    def degrees(x: np.ndarray) -> np.ndarray:
        u, v = x[i] - x[j], x[k] - x[j]
        cos = (u * v).sum(-1) / np.linalg.norm(u, axis=-1) / np.linalg.norm(v, axis=-1)
        return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))

    spread, worst = [], 0.0
    for conf in mol.GetConformers():
        x = conf.GetPositions()
        ref = minimised.GetConformer(conf.GetId()).GetPositions()
        worst = max(worst, float(np.abs(degrees(x) - degrees(ref)).max()))
        for r in rings:
            ring = x[list(r)] - x[list(r)].mean(0)
            spread.append(np.linalg.svd(ring, compute_uv=False)[-1])
    return float(np.mean(spread)), worst


def test_polish_flattens_rings_and_stores_no_energy():
    """The default polish makes aromatic rings flatter and bond angles closer to MMFF's
    than the raw model output (polishIters=0), keeps the declared stereo and stores no
    (partial) energy."""
    smiles = "C[C@H](NC(=O)c1ccc(O)cc1)C(=O)N1CCC[C@H]1C(=O)O"
    raw, polished = _mol(smiles), _mol(smiles)
    ids = rdconfvae.embed(raw, n=8, seed=3, params=rdconfvae.EmbedParameters(polishIters=0))
    assert rdconfvae.embed(polished, n=8, seed=3) == ids
    flat_raw, angle_raw = _ring_flatness_and_angles(raw)
    flat_pol, angle_pol = _ring_flatness_and_angles(polished)
    assert flat_pol < 0.5 * flat_raw
    assert angle_pol < angle_raw
    for cid in ids:
        assert not polished.GetConformer(cid).HasProp(ENERGY_PROP)
        assert conformer_stereo_matches(polished, cid)


def test_conformers_whose_stereo_the_polish_changed_keep_raw_coordinates(monkeypatch):
    """A polish that mirrors every conformer (inverting L-alanine's centre) must not reach
    the caller: every conformer falls back to its unpolished coordinates, and n are kept.
    (Unpolished = the solver's output without the stress L-BFGS the default leaves to the
    polish, so the reference is the raw output with that L-BFGS switched off too.)"""
    smiles = "C[C@H](N)C(=O)O"
    raw = _mol(smiles)
    with monkeypatch.context() as patch:
        patch.setattr(engine, "STRESS_ITERS", 0)
        rdconfvae.embed(raw, n=4, seed=0, params=rdconfvae.EmbedParameters(polishIters=0))

    def mirror(mol, max_iters, **kwargs):
        for conf in mol.GetConformers():
            conf.SetPositions(conf.GetPositions() * np.array([-1.0, 1.0, 1.0]))
        return True

    monkeypatch.setattr(engine, "mmff_polish", mirror)
    # the default output is ordered by polished energy; compare conformer by conformer
    monkeypatch.setattr(engine, "batch_order", lambda job, batch: np.arange(len(batch.all_xyz)))
    mol = _mol(smiles)
    assert rdconfvae.embed(mol, n=4, seed=0) == [0, 1, 2, 3]
    assert all(conformer_stereo_matches(mol, cid) for cid in range(4))
    assert _same(_snapshot(raw), _snapshot(mol))


@pytest.mark.parametrize("value", [-1, 2.5, True, "25"])
def test_bad_polish_iters_is_rejected_and_molecule_kept(value):
    mol = _mol("CCO")
    rdconfvae.embed(mol, n=2, seed=0)
    before = _snapshot(mol)
    with pytest.raises(InvalidInputError, match="polishIters"):
        rdconfvae.embed(mol, n=3, params=rdconfvae.EmbedParameters(polishIters=value))
    assert _same(before, _snapshot(mol))
    from rdconfvae.batch.unit import EmbedOptions

    with pytest.raises(InvalidInputError, match="polishIters"):  # batch options: same rule
        EmbedOptions(n=3, polish_iters=value)


def test_molecule_mmff_cannot_type_gets_the_raw_output():
    """The default skips the solver's stress refinement only because the polish follows;
    a molecule MMFF cannot type (hypervalent iodine) is not polished, so it must get
    exactly the raw output, stress refinement included, with sane bond lengths."""
    smiles = "CC(=O)OI(OC(C)=O)c1ccccc1"  # (diacetoxyiodo)benzene: no MMFF parameters
    raw, default = _mol(smiles), _mol(smiles)
    rdconfvae.embed(raw, n=4, seed=2, params=rdconfvae.EmbedParameters(polishIters=0))
    assert rdconfvae.embed(default, n=4, seed=2) == [0, 1, 2, 3]
    for cid in range(4):
        x = default.GetConformer(cid).GetPositions()
        assert np.array_equal(x, raw.GetConformer(cid).GetPositions())
        ring = [a.GetIdx() for a in default.GetAtoms() if a.GetIsAromatic()]
        bonds = [
            np.linalg.norm(x[b.GetBeginAtomIdx()] - x[b.GetEndAtomIdx()])
            for b in default.GetBonds()
            if b.GetBeginAtomIdx() in ring and b.GetEndAtomIdx() in ring
        ]
        assert np.allclose(bonds, 1.39, atol=0.05)


def test_polish_leaves_molecules_mmff_cannot_type_untouched():
    from rdconfvae.forcefield.mmff import mmff_polish

    mol = Chem.AddHs(Chem.MolFromSmiles("C[Se]C"))  # no MMFF parameters for Se
    AllChem.EmbedMolecule(mol, randomSeed=1)
    before = mol.GetConformer().GetPositions().copy()
    assert mmff_polish(mol, 25) is False
    assert np.array_equal(before, mol.GetConformer().GetPositions())
    with pytest.raises(ValueError, match="max_iters"):
        mmff_polish(mol, 0)


@pytest.mark.parametrize(
    "smiles",
    [
        "N[C@@H](C)C(=O)O",  # L-alanine
        "C[C@@H]1CC[C@H](O)CC1",  # two centres in a ring (trans-4-methylcyclohexanol)
        "O[C@@H]1CCCC[C@H]1N",  # two adjacent ring centres
        "C/C=C/C(=O)OC",  # E alkene
        "CC/C=C\\CCO",  # Z alkene
    ],
)
def test_declared_stereo_is_kept(smiles):
    mol = _mol(smiles)
    ids = rdconfvae.embed(mol, n=8, seed=5)
    assert len(ids) == 8
    assert all(conformer_stereo_matches(mol, cid) for cid in ids)


def test_stereocentres_are_clearly_tetrahedral():
    """Every declared centre of every returned conformer is clearly tetrahedral (signed
    volume of its heavy neighbours >= 1 A^3; ~2.5 for an ideal carbon) and RDKit perceives
    the declared stereo from 3D. A nearly flat centre is right by sign but flips under the
    polish; for 3-iodotyrosine at this seed two of ten did before weak stereo was repaired."""
    smiles = "[NH3+][C@@H](Cc1ccc(O)c(I)c1)C(=O)[O-]"
    mol = _mol(smiles)
    ids = rdconfvae.embed(mol, n=10, seed=42)
    assert ids == list(range(10))
    assert all(conformer_stereo_matches(mol, cid) for cid in ids)
    heavy, _ = fz.heavy_atom_mol(mol)
    centre = 1  # the alpha carbon
    nbrs = [a.GetIdx() for a in heavy.GetAtomWithIdx(centre).GetNeighbors()]
    assert len(nbrs) == 3
    for cid in ids:
        x = mol.GetConformer(cid).GetPositions()
        a, b, c = (x[i] - x[centre] for i in nbrs)
        assert abs(float(np.dot(a, np.cross(b, c)))) >= 1.0


def test_secondary_amides_stay_planar():
    mol = _mol("CC(=O)NCc1ccccc1")
    ids = rdconfvae.embed(mol, n=10, seed=2)
    patt = Chem.MolFromSmarts("[CH3:1][C:2](=O)[NH:3][CH2:4]")
    (match,) = mol.GetSubstructMatches(patt)
    match = (match[0], match[1], match[3], match[4])  # skip the carbonyl O
    from rdkit.Chem import rdMolTransforms

    for cid in ids:
        torsion = rdMolTransforms.GetDihedralDeg(mol.GetConformer(cid), *match)
        # C-C(=O)-N-C: trans amide is 180 deg, cis 0; planar within 25 deg
        assert min(abs(abs(torsion) - 180.0), abs(torsion)) < 25.0


def test_secondary_amides_come_out_trans():
    """Acyclic secondary amides are held trans by the stereo repair, in the raw output too
    (before, the sampler left some on the cis side)."""
    from rdkit.Chem import rdMolTransforms

    patt = Chem.MolFromSmarts("[#6][CX3](=O)!@[NX3;H1][#6]")
    for smiles in ("CC(=O)NCc1ccccc1", "CC(C)C[C@H](NC(=O)[C@H](Cc1ccccc1)NC(C)=O)C(=O)NC"):
        for seed in range(1, 6):
            mol = Chem.MolFromSmiles(smiles)
            params = rdconfvae.EmbedParameters()
            params.randomSeed = seed
            params.polishIters = 0
            ids = rdconfvae.EmbedMultipleConfs(mol, 20, params)
            for a, b, _o, c, d in mol.GetSubstructMatches(patt):
                for cid in ids:
                    torsion = rdMolTransforms.GetDihedralDeg(mol.GetConformer(cid), a, b, c, d)
                    # trans is 180 degrees and cis 0; the repair aims within 60 degrees of
                    # trans (seen here: 107 at the least) and 60 keeps a wide margin from the
                    # 90 where float rounding or the geometry repair could tip one (before:
                    # down to 11 degrees, a cis amide)
                    assert abs(torsion) > 60.0, (smiles, seed, cid, torsion)


def test_mmff_energies_stored_and_converged():
    mol = _mol("CC(=O)Oc1ccccc1C(=O)O")
    ids = rdconfvae.embed(mol, n=4, seed=3, mmff=True)
    for cid in ids:
        conf = mol.GetConformer(cid)
        assert conf.HasProp(ENERGY_PROP) and conf.GetBoolProp(CONVERGED_PROP)
        assert conf.GetProp(GENERATOR_PROP) == "rdconfvae"
    energies = [mol.GetConformer(c).GetDoubleProp(ENERGY_PROP) for c in ids]
    assert np.all(np.isfinite(energies))


def test_prune_keeps_only_distinct_conformers():
    """Every kept pair differs by at least the threshold (checked with RDKit's GetBestRMS)."""
    mol = _mol("CCCCOc1ccc(CC(=O)NCCO)cc1")
    ids = rdconfvae.embed(mol, n=20, seed=4, prune_rms=1.0)
    assert 1 <= len(ids) <= 20
    heavy = Chem.RemoveHs(mol)
    for a in range(len(ids)):
        for b in range(a + 1, len(ids)):
            rms = rdMolAlign.GetBestRMS(heavy, heavy, ids[a], ids[b])
            assert rms >= 1.0 - 1e-3


# --------------------------------------------------------------------- RDKit contract


def test_ids_clear_and_append():
    mol = _mol("CCO")
    assert rdconfvae.EmbedMultipleConfs(mol, 3, randomSeed=1) == [0, 1, 2]
    assert rdconfvae.EmbedMultipleConfs(mol, 2, randomSeed=1, clearConfs=False) == [3, 4]
    assert [c.GetId() for c in mol.GetConformers()] == [0, 1, 2, 3, 4]
    assert rdconfvae.EmbedMultipleConfs(mol, 2, randomSeed=1) == [0, 1]


def test_same_seed_same_coordinates_any_thread_count():
    a, b, c, d = (_mol(IMATINIB) for _ in range(4))
    rdconfvae.embed(a, n=40, seed=0, num_threads=1)
    rdconfvae.embed(b, n=40, seed=0, num_threads=2)  # 3 chunks on 2 worker processes
    rdconfvae.embed(c, n=40, seed=1, num_threads=1)
    rdconfvae.embed(d, n=40, seed=0, num_threads=3)
    pos = lambda m: np.stack([x.GetPositions() for x in m.GetConformers()])  # noqa: E731
    assert np.array_equal(pos(a), pos(b)) and np.array_equal(pos(a), pos(d))
    assert not np.allclose(pos(a), pos(c))


def test_worker_processes_respect_the_timeout():
    from rdconfvae.errors import EmbeddingTimeoutError

    mol = _mol(IMATINIB)
    rdconfvae.embed(mol, n=2, seed=0)
    before = mol.GetConformer(0).GetPositions()
    with pytest.raises(EmbeddingTimeoutError):
        rdconfvae.embed(mol, n=200, seed=0, num_threads=2, timeout=0.05)
    assert mol.GetNumConformers() == 2
    assert np.array_equal(mol.GetConformer(0).GetPositions(), before)


def _touch_then_sleep(path: str, seconds: float) -> None:
    """Worker task: mark that it started, then block."""
    import time
    from pathlib import Path

    Path(path).touch()
    time.sleep(seconds)


def test_worker_pool_stops_within_its_grace_period(monkeypatch, tmp_path):
    """Stopping the pool (as at interpreter exit) must not wait on a worker that never
    finishes: it gets SHUTDOWN_GRACE_S, then it is terminated."""
    import threading
    import time

    from rdconfvae.embedding import workers
    from rdconfvae.model.store import load_model

    monkeypatch.setattr(workers, "SHUTDOWN_GRACE_S", 1.0)
    workers.shutdown()  # a pool of its own, not one left busy by earlier tests
    pool = workers.get_pool(2, load_model().path.parent)
    started = [tmp_path / f"started{i}" for i in range(2)]
    stuck = [pool.submit(_touch_then_sleep, str(p), 600.0) for p in started]
    procs = list(pool._processes.values())
    assert len(procs) == 2
    deadline = time.monotonic() + 60
    while not all(p.exists() for p in started) and time.monotonic() < deadline:
        time.sleep(0.05)  # wait until both workers are inside their 600 s task: a task
    assert all(p.exists() for p in started)  # still queued would only be cancelled
    stopper = threading.Thread(target=workers.shutdown, daemon=True)
    stopper.start()
    stopper.join(20.0)
    assert not stopper.is_alive(), "workers.shutdown() waited on a stuck worker"
    # the executor's own thread may reap a killed worker at the same moment, and a
    # Process object can then report "alive" for an instant: look again briefly
    deadline = time.monotonic() + 5
    while any(proc.is_alive() for proc in procs) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(proc.is_alive() for proc in procs)
    assert all(f.done() for f in stuck)


def test_a_pool_broken_by_a_dead_worker_is_replaced():
    """A worker killed from outside (e.g. by the out-of-memory killer) breaks its pool for
    good; the next call with num_threads > 1 must get a new pool, not the broken one."""
    import os
    import signal
    import time

    from rdconfvae.embedding import workers
    from rdconfvae.model.store import load_model

    weights = load_model().path.parent
    pool = workers.get_pool(2, weights)
    assert pool.submit(abs, -1).result(timeout=30) == 1
    os.kill(next(iter(pool._processes)), signal.SIGKILL)
    deadline = time.monotonic() + 30
    while not pool._broken and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pool._broken
    fresh = workers.get_pool(2, weights)
    assert fresh is not pool
    mol = _mol("CC(=O)Nc1ccc(O)cc1")
    assert rdconfvae.embed(mol, n=20, seed=0, num_threads=2) == list(range(20))


def test_a_replaced_pool_leaves_no_thread_running(monkeypatch):
    """A new pool forks its workers from this process: the old pool's manager thread must be
    gone by then (a fork while another thread runs can leave a child a lock held forever).
    The manager thread is slowed down at its exit so the race is decided every time."""
    import time
    from concurrent.futures import process

    from rdconfvae.embedding import workers
    from rdconfvae.model.store import load_model

    real_join = process._ExecutorManagerThread.join_executor_internals

    def slow_join(self):
        time.sleep(1.0)
        real_join(self)

    monkeypatch.setattr(process._ExecutorManagerThread, "join_executor_internals", slow_join)
    weights = load_model().path.parent
    workers.shutdown()
    old = workers.get_pool(2, weights)
    assert old.submit(abs, -1).result(timeout=30) == 1
    manager = old._executor_manager_thread
    assert manager.is_alive()
    assert workers.get_pool(3, weights) is not old  # stops the old pool, then a new one
    assert not manager.is_alive()
    workers.shutdown()


def test_chunks_depend_on_the_sample_count_only():
    from rdconfvae.embedding.sampling import chunk_sizes

    assert chunk_sizes(50) == [13, 13, 12, 12]
    assert chunk_sizes(16) == [16] and chunk_sizes(17) == [9, 8]
    assert all(sum(chunk_sizes(k)) == k and max(chunk_sizes(k)) <= 16 for k in range(1, 200))


def test_random_seed_minus_one_differs():
    a, b = _mol("CCCCCCO"), _mol("CCCCCCO")
    rdconfvae.embed(a, n=5, seed=-1)
    rdconfvae.embed(b, n=5, seed=-1)
    assert not np.allclose(a.GetConformer(0).GetPositions(), b.GetConformer(0).GetPositions())


def test_without_hydrogens_no_atom_is_added():
    mol = _mol("CC(=O)Nc1ccc(O)cc1", hs=False)
    ids = rdconfvae.embed(mol, n=3, seed=1, mmff=True)
    assert mol.GetNumAtoms() == 11 and len(ids) == 3
    assert mol.GetConformer(0).Is3D()
    assert mol.GetConformer(0).HasProp(ENERGY_PROP)


def test_rdkit_params_object_is_honoured():
    params = AllChem.ETKDGv3()
    params.randomSeed = 7
    params.pruneRmsThresh = -1.0
    a, b = _mol("CCOCCN"), _mol("CCOCCN")
    assert rdconfvae.EmbedMultipleConfs(a, 4, params) == [0, 1, 2, 3]
    ours = rdconfvae.EmbedParameters(randomSeed=7)
    assert rdconfvae.EmbedMultipleConfs(b, 4, ours) == [0, 1, 2, 3]
    assert np.array_equal(a.GetConformer(2).GetPositions(), b.GetConformer(2).GetPositions())


def test_params_are_strict_and_round_trip():
    p = rdconfvae.EmbedParameters()
    with pytest.raises(AttributeError):
        p.randomseed = 3  # typo of randomSeed
    p.pruneRmsThresh = 0.5
    assert rdconfvae.EmbedParameters.FromJSON(p.ToJSON()).pruneRmsThresh == 0.5
    with pytest.raises(TypeError):
        rdconfvae.EmbedMultipleConfs(_mol("CC"), 2, randomseed=1)


# ------------------------------------------------------------------------ bad input


def test_none_and_empty_are_rejected():
    with pytest.raises(InvalidInputError, match="None"):
        rdconfvae.embed(None)
    with pytest.raises(InvalidInputError, match="no atoms"):
        rdconfvae.embed(Chem.Mol())


@pytest.mark.parametrize(
    "smiles",
    [
        "C[Sn](C)(C)C",
        "C[Si](C)(C)C",
        "OB(O)c1ccccc1",
        "C[Se]C",
        "[Cu+2].[O-]C(=O)C.[O-]C(=O)C",
        "C[CH2]",
    ],
)
def test_out_of_domain_raises_or_falls_back(smiles):
    mol = _mol(smiles)
    with pytest.raises(UnsupportedMoleculeError):
        rdconfvae.embed(mol, n=2)
    assert mol.GetNumConformers() == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ids = rdconfvae.EmbedMultipleConfs(mol, 2, randomSeed=1)
    assert ids == [0, 1]
    assert all(c.GetProp(GENERATOR_PROP) == "etkdg" for c in mol.GetConformers())


def test_fallback_warns_for_every_molecule_at_the_callers_line():
    """Each fallback names the molecule and the reason, points at this file (the caller),
    and the standard filters silence it."""
    for smiles in ("C[Si](C)(C)C", "C[Se]C"):
        with pytest.warns(rdconfvae.FallbackWarning) as record:
            rdconfvae.embed(_mol(smiles), n=1, fallback="etkdg", seed=1)
        (w,) = record
        assert w.filename == __file__
        assert Chem.CanonSmiles(smiles) in str(w.message)
        assert ("Si" if "Si" in smiles else "Se") in str(w.message)  # the reason: the element
    named = _mol("C[Si](C)(C)C")
    named.SetProp("_Name", "tetramethylsilane")
    with pytest.warns(rdconfvae.FallbackWarning, match="tetramethylsilane"):
        rdconfvae.EmbedMultipleConfs(named, 1, randomSeed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", rdconfvae.FallbackWarning)
        rdconfvae.embed(_mol("C[Se]C"), n=1, fallback="etkdg", seed=1)


def test_charged_and_zwitterions_work():
    for smiles in ("C[N+](C)(C)CC(=O)[O-]", "[NH3+][C@@H](C)C(=O)[O-]", "CC(=O)[O-]"):
        mol = _mol(smiles)
        assert len(rdconfvae.embed(mol, n=3, seed=1)) == 3
        assert all(conformer_stereo_matches(mol, c.GetId()) for c in mol.GetConformers())


def test_salt_fragments_are_all_embedded_apart():
    mol = _mol("CC(=O)[O-].[Na+]")
    rdconfvae.embed(mol, n=2, seed=1)
    pos = mol.GetConformer(0).GetPositions()
    na = [a.GetIdx() for a in mol.GetAtoms() if a.GetSymbol() == "Na"][0]
    others = [i for i in range(mol.GetNumAtoms()) if i != na]
    assert np.linalg.norm(pos[others] - pos[na], axis=-1).min() > 2.5


def test_too_large_names_the_limit():
    mol = _mol("C" * (fz.MAX_HEAVY_ATOMS + 5), hs=False)
    with pytest.raises(MoleculeTooLargeError, match=f"{fz.MAX_HEAVY_ATOMS} heavy atoms"):
        rdconfvae.embed(mol, n=2)


def test_non_positive_n():
    mol = _mol("CCO")
    with pytest.raises(InvalidInputError, match="positive"):
        rdconfvae.embed(mol, n=0)
    assert rdconfvae.EmbedMultipleConfs(mol, 0) == []


def test_failure_keeps_existing_conformers(monkeypatch):
    mol = _mol("CCOC(=O)c1ccccc1")
    rdconfvae.embed(mol, n=3, seed=1)
    before = _snapshot(mol)
    with pytest.raises(EmbeddingTimeoutError):
        rdconfvae.embed(mol, n=50, seed=2, timeout=1e-9, clear_confs=True)
    assert _same(before, _snapshot(mol))

    # an internal failure after sampling (MMFF crashing) must not touch the molecule
    def boom(*args, **kwargs):
        raise RuntimeError("simulated MMFF crash")

    monkeypatch.setattr(engine, "mmff_minimize", boom)
    with pytest.raises(RuntimeError, match="simulated"):
        rdconfvae.embed(mol, n=5, seed=2, mmff=True, clear_confs=False)
    assert _same(before, _snapshot(mol))
    # the drop-in returns an empty list on embedding failure, molecule unchanged
    assert rdconfvae.EmbedMultipleConfs(mol, 5, timeout=1e-9, clearConfs=False) == []
    assert _same(before, _snapshot(mol))


def test_conformers_whose_stereo_mmff_changed_are_dropped():
    mol = _mol("C[C@H](N)C(=O)O")  # L-alanine
    heavy, _ = fz.heavy_atom_mol(Chem.RemoveHs(mol))
    frags = split_fragments(heavy)
    rdconfvae.embed(mol, n=4, seed=0, mmff=True)
    xyz = np.stack([c.GetPositions() for c in mol.GetConformers()])
    heavy_xyz = xyz[:, [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() > 1]]
    assert not declared_stereo_broken(frags, heavy_xyz).any()
    mirrored = heavy_xyz * np.array([-1.0, 1.0, 1.0])
    assert declared_stereo_broken(frags, mirrored).all()


def test_a_conformer_mmff_inverted_is_replaced_by_a_new_sample(monkeypatch):
    """MMFF that inverts L-alanine's centre in the first conformer of its first call: the
    engine must drop that conformer and sample a replacement (the resample loop), so n
    stereo-correct conformers come back and MMFF ran again for the replacements."""
    calls = []
    real = engine.mmff_minimize

    def inverting(mol, *args, **kwargs):
        out = real(mol, *args, **kwargs)
        if not calls:
            conf = next(iter(mol.GetConformers()))
            conf.SetPositions(conf.GetPositions() * np.array([-1.0, 1.0, 1.0]))
        calls.append(mol.GetNumConformers())
        return out

    monkeypatch.setattr(engine, "mmff_minimize", inverting)
    mol = _mol("C[C@H](N)C(=O)O")
    assert rdconfvae.embed(mol, n=4, seed=0, mmff=True) == [0, 1, 2, 3]
    assert len(calls) >= 2  # a second round was sampled and minimised
    assert all(conformer_stereo_matches(mol, c.GetId()) for c in mol.GetConformers())
