"""Write ``ccd_val_poses.sdf``: 24 held-out CCD validation poses for the tests.

Run from the project root after building the CCD set
(``python -m rdconfvae.data ccd data_build/ccd``)::

    python tests/data/select_ccd_val.py data_build/ccd tests/data/ccd_val_poses.sdf

Selection (deterministic, no look at any model output): molecules of the ``val`` split
(never trained on) with 10-40 heavy atoms and at least one rotatable bond, not on the
evaluation exclusion list (re-checked here; the build already drops them), ordered by
sha256 of the CCD code; the first 24 are kept, in that order. Each record keeps the CCD
coordinates with hydrogens, the code as title and the ``split`` property.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from rdkit import Chem
from rdkit.Chem import rdMolDescriptors

from rdconfvae.data.ccd import load_ccd_set
from rdconfvae.data.exclusions import is_excluded

N_MOLECULES = 24


def select(ccd_dir: Path) -> list[Chem.Mol]:
    picked = []
    records = sorted(
        load_ccd_set(ccd_dir, split="val"), key=lambda r: hashlib.sha256(r.name.encode()).digest()
    )
    for rec in records:
        heavy = Chem.RemoveHs(rec.mol)
        if not 10 <= heavy.GetNumAtoms() <= 40:
            continue
        if rdMolDescriptors.CalcNumRotatableBonds(heavy) < 1 or is_excluded(heavy):
            continue
        mol = Chem.Mol(rec.mol)
        mol.SetProp("_Name", rec.name)
        mol.SetProp("split", rec.split)
        picked.append(mol)
        if len(picked) == N_MOLECULES:
            break
    return picked


def main(argv: list[str]) -> int:
    ccd_dir, out = Path(argv[0]), Path(argv[1])
    manifest = json.loads((ccd_dir / "manifest.json").read_text())
    mols = select(ccd_dir)
    with Chem.SDWriter(str(out)) as writer:
        for mol in mols:
            writer.write(mol)
    print(f"{len(mols)} molecules from {manifest['output']['sha256']} -> {out}")
    print(" ".join(m.GetProp("_Name") for m in mols))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
