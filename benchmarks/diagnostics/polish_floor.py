"""How fast can the 80-step MMFF94s polish get while RDKit evaluates the force field? (issue 19)

    python benchmarks/diagnostics/polish_floor.py [--limit 20] [-n 50] [--iters 80]

For the first ``--limit`` CCD validation ligands of examples/library_200.smi: the model's raw
conformers with hydrogens (``polishIters=0`` on ``Chem.AddHs(mol)``), then, from the same
start and with the same force fields (MMFF94s, eps = 4r, no electrostatics, van der Waals
pairs within the polish's cutoff in each conformer):

- ``rdkit``: :func:`rdconfvae.forcefield.mmff.mmff_polish` (RDKit's BFGS, one conformer at a
  time: what the default output runs);
- ``lbfgs``: the package's batched L-BFGS (:func:`rdconfvae.geometry.minimizers.lbfgs`,
  per-conformer history and line search) over all conformers of a molecule, each energy and
  gradient from RDKit's ``ForceField.CalcEnergy`` / ``CalcGrad``; the time spent inside those
  two calls is reported apart: no optimiser that asks RDKit for them can go under it.

CPU time, one thread; prints a Markdown table. No benchmark molecule is used.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smiles", default="examples/library_200.smi")
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("-n", type=int, default=50)
    ap.add_argument("--iters", type=int, default=80)
    args = ap.parse_args(argv)

    import torch
    from rdkit import Chem
    from rdkit.Chem import rdForceFieldHelpers

    import rdconfvae
    from rdconfvae.forcefield import mmff
    from rdconfvae.geometry.minimizers import lbfgs

    torch.set_num_threads(1)
    in_rdkit = 0.0

    def force_fields(mol: Chem.Mol) -> list:
        props = rdForceFieldHelpers.MMFFGetMoleculeProperties(mol, mmffVariant="MMFF94s")
        props.SetMMFFDielectricModel(2)  # distance-dependent, as the polish
        props.SetMMFFDielectricConstant(4.0)
        props.SetMMFFEleTerm(False)
        return [
            rdForceFieldHelpers.MMFFGetMoleculeForceField(
                mol, props, nonBondedThresh=mmff.POLISH_NONBONDED_CUTOFF, confId=c.GetId()
            )
            for c in mol.GetConformers()
        ]

    def polish_lbfgs(mol: Chem.Mol) -> None:
        nonlocal in_rdkit
        confs = list(mol.GetConformers())
        ffs = force_fields(mol)
        x = torch.tensor(np.stack([c.GetPositions() for c in confs]).reshape(len(confs), -1))

        def fun(z: torch.Tensor, rows: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
            nonlocal in_rdkit
            idx = range(len(ffs)) if rows is None else rows.tolist()
            pos = z.numpy().tolist()
            t = time.process_time()
            e = np.array([ffs[i].CalcEnergy(p) for i, p in zip(idx, pos, strict=True)])
            g = np.array([ffs[i].CalcGrad(p) for i, p in zip(idx, pos, strict=True)])
            in_rdkit += time.process_time() - t
            return torch.from_numpy(e), torch.from_numpy(g)

        out = lbfgs(fun, x, args.iters).view(len(confs), -1, 3).numpy()
        for conf, xyz in zip(confs, out, strict=True):
            conf.SetPositions(xyz)

    params = rdconfvae.EmbedParameters()
    params.randomSeed = 1
    params.polishIters = 0
    rows = [ln.split() for ln in Path(args.smiles).read_text().splitlines()]
    smiles = [r[0] for r in rows if r and not r[0].startswith("#")][: args.limit]
    starts = []
    for s in smiles:
        full = Chem.AddHs(Chem.MolFromSmiles(s))
        rdconfvae.EmbedMultipleConfs(full, args.n, params)
        if mmff.mmff_can_type(full):
            starts.append(full)
    confs = sum(m.GetNumConformers() for m in starts)
    atoms = np.mean([m.GetNumAtoms() for m in starts])

    t = time.process_time()
    for m in starts:
        mmff.mmff_polish(Chem.Mol(m), args.iters)
    t_rdkit = time.process_time() - t
    t = time.process_time()
    for m in starts:
        force_fields(m)
    t_build = time.process_time() - t
    t = time.process_time()
    for m in starts:
        polish_lbfgs(Chem.Mol(m))
    t_lbfgs = time.process_time() - t

    def ms(v: float) -> str:
        return f"{1e3 * v / confs:.2f}"

    print(
        f"# {confs} conformers of {len(starts)} molecules (mean {atoms:.0f} atoms with H), "
        f"{args.iters} steps, one thread\n"
    )
    print("| polish | CPU ms / conformer |")
    print("|---|---:|")
    print(f"| RDKit BFGS (`mmff_polish`, the default) | {ms(t_rdkit)} |")
    print(f"| batched L-BFGS, RDKit energies and gradients | {ms(t_lbfgs)} |")
    print(f"| of which inside `CalcEnergy` + `CalcGrad` | {ms(in_rdkit)} |")
    print(f"| building the force fields (once per conformer) | {ms(t_build)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
