"""``python -m rdconfvae.bench TASK ...``: options, defaults and the run of one task."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rdkit import RDLogger

from rdconfvae.bench.methods import (
    BASE_METHODS,
    DEFAULT_METHODS,
    parse_methods,
    rdconfvae_weights,
    uses_rdconfvae,
)
from rdconfvae.bench.plots import write_plots
from rdconfvae.bench.records import load_records, select_records
from rdconfvae.bench.report import cpu_model, package_versions, print_summary, write_report
from rdconfvae.bench.run import run_benchmark
from rdconfvae.bench.shards import merge_results, parse_shard, take_shard
from rdconfvae.bench.speed import DEFAULT_CLI_INPUT, PARTS, check_options, run_speed
from rdconfvae.bench.summary import jsonable, summarize
from rdconfvae.bench.threads import run_threads
from rdconfvae.evaluation import metrics

log = logging.getLogger(__name__)

TASKS = ("platinum", "ensembles", "validity", "threads", "speed")


_SHARED = Path("..") / "shared" / "data"
DEFAULT_DATA = {
    "platinum": _SHARED / "platinum" / "platinum_public.sdf.gz",
    "ensembles": _SHARED / "dft_ensembles" / "dft_public.sdf.gz",
    "validity": _SHARED / "platinum" / "platinum_public.sdf.gz",
    "threads": _SHARED / "platinum" / "platinum_public.sdf.gz",
    "speed": DEFAULT_CLI_INPUT,
}
#: Default conformers per molecule (ensembles: None = twice the reference count).
DEFAULT_N = {"platinum": 50, "ensembles": None, "validity": 10, "threads": 50, "speed": None}
QUICK_LIMIT, QUICK_N = 30, 10


def build_parser(prog: str = "python -m rdconfvae.bench") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Benchmark conformer generators side by side (poses, ensembles, validity).",
    )
    p.add_argument("task", choices=TASKS)
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        help="SDF(.gz) with reference conformers (default: ../shared/data/...); "
        f"speed: the CLI's input (default: {DEFAULT_CLI_INPUT})",
    )
    p.add_argument(
        "--methods",
        default=DEFAULT_METHODS,
        help=f"comma-separated, from {', '.join(BASE_METHODS)}, each optionally "
        f"+mmff (eps = 4r) or +mmffgas (eps = 1) (default: {DEFAULT_METHODS})",
    )
    p.add_argument(
        "-n",
        type=int,
        default=None,
        help="conformers per molecule (default: 50 platinum, 10 validity, "
        "2 x the reference count for ensembles)",
    )
    p.add_argument("--limit", type=int, default=None, help="at most this many molecules")
    p.add_argument(
        "--sample",
        choices=("first", "stratified"),
        default="first",
        help="which molecules --limit keeps (default: first in file order)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_LIMIT} molecules (stratified unless --sample given), "
        f"n={QUICK_N} (ensembles keep 2 x reference)",
    )
    p.add_argument("--seed", type=int, default=42, help="random seed of the generators")
    p.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="per molecule and generator, seconds (0 = none; default 300)",
    )
    p.add_argument("--delta", type=float, default=1.25, help="COV threshold, A (ensembles)")
    p.add_argument(
        "--strict",
        action="store_true",
        help="COV with < delta instead of <= (torsional diffusion: --delta 0.75)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: benchmarks/results/<task>-<date>)",
    )
    p.add_argument(
        "--eval-threads",
        type=int,
        default=1,
        help="validity: threads of PoseBusters' energy-ratio reference ensembles "
        "(0 = all cores; the results do not depend on it; default 1)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--threads", type=int, default=2, help="threads task: thread count compared with 1"
    )
    p.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"speed task: comma-separated, from {', '.join(PARTS)} (default: all)",
    )
    p.add_argument(
        "--repeats", type=int, default=3, help="speed task: repeats of each timing (median)"
    )
    p.add_argument(
        "--shard",
        default=None,
        metavar="I/K",
        help="platinum, ensembles, validity: run only every K-th selected molecule from the "
        "I-th (0-based), e.g. K processes side by side; join them with --merge",
    )
    p.add_argument(
        "--merge",
        default=None,
        metavar="DIR,DIR,...",
        help="join the results of the shards 0/K .. K-1/K of one run into one report in "
        "--out (runs nothing)",
    )
    return p


def write_outputs(out: Path, task: str, rows: list[dict], methods: list[str], info: dict) -> None:
    """``report.md``, ``results.json`` and the plots of a run (or of joined shards)."""
    summary = summarize(task, rows, methods)
    t_plots = time.perf_counter()
    info["plots"] = write_plots(out, task, rows, methods)
    if "shards" not in info:  # a run's wall time includes its plots; joined shards keep theirs
        info["wall_s"] = (info["wall_s"] or 0.0) + time.perf_counter() - t_plots
    write_report(out / "report.md", task, summary, info)
    with open(out / "results.json", "w", encoding="utf-8") as fh:
        json.dump(jsonable({"info": info, "summary": summary, "molecules": rows}), fh, indent=1)
    print_summary(task, summary, out)


def _merge(args: argparse.Namespace, parser: argparse.ArgumentParser, argv: list[str]) -> int:
    dirs = [Path(x.strip()) for x in args.merge.split(",") if x.strip()]
    if args.out is None:
        parser.error("--merge needs --out")
    try:
        info, rows = merge_results(dirs)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if info["task"] != args.task:
        print(
            f"error: --merge: the shards are a {info['task']} run, not {args.task}", file=sys.stderr
        )
        return 2
    info["merge_command"] = "python -m rdconfvae.bench " + shlex.join(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    write_outputs(args.out, args.task, rows, info["methods"], info)
    return 0


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m rdconfvae.bench") -> int:
    """Command-line entry point; returns the exit status (``prog``: the name in --help)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    RDLogger.DisableLog("rdApp.*")  # type: ignore[attr-defined]  # absent from rdkit stubs
    logging.getLogger("rdconfvae.forcefield.mmff").setLevel(logging.ERROR)  # counted in the report
    logging.getLogger("posebusters").setLevel(logging.ERROR)
    if args.merge is not None:
        return _merge(args, parser, argv)
    shard = None
    if args.shard is not None:
        if args.task in ("threads", "speed"):
            parser.error(f"--shard: the {args.task} task cannot be split")
        try:
            shard = parse_shard(args.shard)
        except ValueError as exc:
            parser.error(str(exc))
    try:
        methods = parse_methods(args.methods)
    except ValueError as exc:
        parser.error(str(exc))
    if args.timeout is not None and args.timeout <= 0:
        args.timeout = None
    sample_given = "--sample" in argv
    if args.quick:
        args.limit = QUICK_LIMIT if args.limit is None else args.limit
        if args.n is None and args.task != "ensembles":
            args.n = QUICK_N
        if not sample_given:
            args.sample = "stratified"
    if args.n is None:
        args.n = DEFAULT_N[args.task]
    if args.n is not None and args.n < 1:
        parser.error("-n must be >= 1")
    if args.task == "validity":
        try:
            metrics.require_posebusters()
        except ImportError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    data = args.data or DEFAULT_DATA[args.task]
    parts = [x.strip() for x in args.parts.split(",") if x.strip()]
    if args.task == "speed":
        try:
            check_options(parts, args.repeats)
        except ValueError as exc:
            parser.error(str(exc))
    if (args.task != "speed" or "cli" in parts) and not Path(data).exists():
        print(f"error: data file not found: {data} (pass --data)", file=sys.stderr)
        return 2
    out = args.out or Path("benchmarks") / "results" / f"{args.task}-{_dt.date.today():%Y-%m-%d}"
    out.mkdir(parents=True, exist_ok=True)

    if args.task == "threads":
        return run_threads(data, out, args, argv)
    if args.task == "speed":
        return run_speed(out, parts, args.seed, args.repeats, Path(data), args.limit, argv)
    t_start = time.perf_counter()
    records = load_records(data, args.task)
    selected = select_records(records, args.limit, args.sample)
    todo = take_shard(selected, *shard) if shard else selected
    log.info("%d of %d molecules, methods %s", len(todo), len(records), ", ".join(methods))
    rows, meta = run_benchmark(args.task, todo, methods, args, progress=not args.no_progress)
    info = {
        "command": "python -m rdconfvae.bench " + shlex.join(argv),
        "task": args.task,
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "n_cpus": os.cpu_count(),
        "data": str(data),
        "n_records": len(records),
        "n_selected": len(selected),
        "sample": args.sample,
        "limit": args.limit,
        "n": args.n,
        "n_desc": str(args.n) if args.n is not None else "2 x the reference count",
        "seed": args.seed,
        "timeout": args.timeout,
        "delta": args.delta,
        "strict": args.strict,
        "methods": methods,
        "versions": package_versions(),
        "conforge_settings": meta["conforge_settings"],
        "energy_references": meta.get("energy_references"),
        "eval_threads": args.eval_threads,
        "weights": rdconfvae_weights() if uses_rdconfvae(methods) else None,
        "shard": args.shard if shard else None,
        "wall_s": time.perf_counter() - t_start,
    }
    write_outputs(out, args.task, rows, methods, info)
    return 0
