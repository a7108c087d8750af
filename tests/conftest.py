"""Shared fixtures: paths to the project's shared data, small molecules."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from rdkit import Chem

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
PLATINUM = SHARED / "data" / "platinum" / "platinum_public.sdf.gz"


@pytest.fixture(scope="session")
def platinum_sample() -> list[Chem.Mol]:
    """Every 50th Platinum public pose (20 molecules), hydrogens removed. Evaluation data:
    used here only to test the solver and metrics, never to train."""
    if not PLATINUM.exists():
        pytest.skip(f"{PLATINUM} not available")
    mols = []
    with gzip.open(PLATINUM) as fh:
        for i, mol in enumerate(Chem.ForwardSDMolSupplier(fh, removeHs=False)):
            if mol is not None and i % 50 == 0:
                mols.append(Chem.RemoveAllHs(mol))
            if len(mols) == 20:
                break
    return mols
