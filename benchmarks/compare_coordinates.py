"""Whether two versions of the package give the same coordinates for the same seed.

    python benchmarks/compare_coordinates.py dump OUT.npz [--limit 15] [-n 10] [--seed 3]
    python benchmarks/compare_coordinates.py compare A.npz B.npz

``dump`` embeds the first ``--limit`` ligands of examples/library_200.smi with the
installed (or ``PYTHONPATH``-first) rdconfvae, default output and raw output
(``polishIters=0``), and stores the coordinates; ``compare`` counts the conformers whose
coordinates are identical (to 1e-6 A) and prints the largest coordinate difference of the
others. To compare with an older commit: ``git archive <commit> rdconfvae | tar -x -C
/tmp/old`` and run ``dump`` with ``PYTHONPATH=/tmp/old``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def _dump(out: str, smiles: str, limit: int, n: int, seed: int) -> None:
    import torch
    from rdkit import Chem

    import rdconfvae

    torch.set_num_threads(1)
    rows = [r.split() for r in Path(smiles).read_text().splitlines()]
    rows = [r for r in rows if r and not r[0].startswith("#")][:limit]
    arrays = {}
    for label, polish in (("default", None), ("raw", 0)):
        params = rdconfvae.EmbedParameters()
        params.randomSeed = seed
        if polish is not None:
            params.polishIters = polish
        for smi, name in rows:
            mol = Chem.MolFromSmiles(smi)
            rdconfvae.EmbedMultipleConfs(mol, n, params)
            arrays[f"{label}/{name}"] = np.stack([c.GetPositions() for c in mol.GetConformers()])
    np.savez(out, **arrays)


def _compare(a_path: str, b_path: str) -> None:
    a, b = np.load(a_path), np.load(b_path)
    for label in ("default", "raw"):
        same = total = 0
        worst = []
        for key in a.files:
            if not key.startswith(label + "/"):
                continue
            diff = np.abs(a[key] - b[key]).max(axis=(1, 2))
            same += int((diff < 1e-6).sum())
            total += len(diff)
            worst += list(diff[diff >= 1e-6])
        tail = (
            f"; the others differ by up to median {np.median(worst):.3f} A, max {max(worst):.3f} A"
            if worst
            else ""
        )
        print(f"{label}: {same} of {total} conformers identical{tail}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump")
    d.add_argument("out")
    d.add_argument("--smiles", default="examples/library_200.smi")
    d.add_argument("--limit", type=int, default=15)
    d.add_argument("-n", type=int, default=10)
    d.add_argument("--seed", type=int, default=3)
    c = sub.add_parser("compare")
    c.add_argument("a")
    c.add_argument("b")
    args = ap.parse_args(argv)
    if args.cmd == "dump":
        _dump(args.out, args.smiles, args.limit, args.n, args.seed)
    else:
        _compare(args.a, args.b)
    return 0


if __name__ == "__main__":
    sys.exit(main())
