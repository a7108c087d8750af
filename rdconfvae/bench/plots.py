"""PNG plots of a run (matplotlib, optional)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def write_plots(out: Path, task: str, rows: Sequence[dict], methods: Sequence[str]) -> list[str]:
    """PNG plots; returns the file names (empty when matplotlib is missing)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no plots (pip install matplotlib)")
        return []
    files = []
    key = {"platinum": "min_rmsd", "ensembles": "mat_r"}.get(task)
    label = {"min_rmsd": "min heavy-atom RMSD to pose (A)", "mat_r": "MAT-R (A)"}.get(key or "")
    if key and label:
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for m in methods:
            vals = np.sort(
                [r["methods"][m].get(key) for r in rows if r["methods"][m].get(key) is not None]
            )
            y = np.arange(1, len(vals) + 1) / max(len(rows), 1)  # failures never reach 1
            ax.step(
                np.concatenate([[0.0], vals]), np.concatenate([[0.0], y]), where="post", label=m
            )
        ax.set_xlim(0, 3)
        ax.set_ylim(0, 1)
        ax.set_xlabel(label)
        ax.set_ylabel("share of molecules")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        name = f"cdf_{key}.png"
        fig.savefig(out / name, dpi=120)
        plt.close(fig)
        files.append(name)

        fig, ax = plt.subplots(figsize=(6, 4.5))
        for m in methods:
            by: dict[int, list[float]] = {}
            for r in rows:
                v = r["methods"][m].get(key)
                if v is not None:
                    by.setdefault(min(r["n_rot"], 15), []).append(v)
            xs = sorted(by)
            ax.plot(xs, [np.median(by[x]) for x in xs], marker="o", label=m)
        ax.set_xlabel("rotatable bonds (15 = 15+)")
        ax.set_ylabel(f"median {label}")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        name = f"{key}_vs_rotbonds.png"
        fig.savefig(out / name, dpi=120)
        plt.close(fig)
        files.append(name)
    if task == "validity":
        fig, ax = plt.subplots(figsize=(6, 4))
        shares = []
        for m in methods:
            n = sum(r["methods"][m].get("n_checked", 0) for r in rows)
            p = sum(r["methods"][m].get("n_pass_and_stereo", 0) for r in rows)
            shares.append(100 * p / n if n else 0)
        ax.bar(methods, shares)
        ax.set_ylabel("% conformers passing PoseBusters + stereo")
        ax.set_ylim(0, 100)
        fig.tight_layout()
        fig.savefig(out / "validity_pass.png", dpi=120)
        plt.close(fig)
        files.append("validity_pass.png")
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for m in methods:
        pts = [
            (r["n_heavy"], 1000 * r["methods"][m]["cpu_per_conf_s"])
            for r in rows
            if r["methods"][m].get("cpu_per_conf_s")
        ]
        if pts:
            px, py = zip(*pts, strict=True)
            ax.scatter(px, py, s=10, alpha=0.6, label=m)
    ax.set_yscale("log")
    ax.set_xlabel("heavy atoms")
    ax.set_ylabel("CPU ms per conformer")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "time_per_conf_vs_heavy_atoms.png", dpi=120)
    plt.close(fig)
    files.append("time_per_conf_vs_heavy_atoms.png")
    return files
