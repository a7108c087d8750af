"""Dask throughput: molecules per second in one process, on a ``LocalCluster`` per worker count
and through the CLI (``python -m rdconfvae.integrations.dask bench``)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rdconfvae.batch.unit import EmbedOptions, EmbedResult, embed_one
from rdconfvae.integrations.dask import embed_bag, prepare_worker, split_smiles

__all__ = ["bench_throughput", "read_pairs", "report", "run_command"]


def same_coordinates(a: Sequence[EmbedResult], b: Sequence[EmbedResult]) -> bool:
    import numpy as np

    if len(a) != len(b):
        return False
    for ra, rb in zip(a, b, strict=True):
        if (ra.index, ra.status, ra.n_conformers) != (rb.index, rb.status, rb.n_conformers):
            return False
        if ra.ok:
            ma, mb = ra.mol, rb.mol
            if ma is None or mb is None:
                return False
            for ca, cb in zip(ma.GetConformers(), mb.GetConformers(), strict=True):
                if not np.array_equal(ca.GetPositions(), cb.GetPositions()):
                    return False
    return True


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far (run on workers by the benchmark)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timing_row(
    mode: str, workers: int, wall: float, cpu: float, n_mols: int, **extra: Any
) -> dict[str, Any]:
    """One row of :func:`bench_throughput`: wall seconds, molecules per second and CPU
    seconds per molecule for ``n_mols`` molecules, plus the mode's own ``extra`` fields."""
    return {
        "mode": mode,
        "workers": workers,
        "seconds": wall,
        "mol_per_s": n_mols / wall,
        "cpu_s_per_mol": cpu / n_mols,
        **extra,
    }


def bench_throughput(
    molecules: Sequence[tuple[str, str]],
    n: int = 10,
    workers: Sequence[int] = (1, 2),
    *,
    partitions_per_worker: int = 4,
    cli: bool = True,
    **embed_options: Any,
) -> dict[str, Any]:
    """Molecules per second: one process, a ``LocalCluster`` per worker count, the CLI.

    Args:
        molecules: ``(name, SMILES)`` pairs.
        n: conformers per molecule.
        workers: worker counts to try (one thread each, separate processes).
        partitions_per_worker: bag partitions per worker.
        cli: also time the single-process CLI, ``python -m rdconfvae embed --workers 1``,
            on the same molecules (wall time of the whole command: interpreter start and
            model load included).
        **embed_options: as for :func:`embed_bag`.

    Model loading and cluster start-up are timed apart (``load_s``, ``startup_s``), not
    in the rates. ``identical`` says whether a run reproduced the single-process
    coordinates exactly.
    """
    import dask.bag as dbag
    from distributed import Client, LocalCluster

    from rdconfvae.model.store import load_model

    options = EmbedOptions(n=n, **embed_options)
    mols = list(molecules)
    rows: list[dict[str, Any]] = []
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None

    t0 = time.perf_counter()
    load_model()
    load_s = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    reference = [embed_one(smi, name, i, options) for i, (name, smi) in enumerate(mols)]
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    rows.append(timing_row("in-process embed_one loop", 1, wall, cpu, len(mols), load_s=load_s))

    if cli:
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "in.smi"
            src.write_text("".join(f"{smi} {name}\n" for name, smi in mols))
            cmd = [
                sys.executable,
                "-m",
                "rdconfvae",
                "embed",
                str(src),
                str(Path(tmp) / "o.sdf"),
                "-n",
                str(n),
                "--seed",
                str(options.seed),
                "--fallback",
                options.fallback,
                "--workers",
                "1",
                "--progress",
                "off",
            ]
            if options.mmff:
                cmd.append("--mmff")
            import resource

            ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
        rows.append(
            timing_row(
                "CLI `rdconfvae embed` (whole command)",
                1,
                wall,
                cpu,
                len(mols),
                returncode=proc.returncode,
                command=" ".join(["python", *cmd[1:]]),
            )
        )

    for k in workers:
        t0 = time.perf_counter()
        with (
            LocalCluster(
                n_workers=k, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster,
            Client(cluster) as client,
        ):
            client.run(prepare_worker)
            startup = time.perf_counter() - t0
            bag = dbag.from_sequence(mols, npartitions=max(1, k * partitions_per_worker))
            c0 = sum(client.run(cpu_seconds).values())
            t0 = time.perf_counter()
            results = embed_bag(bag, n, **embed_options).compute()
            wall = time.perf_counter() - t0
            cpu = sum(client.run(cpu_seconds).values()) - c0
        rows.append(
            timing_row(
                f"Dask LocalCluster, {k} worker(s) x 1 thread",
                k,
                wall,
                cpu,
                len(mols),
                startup_s=startup,
                identical=same_coordinates(reference, results),
            )
        )
    return {
        "molecules": len(mols),
        "n": n,
        "options": dataclasses.asdict(options),
        "failed": sum(not r.ok for r in reference),
        "cpu_count": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "versions": _versions(),
        "rows": rows,
    }


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for dist in ("rdconfvae", "dask", "distributed", "torch", "rdkit"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "n/a"
    return out


def report(result: dict[str, Any], command: str) -> str:
    """The Markdown report of a :func:`bench_throughput` result (``command``: as run)."""

    def load(key: str) -> str:
        values = result.get(key) or ()
        return "/".join(f"{x:.2f}" for x in values) or "n/a"

    lines = [
        "# Dask throughput",
        "",
        f"Command: `{command}`",
        "",
        f"{result['molecules']} molecules, n = {result['n']} conformers each, options "
        f"`{result['options']}`; {result['failed']} failed. Machine: {result['cpu_count']} "
        f"CPU cores, {result['platform']}. Load average (1/5/15 min) before "
        f"{load('load_average_before')}, after {load('load_average_after')}: a load above "
        "the core count means other processes competed for the CPUs, and the rates (the "
        "speed-up from more workers above all) are then lower than on an idle machine. "
        "CPU s / molecule (user + system, summed over the worker processes; the whole "
        "command for the CLI) depends much less on the competition.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in result.get("versions", {}).items()),
        "",
        "| run | seconds | molecules / s | CPU s / molecule | notes |",
        "|---|---:|---:|---:|---|",
    ]
    for row in result["rows"]:
        notes = []
        if "load_s" in row:
            notes.append(f"model load {row['load_s']:.2f} s not included")
        if "startup_s" in row:
            notes.append(f"cluster start + model load {row['startup_s']:.1f} s not included")
        if "identical" in row:
            notes.append("coordinates identical to in-process: " + str(row["identical"]))
        if "returncode" in row:
            notes.append(f"exit code {row['returncode']}; includes start-up and model load")
        lines.append(
            f"| {row['mode']} | {row['seconds']:.2f} | {row['mol_per_s']:.2f} | "
            f"{row['cpu_s_per_mol']:.3f} | {'; '.join(notes)} |"
        )
    return "\n".join(lines) + "\n"


def read_pairs(path: Path) -> list[tuple[str, str]]:
    """``(name, SMILES)`` pairs of a ``.smi`` file."""
    with open(path) as fh:
        return split_smiles(fh)


def run_command(args: argparse.Namespace, command: str) -> int:
    """``python -m rdconfvae.integrations.dask bench``: ``args`` as parsed by
    :func:`rdconfvae.integrations.dask.main`."""
    result = bench_throughput(
        read_pairs(Path(args.input)),
        args.n,
        args.workers,
        cli=not args.no_cli,
        mmff=args.mmff,
        seed=args.seed,
        fallback=args.fallback,
    )
    text = report(result, command)
    print(text)
    if args.report:
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(text)
    return 0
