"""How many MMFF polish steps the default output needs (issue 19), on CCD validation molecules.

    python benchmarks/diagnostics/polish_iters.py --data DIR_OR_NPZ [--per-bin 12] [-n 50]
        [--iters 80,40,20,0,mmff] [--out benchmarks/diagnostics/polish_iters.json]

The polish (80 MMFF94s steps per conformer, RDKit) is two thirds of the default output's
CPU. This embeds held-out CCD validation molecules (the validation split minus the 400
that select training checkpoints, ``--per-bin`` per rotatable-bond bin, the ladder's
rule) with ``polishIters`` set to each value of ``--iters``, same seed, one thread, and
reports per setting: CPU per conformer, the best heavy-atom RMSD to the CCD conformation
(median, share below 1 A) and the share of conformers passing every PoseBusters molecule
check (``rdconfvae.evaluation.validity.posebusters_checks``, energy ratio included).
``0`` is the raw output, ``mmff`` the MMFF94s minimisation to convergence (``mmff=True``).
No benchmark molecule is used. ``--table`` prints the markdown of a saved run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from rdconfvae.bench import ROT_BINS  # rotatable-bond bins (inclusive), the benchmarks' own


def select(data: Path, per_bin: int, max_heavy: int = 70) -> list[tuple[str, object, int]]:
    """(code, molecule with H and its CCD conformation, rotatable bonds), ``per_bin`` per bin."""
    from rdkit import Chem
    from rdkit.Chem import rdMolDescriptors

    from rdconfvae.train import PRESETS, check_exclusions, checkpoint_selection, load_records

    preset = PRESETS["default"]
    records = load_records(data)
    check_exclusions(records, names_are_ccd_codes=True)
    val = [r for r in records if r.split == "val"]
    chosen = set(checkpoint_selection(len(val), preset))  # the trainer's, left out
    pool = [r for i, r in enumerate(val) if i not in chosen]
    filled = dict.fromkeys(ROT_BINS, 0)
    out = []
    for i in np.random.default_rng(11).permutation(len(pool)):
        if all(v >= per_bin for v in filled.values()):
            break
        mol = pool[i].mol
        heavy = Chem.RemoveHs(mol)
        n_rot = int(rdMolDescriptors.CalcNumRotatableBonds(heavy))
        key = next(b for b in ROT_BINS if b[0] <= n_rot <= b[1])
        if filled[key] >= per_bin or not 4 <= heavy.GetNumAtoms() <= max_heavy:
            continue
        filled[key] += 1
        out.append((pool[i].name, mol, n_rot))
    return out


def run(args: argparse.Namespace) -> dict:
    import torch
    from rdkit import Chem

    import rdconfvae
    from rdconfvae.evaluation.metrics import min_rmsd_to_pose
    from rdconfvae.evaluation.validity import posebusters_checks

    torch.set_num_threads(1)
    if args.cutoff is not None:  # the polish's van der Waals pair list (a module constant)
        from rdconfvae.forcefield import mmff as refine

        refine.POLISH_NONBONDED_CUTOFF = float(args.cutoff)
    if args.repair_iters is not None:  # the second polish, after the geometry repair
        from rdconfvae.embedding import engine

        engine.REPAIR_POLISH_ITERS = int(args.repair_iters)
    mols = select(Path(args.data), args.per_bin)
    iters = args.iters.split(",")
    rdconfvae.embed(Chem.MolFromSmiles("CCO"), n=2, seed=1)  # model load, not timed
    rows: dict[str, list[dict]] = {k: [] for k in iters}
    for code, ref, n_rot in mols:
        smiles = Chem.MolToSmiles(Chem.RemoveHs(ref))
        for k in iters:
            mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
            params = rdconfvae.EmbedParameters()
            params.randomSeed = args.seed
            if k == "mmff":  # minimisation to convergence (mmff=True) instead of a polish
                params.mmff = True
            else:
                params.polishIters = int(k)
            t = time.process_time()
            try:
                confs = rdconfvae.EmbedMultipleConfs(mol, args.n, params)
            except rdconfvae.RdConfVAEError:
                confs = []
            cpu = time.process_time() - t
            if not len(confs):
                rows[k].append({"code": code, "rot": n_rot, "ok": False, "cpu": cpu})
                continue
            rmsd = min_rmsd_to_pose(mol, ref)
            checks = posebusters_checks(mol)
            rows[k].append(
                {
                    "code": code,
                    "rot": n_rot,
                    "ok": True,
                    "cpu": cpu,
                    "confs": len(confs),
                    "rmsd": rmsd,
                    "pass_all": float(np.mean([c["pass_all"] for c in checks])),
                }
            )
        print(code, n_rot, {k: round(rows[k][-1].get("rmsd", -1), 3) for k in iters}, flush=True)
    return {
        "command": " ".join(sys.argv),
        "n": args.n,
        "seed": args.seed,
        "cutoff": args.cutoff,
        "repair_iters": args.repair_iters,
        "rows": rows,
    }


def table(result: dict) -> str:
    lines = [
        f"`{result['command']}`",
        "",
        "| polishIters | molecules ok | CPU ms / conformer | best RMSD median (A) | < 1 A "
        "| PoseBusters all checks (conformers) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for k, rows in result["rows"].items():
        ok = [r for r in rows if r["ok"]]
        confs = sum(r["confs"] for r in ok)
        cpu = 1e3 * sum(r["cpu"] for r in rows) / max(confs, 1)
        rmsd = np.array([r["rmsd"] for r in ok] + [np.inf] * (len(rows) - len(ok)))
        pb = sum(r["pass_all"] * r["confs"] for r in ok) / max(confs, 1)
        lines.append(
            f"| {k} | {len(ok)} / {len(rows)} | {cpu:.1f} | {np.median(rmsd):.3f} "
            f"| {100 * np.mean(rmsd < 1.0):.1f} % | {100 * pb:.1f} % |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="the CCD set (python -m rdconfvae.data ccd output)")
    ap.add_argument("--per-bin", type=int, default=12)
    ap.add_argument("-n", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--iters", default="80,40,20,0")
    ap.add_argument(
        "--cutoff",
        type=float,
        default=None,
        help="the polish's van der Waals cutoff at its start, A (default: the package's)",
    )
    ap.add_argument(
        "--repair-iters",
        type=int,
        default=None,
        help="polish steps after the geometry repair (default: the package's)",
    )
    ap.add_argument("--out", default=str(Path(__file__).with_suffix(".json")))
    ap.add_argument("--table", action="store_true", help="print the table of --out and stop")
    args = ap.parse_args(argv)
    if args.table:
        print(table(json.loads(Path(args.out).read_text())))
        return 0
    result = run(args)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
