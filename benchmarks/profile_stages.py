"""Where the time of ``rdconfvae.embed`` goes, stage by stage (one process, one thread).

    python benchmarks/profile_stages.py [--limit 20] [-n 50] [--polish rdkit|torch|none]

Embeds the first ``--limit`` molecules of examples/library_200.smi (CCD validation
ligands, never trained on) with ``n`` conformers each under cProfile and prints, per
stage, the CPU time per conformer (cumulative time of the stage's function; stages can
nest, e.g. the stereo repair is inside sampling, so they do not add up to the total).
``--polish torch`` swaps the RDKit polish for :func:`rdconfvae.forcefield.mmff.mmff_polish_torch`;
``--polish none`` is the raw output (``polishIters=0``). The first embed (torch import,
model load) is timed apart, in wall seconds.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

#: stage -> (module file suffix, function name); cumulative time of that function
STAGES = {
    "embed (total)": ("rdconfvae/api.py", "embed"),
    "sampling (model + solver + stereo repair)": (
        "rdconfvae/embedding/sampling.py",
        "sample_chunk",
    ),
    "  model: sample_distances": ("rdconfvae/model/network.py", "sample_distances"),
    "  solver.solve (MDS + SMACOF)": ("rdconfvae/geometry/solver.py", "solve"),
    "  solver.polish (stress L-BFGS)": ("rdconfvae/geometry/solver.py", "polish"),
    "  solver.stereo_penalty_refine": ("rdconfvae/geometry/solver.py", "stereo_penalty_refine"),
    "hydrogens + planar groups (geometry)": ("rdconfvae/geometry/conformers.py", None),
    "MMFF polish (RDKit)": ("rdconfvae/forcefield/mmff.py", "mmff_polish"),
    "MMFF polish (torch)": ("rdconfvae/forcefield/mmff.py", "mmff_polish_torch"),
    "  torch: term lists from RDKit": ("rdconfvae/forcefield/mmff.py", "mmff_terms"),
    "  torch: batched L-BFGS": ("rdconfvae/forcefield/torch_mmff.py", "minimize"),
    "geometry gate: bounds set-up": ("rdconfvae/geometry/bounds.py", "for_mol"),
    "geometry gate: check": ("rdconfvae/geometry/bounds.py", "failures"),
    "geometry gate: repair": ("rdconfvae/geometry/bounds.py", "bounds_refine"),
    "  repair + second polish (default output)": (
        "rdconfvae/embedding/engine.py",
        "_repair_and_polish",
    ),
    "stereo check after the polish": ("rdconfvae/geometry/stereo.py", "declared_stereo_broken"),
    "attach to the molecule": ("rdconfvae/embedding/attach.py", "attach"),
}


def _stage_times(stats: pstats.Stats) -> dict[str, float]:
    out = dict.fromkeys(STAGES, 0.0)
    for (path, _line, func), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        for stage, (suffix, name) in STAGES.items():
            if name is not None and path.replace("\\", "/").endswith(suffix) and func == name:
                out[stage] += ct
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smiles", default="examples/library_200.smi")
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("-n", type=int, default=50)
    ap.add_argument("--polish", choices=("rdkit", "torch", "none"), default="rdkit")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    import torch
    from rdkit import Chem

    import rdconfvae
    from rdconfvae.embedding import engine
    from rdconfvae.forcefield import mmff as refine

    torch.set_num_threads(1)
    first = Chem.MolFromSmiles("CC(=O)Nc1ccc(O)cc1")
    rdconfvae.embed(first, n=10, seed=1)
    first_wall = time.perf_counter() - t0

    if args.polish == "torch":
        engine.mmff_polish = refine.mmff_polish_torch  # the engine's call site
    params = rdconfvae.EmbedParameters()
    params.randomSeed = 1
    if args.polish == "none":
        params.polishIters = 0
    lines = [ln.split() for ln in Path(args.smiles).read_text().splitlines()]
    mols = [Chem.MolFromSmiles(p[0]) for p in lines if p and not p[0].startswith("#")]
    mols = [m for m in mols if m is not None][: args.limit]

    prof = cProfile.Profile(time.process_time)
    cpu = time.process_time()
    prof.enable()
    confs = 0
    for mol in mols:
        confs += len(rdconfvae.embed(mol, n=args.n, params=params))
    prof.disable()
    cpu = time.process_time() - cpu
    times = _stage_times(pstats.Stats(prof))
    geometry = sum(
        ct
        for (path, _l, func), (_c, _n, _t, ct, callers) in pstats.Stats(prof).stats.items()  # type: ignore[attr-defined]
        if path.endswith("rdconfvae/geometry/conformers.py")
        and not any(c[0].endswith("rdconfvae/geometry/conformers.py") for c in callers)
    )
    times["hydrogens + planar groups (geometry)"] = geometry

    print(
        f"# profile_stages: {len(mols)} molecules of {args.smiles}, n = {args.n}, "
        f"polish = {args.polish}"
    )
    print(
        f"# torch {torch.__version__}, one thread; first embed(n=10) in a fresh process, "
        f"torch import and model load included: {first_wall:.2f} s wall"
    )
    print(f"# {confs} conformers, {cpu:.2f} s CPU (profiled: cProfile adds overhead)\n")
    print("| stage | ms CPU per conformer | share of embed |")
    print("|---|---:|---:|")
    total = times["embed (total)"] or 1.0
    for stage, t in times.items():
        if t == 0.0:
            continue
        print(f"| {stage} | {1e3 * t / max(confs, 1):.2f} | {100 * t / total:.0f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
