"""One benchmark run split over processes: ``--shard I/K`` runs a part, ``--merge`` joins them.

A long run (Platinum 300 at n = 50 with MMFF takes about an hour on one core) can run as K
processes side by side, one per core, each on every K-th molecule of the selection; then
``--merge DIR,DIR,...`` joins their ``results.json`` into one report. Each molecule still runs
every method interleaved in one process and one thread, so the CPU times and their ratios mean
what they mean in an unsharded run; only the wall time differs. The joined rows are those of
the unsharded run, in the same order.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

#: ``info`` fields that every shard of one run must share (the run's definition).
SAME_RUN_FIELDS = (
    "task",
    "data",
    "n_records",
    "n_selected",
    "sample",
    "limit",
    "n",
    "seed",
    "timeout",
    "delta",
    "strict",
    "methods",
    "versions",
    "weights",
)


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/K"`` -> ``(I, K)`` with ``0 <= I < K``; ``ValueError`` naming the fault."""
    try:
        left, right = text.split("/")
        index, count = int(left), int(right)
    except ValueError:
        raise ValueError(f"--shard {text!r}: expected I/K, e.g. 0/2") from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"--shard {text!r}: need 0 <= I < K")
    return index, count


def take_shard(items: Sequence[T], index: int, count: int) -> list[T]:
    """Every ``count``-th item starting at ``index`` (each shard gets a similar mix)."""
    return list(items[index::count])


def _load(directory: Path) -> dict[str, Any]:
    path = directory / "results.json"
    if not path.is_file():
        raise ValueError(f"--merge: {path} not found")
    res = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(res, dict) or "info" not in res or "molecules" not in res:
        raise ValueError(f"--merge: {path} is not a benchmark results file")
    return res


def merge_results(directories: Sequence[Path]) -> tuple[dict[str, Any], list[dict]]:
    """The ``info`` and the rows of the run whose shards are in ``directories``.

    Every shard ``I/K`` of one K must be there exactly once, and all must share
    :data:`SAME_RUN_FIELDS`; otherwise ``ValueError`` names the difference. The rows come
    back in the order of the unsharded selection. The returned ``info`` is the first
    shard's, with ``shard`` removed, ``shards`` listing the parts, ``wall_s`` the longest
    part's wall time and ``energy_references`` (validity) the parts' sum.
    """
    if not directories:
        raise ValueError("--merge: no shard folders given")
    loaded = [(Path(d), _load(Path(d))) for d in directories]
    by_index: dict[int, tuple[Path, dict[str, Any]]] = {}
    counts = set()
    for directory, res in loaded:
        shard = res["info"].get("shard")
        if not shard:
            raise ValueError(f"--merge: {directory} is not a shard (run with --shard I/K)")
        index, count = parse_shard(shard)
        counts.add(count)
        if index in by_index:
            raise ValueError(
                f"--merge: shard {shard} given twice ({by_index[index][0]}, {directory})"
            )
        by_index[index] = (directory, res)
    if len(counts) != 1:
        raise ValueError(f"--merge: shards of different splits ({sorted(counts)} parts)")
    count = counts.pop()
    missing = sorted(set(range(count)) - set(by_index))
    if missing:
        raise ValueError(f"--merge: shards {', '.join(f'{i}/{count}' for i in missing)} missing")
    first_dir, first = by_index[0]
    for index in range(1, count):
        directory, res = by_index[index]
        for key in SAME_RUN_FIELDS:
            if res["info"].get(key) != first["info"].get(key):
                raise ValueError(
                    f"--merge: {directory} and {first_dir} are not parts of one run: "
                    f"{key} {res['info'].get(key)!r} != {first['info'].get(key)!r}"
                )
    parts = [by_index[i][1]["molecules"] for i in range(count)]
    rows: list[dict] = []
    for position in range(max(len(p) for p in parts)):
        rows.extend(p[position] for p in parts if position < len(p))
    if len(rows) != first["info"]["n_selected"]:
        raise ValueError(
            f"--merge: the shards hold {len(rows)} molecules, the run selected "
            f"{first['info']['n_selected']}"
        )
    info = {k: v for k, v in first["info"].items() if k != "shard"}
    info["shards"] = []
    for i in range(count):
        directory, res = by_index[i]
        part = res["info"]
        info["shards"].append(
            {"shard": f"{i}/{count}", "dir": str(directory), "command": part["command"],
             "date": part["date"], "wall_s": part["wall_s"]}
        )  # fmt: skip
    if first["info"].get("energy_references") is not None:  # validity: computed per shard
        info["energy_references"] = sum(
            by_index[i][1]["info"].get("energy_references") or 0 for i in range(count)
        )
    info["wall_s"] = max(s["wall_s"] or 0.0 for s in info["shards"])
    return info, rows
