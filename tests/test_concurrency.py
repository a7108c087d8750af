"""embed from several Python threads at once (issue 21, item 5): same coordinates, no deadlock."""

from __future__ import annotations

import threading

import numpy as np
from rdkit import Chem

import rdconfvae

SMILES = [
    "CC(=O)Nc1ccc(O)cc1",
    "CCOC(=O)c1ccc(N)cc1",
    "OC(=O)c1ccccc1OC(C)=O",
    "CN1CCN(C(=O)c2ccco2)CC1",
]


def _coords(smiles: str) -> np.ndarray:
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    rdconfvae.embed(mol, n=4, seed=7)
    return np.stack([c.GetPositions() for c in mol.GetConformers()])


def test_embed_from_four_threads_gives_the_serial_coordinates():
    serial = [_coords(s) for s in SMILES]
    results: list[np.ndarray | None] = [None] * len(SMILES)
    failures: list[BaseException] = []
    barrier = threading.Barrier(len(SMILES))

    def run(k: int) -> None:
        try:
            barrier.wait(timeout=60)  # all four embed at the same moment
            results[k] = _coords(SMILES[k])
        except BaseException as exc:  # noqa: BLE001 -- reported below
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(k,), daemon=True) for k in range(len(SMILES))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "embed deadlocked across threads"
    assert not failures, failures
    for smi, want, got in zip(SMILES, serial, results, strict=True):
        # the same arithmetic on the same data: equal to float rounding
        assert got is not None and np.allclose(got, want, atol=1e-4), smi
