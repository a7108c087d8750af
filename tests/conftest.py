"""Shared fixtures: the vendored held-out CCD poses (any clone), the project's shared
benchmark data (only for the few tests about that data: marked ``shared_data``, skipped
in a clone without ``../shared``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from rdkit import Chem

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
#: 24 held-out CCD validation poses with hydrogens (tests/data/README.md says how chosen)
CCD_VAL_POSES = Path(__file__).resolve().parent / "data" / "ccd_val_poses.sdf"

collect_ignore = ["data"]  # the selection script there is not a test module


def pytest_collection_modifyitems(config, items):
    if SHARED.is_dir():
        return
    skip = pytest.mark.skip(reason=f"the project's shared data ({SHARED}) is absent")
    for item in items:
        if "shared_data" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def ccd_val_poses() -> list[Chem.Mol]:
    """The vendored held-out CCD validation poses, hydrogens removed."""
    mols = [m for m in Chem.SDMolSupplier(str(CCD_VAL_POSES), removeHs=False) if m is not None]
    assert len(mols) == 24
    return [Chem.RemoveAllHs(m) for m in mols]
