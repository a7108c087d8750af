"""Issue 17's target table from committed benchmark runs, beside ETKDGv3 and CONFORGE.

Reads the ``results.json`` of the runs the targets are defined on and prints one Markdown
table (each number with the run it comes from), then the share below 1 A by rotatable bonds.
Nothing is run; it only reads. Usage::

    python benchmarks/diagnostics/targets.py \\
        --platinum benchmarks/results/platinum-amide-n50-300 \\
        --mmff benchmarks/results/platinum-final-n50-300 \\
        --n10 benchmarks/results/platinum-n10-300 \\
        --validity benchmarks/results/speed-validity-n10-100 \\
        --ensembles benchmarks/results/dft-ensembles-polish80

``--platinum`` (n = 50, with ``rdconfvae``, ``etkdg`` and ``conforge``) is required; every
other run is optional and its rows say "not measured" without it. A run's rdconfvae weights
(when its report records them) are printed under the table, so runs of different weights
are not mixed silently.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rdconfvae.bench import ROT_BINS, rot_bin_label
from rdconfvae.evaluation.metrics import pose_summary

#: the default output, and the methods it is compared with
MODEL, ETKDG, CONFORGE = "rdconfvae", "etkdg", "conforge"
#: what ``mmff=True`` is in a run, in order of preference: the package's own path, then
#: the benchmark's MMFF on the default output
MMFF_METHODS = ("rdconfvae-mmff", "rdconfvae+mmff")


def load(directory: Path | None) -> dict[str, Any] | None:
    if directory is None:
        return None
    return json.loads((directory / "results.json").read_text(encoding="utf-8"))


def poses(res: dict[str, Any], method: str, lo: int = 0, hi: int = 10_000) -> dict[str, float]:
    """Pose summary of ``method`` over the run's molecules with lo..hi rotatable bonds."""
    return pose_summary(
        [
            r["methods"][method].get("min_rmsd")
            for r in res["molecules"]
            if lo <= r["n_rot"] <= hi and method in r["methods"]
        ]
    )


def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def cpu_ratio(res: dict[str, Any], method: str) -> str:
    """CPU per conformer against ETKDGv3 in the same run (total CPU / total conformers)."""
    s = res["summary"]["methods"]
    if method not in s or ETKDG not in s:
        return "–"
    return f"{s[method]['cpu_per_conf_s'] / s[ETKDG]['cpu_per_conf_s']:.2f}x"


def table(args: argparse.Namespace) -> str:
    runs = {
        "platinum": load(args.platinum),
        "mmff": load(args.mmff) or load(args.platinum),
        "n10": load(args.n10),
        "validity": load(args.validity),
        "ensembles": load(args.ensembles),
    }
    p = runs["platinum"]
    assert p is not None
    methods = list(p["summary"]["methods"])
    others = [m for m in (ETKDG, CONFORGE) if m in methods]
    rows: list[tuple[str, list[str], str]] = []

    def add(measure: str, values: dict[str, str], target: str) -> None:
        rows.append((measure, [values.get(m, "–") for m in [MODEL, *others]], target))

    all_ = {m: poses(p, m) for m in [MODEL, *others]}
    add("default, share below 1 A", {m: pct(a["below_1.0"]) for m, a in all_.items()}, ">= 82 %")
    add(
        "default, median min-RMSD",
        {m: f"{a['median']:.3f} A" for m, a in all_.items()},
        "<= 0.55 A",
    )
    for lo, hi, target in ((5, 6, ">= 85 %"), (7, 9, ">= 60 %")):
        add(
            f"default, {lo}-{hi} rotatable bonds below 1 A",
            {m: pct(poses(p, m, lo, hi)["below_1.0"]) for m in [MODEL, *others]},
            target,
        )
    add(
        "default, CPU per conformer vs ETKDGv3",
        {m: cpu_ratio(p, m) for m in [MODEL, *others]},
        "<= 0.45x",
    )
    mm = runs["mmff"]
    mmff = next((m for m in MMFF_METHODS if mm and m in mm["summary"]["methods"]), None)
    if mm is not None and mmff is not None:
        add(
            f"`mmff=True` ({mmff}), share below 1 A",
            {MODEL: pct(poses(mm, mmff)["below_1.0"])},
            ">= 85 %",
        )
    else:
        add("`mmff=True`, share below 1 A", {MODEL: "not measured"}, ">= 85 %")
    n10 = runs["n10"]
    at_n10 = {MODEL: "not measured"}
    if n10 is not None:
        at_n10 = {m: pct(poses(n10, m)["below_1.0"]) for m in n10["summary"]["methods"]}
    etkdg_n50 = f" ({pct(all_[ETKDG]['below_1.0'])})" if ETKDG in all_ else ""
    add("n = 10, default, share below 1 A", at_n10, f">= ETKDGv3 at n = 50{etkdg_n50}")
    v = runs["validity"]
    valid = {MODEL: "not measured"}
    if v is not None:
        valid = {m: pct(s["share_pass"]) for m, s in v["summary"]["methods"].items()}
    add("default, PoseBusters all checks", valid, ">= 99 %")
    e = runs["ensembles"]
    if e is not None:
        info = e["info"]
        label = (
            f"DFT ensembles COV-R, delta {info['delta']} A {'strict' if info['strict'] else '<='}"
        )
        cov = {m: s["cov_r_mean"] for m, s in e["summary"]["methods"].items()}
        target = (
            f">= ETKDGv3 + 10 points ({pct(cov[ETKDG] + 0.10)})"
            if ETKDG in cov
            else ">= ETKDGv3 + 10"
        )
        add(label, {m: pct(c) for m, c in cov.items()}, target)
    else:
        add(
            "DFT ensembles COV-R, delta 0.75 A strict",
            {MODEL: "not measured"},
            ">= ETKDGv3 + 10 points",
        )

    names = {MODEL: "rdconfvae", ETKDG: "ETKDGv3", CONFORGE: "CONFORGE"}
    out = [
        "| measure | " + " | ".join(names[m] for m in [MODEL, *others]) + " | target |",
        "|---|" + "---|" * (len(others) + 2),
    ]
    out += [f"| {m} | " + " | ".join(vals) + f" | {t} |" for m, vals, t in rows]
    bins = [rot_bin_label(lo, hi) for lo, hi in ROT_BINS]
    counts = [poses(p, MODEL, lo, hi)["n"] for lo, hi in ROT_BINS]
    out += [
        "",
        "Default output below 1 A by rotatable bonds (molecules), n = 50, one run:",
        "",
        "| method | " + " | ".join(f"{b} ({c})" for b, c in zip(bins, counts, strict=True)) + " |",
        "|---|" + "---|" * len(bins),
    ]
    by_rot_methods = [MODEL, *([mmff] if mmff and mm is p else []), *others]
    for m in by_rot_methods:
        cells = [pct(poses(p, m, lo, hi)["below_1.0"]) for lo, hi in ROT_BINS]
        out.append(f"| {names.get(m, m)} | " + " | ".join(cells) + " |")
    out += ["", "Runs:", ""]
    for key, res in runs.items():
        if res is None:
            continue
        w = res["info"].get("weights")
        weights = (
            f"; weights {w['dir']} (epoch {w['epoch']}, sha256 {w['sha256'][:12]}...)"
            if w and "sha256" in w
            else ""
        )
        out.append(f"- {key}: `{res['info']['command']}`{weights}")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--platinum", type=Path, required=True, help="n = 50 run with rdconfvae, etkdg, conforge"
    )
    ap.add_argument(
        "--mmff", type=Path, help="run with rdconfvae-mmff or rdconfvae+mmff (default: --platinum)"
    )
    ap.add_argument("--n10", type=Path, help="n = 10 Platinum run")
    ap.add_argument("--validity", type=Path, help="validity run")
    ap.add_argument("--ensembles", type=Path, help="ensembles run (--delta 0.75 --strict)")
    print(table(ap.parse_args()))


if __name__ == "__main__":
    main()
