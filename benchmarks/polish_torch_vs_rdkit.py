"""The torch MMFF94s polish against RDKit's on the same raw conformers (CPU time, energies, poses).

    python benchmarks/polish_torch_vs_rdkit.py [--limit 20] [-n 50] [--iters 80]

For the first ``--limit`` CCD validation ligands of examples/library_200.smi: the model's raw
conformers with hydrogens (``polishIters=0`` on ``Chem.AddHs(mol)``), then
:func:`rdconfvae.forcefield.mmff.mmff_polish` (RDKit, one conformer at a time) and
:func:`rdconfvae.forcefield.mmff.mmff_polish_torch` (all conformers at once) from the same start.
Prints CPU time of each, the polish energy of both results (the same term set, from
:mod:`rdconfvae.forcefield.torch_mmff`) and the heavy-atom RMSD between the two polished conformers.
"""

from __future__ import annotations

import argparse
import sys
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
    from rdkit.Chem import rdMolAlign

    import rdconfvae
    from rdconfvae.forcefield import mmff as refine
    from rdconfvae.forcefield import torch_mmff as forcefield

    torch.set_num_threads(1)
    params = rdconfvae.EmbedParameters()
    params.randomSeed = 1
    params.polishIters = 0
    rows = [ln.split() for ln in Path(args.smiles).read_text().splitlines()]
    mols = [Chem.MolFromSmiles(r[0]) for r in rows if r and not r[0].startswith("#")]
    t_rdkit = t_torch = 0.0
    d_energy, rmsd, confs = [], [], 0
    for mol in [m for m in mols if m is not None][: args.limit]:
        full = Chem.AddHs(mol)
        rdconfvae.EmbedMultipleConfs(full, args.n, params)
        if not refine.mmff_can_type(full):
            continue
        ours, theirs = Chem.Mol(full), Chem.Mol(full)
        t = time.process_time()
        refine.mmff_polish(theirs, args.iters)
        t_rdkit += time.process_time() - t
        t = time.process_time()
        refine.mmff_polish_torch(ours, args.iters)
        t_torch += time.process_time() - t
        props = refine._properties(full, "MMFF94s", "distance", 4.0)
        props.SetMMFFEleTerm(False)
        start = np.stack([c.GetPositions() for c in full.GetConformers()])
        terms = refine.mmff_terms(full, props, start)

        def energies(m: Chem.Mol, terms: forcefield.MMFFTerms = terms) -> np.ndarray:
            xyz = np.stack([c.GetPositions() for c in m.GetConformers()])
            return forcefield.energy(torch.from_numpy(xyz), terms).numpy()

        d_energy += list(energies(ours) - energies(theirs))
        heavy_a, heavy_b = Chem.RemoveHs(ours), Chem.RemoveHs(theirs)
        for ca, cb in zip(heavy_a.GetConformers(), heavy_b.GetConformers(), strict=True):
            rmsd.append(rdMolAlign.AlignMol(heavy_a, heavy_b, prbCid=ca.GetId(), refCid=cb.GetId()))
        confs += full.GetNumConformers()
    d_energy, rmsd = np.array(d_energy), np.array(rmsd)
    print(f"# {confs} conformers of {args.limit} molecules, {args.iters} polish steps, one thread")
    print("| polish | CPU ms / conformer |")
    print("|---|---:|")
    print(f"| RDKit (mmff_polish) | {1e3 * t_rdkit / confs:.2f} |")
    print(f"| torch (mmff_polish_torch) | {1e3 * t_torch / confs:.2f} |")
    print(
        f"\nenergy torch - RDKit (kcal/mol, same term set): median {np.median(d_energy):.2f}, "
        f"10th / 90th percentile {np.percentile(d_energy, 10):.2f} / "
        f"{np.percentile(d_energy, 90):.2f}"
    )
    print(
        f"heavy-atom RMSD between the two polished conformers (A): median {np.median(rmsd):.3f}, "
        f"90th percentile {np.percentile(rmsd, 90):.3f}, max {rmsd.max():.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
