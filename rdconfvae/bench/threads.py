"""The ``threads`` task: ``rdconfvae.embed`` with 1 and K threads, wall time and identity."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import rdconfvae
from rdconfvae.bench.methods import short_error
from rdconfvae.bench.records import input_mol, load_records, select_records
from rdconfvae.bench.report import cpu_model
from rdconfvae.bench.summary import jsonable, median


def run_threads(data: Path, out: Path, args: argparse.Namespace, argv: Sequence[str]) -> int:
    """``threads`` task: wall time of ``rdconfvae.embed`` with 1 and ``--threads`` threads on
    the same molecules and seed, interleaved, plus a check that the coordinates are identical."""
    records = select_records(load_records(data, "platinum"), args.limit, args.sample)
    counts = (1, args.threads)
    rdconfvae.embed(input_mol(records[0]), n=2, seed=args.seed)  # load the model untimed
    rows: list[dict[str, Any]] = []
    for rec in records:
        row = {"name": rec.name, "n_heavy": rec.n_heavy}
        coords = {}
        for k in counts:
            mol = input_mol(rec)
            t0 = time.perf_counter()
            try:
                rdconfvae.embed(mol, n=args.n, seed=args.seed, num_threads=k)
            except Exception as exc:  # a failure is a row, not the end of the run
                row[f"error_{k}"] = short_error(exc)
                continue
            row[f"wall_{k}_s"] = time.perf_counter() - t0
            coords[k] = np.stack([c.GetPositions() for c in mol.GetConformers()])
        if len(coords) == 2:
            row["identical"] = bool(np.array_equal(coords[1], coords[args.threads]))
        rows.append(row)
    ok = [r for r in rows if "identical" in r]
    t1 = sum(r["wall_1_s"] for r in ok)
    tk = sum(r[f"wall_{args.threads}_s"] for r in ok)
    speedups = [r["wall_1_s"] / r[f"wall_{args.threads}_s"] for r in ok]
    summary = {
        "molecules": len(rows),
        "ok": len(ok),
        "identical_coordinates": sum(r["identical"] for r in ok),
        "total_wall_1_s": t1,
        f"total_wall_{args.threads}_s": tk,
        "speedup_total": t1 / tk if tk else None,
        "speedup_median": median(speedups),
        "ms_per_conf_1_median": median([1e3 * r["wall_1_s"] / args.n for r in ok]),
        f"ms_per_conf_{args.threads}_median": median(
            [1e3 * r[f"wall_{args.threads}_s"] / args.n for r in ok]
        ),
    }
    command = "python -m rdconfvae.bench " + shlex.join(argv)
    lines = [
        f"# rdconfvae.embed: 1 thread vs {args.threads} threads",
        "",
        f"Command: `{command}`  ",
        f"Machine: {cpu_model()}, {os.cpu_count()} CPUs; n = {args.n}, seed {args.seed}, "
        f"{len(rows)} Platinum molecules (graph only), wall time per call, interleaved.",
        "",
        "| quantity | value |",
        "|---|---|",
    ]
    lines += [
        f"| {k} | {v:.3f} |" if isinstance(v, float) else f"| {k} | {v} |"
        for k, v in summary.items()
    ]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    with open(out / "results.json", "w", encoding="utf-8") as fh:
        json.dump(
            jsonable({"command": command, "summary": summary, "molecules": rows}), fh, indent=1
        )
    print("\n".join(lines))
    return 0
