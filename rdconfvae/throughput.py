"""Batch throughput of ``rdconfvae embed``: molecules per second for 1..k worker processes.

Run through the benchmark command::

    python -m rdconfvae.bench throughput --data examples/library_200.smi -n 10 --workers 1,2

Each worker count embeds the same file into its own SDF (:func:`rdconfvae.batch.embed_file`,
exactly what the CLI runs); the report gives wall time, molecules and conformers per second,
the speed-up over one worker, whether the outputs are byte-identical, and the peak resident
memory of the parent and of the worker processes.
"""

from __future__ import annotations

import json
import platform
import resource
import time
from pathlib import Path

from rdconfvae.batch import count_records, embed_file
from rdconfvae.pipeline import EmbedOptions

__all__ = ["run_throughput"]


def _peak_rss_mb() -> tuple[float, float]:
    """Peak RSS (MB) of this process and of its largest finished child (Linux: kB units)."""
    scale = 1 / 1024 if platform.system() == "Linux" else 1 / 2**20
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale
    return me, kids


def run_throughput(
    data: Path, out: Path, n: int, workers: list[int], seed: int, command: str
) -> dict:
    """Embed ``data`` once per worker count; write ``report.md`` and ``results.json`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    records = count_records(data)
    options = EmbedOptions(n=n, seed=seed)
    rows = []
    for k in workers:
        sdf = out / f"embed_w{k}.sdf"
        t0 = time.perf_counter()
        summary = embed_file(data, sdf, options, workers=k, progress=False)
        wall = time.perf_counter() - t0
        rss, child = _peak_rss_mb()
        rows.append(
            {
                "workers": k,
                "wall_s": wall,
                "molecules": summary.done,
                "ok": summary.ok,
                "failed": summary.failed,
                "mol_per_s": summary.done / wall,
                "conf_per_s": summary.ok * n / wall,
                "peak_rss_parent_mb": rss,
                "peak_rss_worker_mb": child if k > 1 else None,
                "sha_equal_to_first": None,
            }
        )
    first = (out / f"embed_w{workers[0]}.sdf").read_bytes()
    for row in rows:
        row["sha_equal_to_first"] = (out / f"embed_w{row['workers']}.sdf").read_bytes() == first
        row["speedup"] = rows[0]["wall_s"] / row["wall_s"]
    for k in workers:  # the SDFs are large and reproducible: keep only the numbers
        (out / f"embed_w{k}.sdf").unlink()
        for extra in (".errors.tsv", ".progress.json"):
            p = out / f"embed_w{k}.sdf{extra}"
            if p.exists():
                p.unlink()
    result = {"command": command, "data": str(data), "records": records, "n": n, "rows": rows}
    (out / "results.json").write_text(json.dumps(result, indent=2))
    lines = [
        f"# `rdconfvae embed` throughput: {records} molecules, n = {n}",
        "",
        f"Command: `{command}`",
        "",
        "Same input, same seed, one output per worker count; each worker is a spawned process",
        "with one torch thread that loads the model once (start-up included in the wall time).",
        "",
        "| workers | wall s | molecules/s | conformers/s | speed-up | identical output | "
        "peak RSS parent / worker MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        worker_rss = f"{r['peak_rss_worker_mb']:.0f}" if r["peak_rss_worker_mb"] else "-"
        lines.append(
            f"| {r['workers']} | {r['wall_s']:.1f} | {r['mol_per_s']:.2f} | "
            f"{r['conf_per_s']:.0f} | {r['speedup']:.2f}x | {r['sha_equal_to_first']} | "
            f"{r['peak_rss_parent_mb']:.0f} / {worker_rss} |"
        )
    lines += ["", f"Failures: {rows[0]['failed']} of {records} (see the error file of a run)."]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return result
