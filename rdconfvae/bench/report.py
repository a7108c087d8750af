"""The Markdown report of a run, and its one-line-per-method summary on stdout."""

from __future__ import annotations

import importlib.metadata
import math
import platform
from pathlib import Path

from rdconfvae.bench.records import ROT_BINS, SAMPLE_SEED, rot_bin_label


def _f(value: float | None, fmt: str = ".3f") -> str:
    return "–" if value is None or not math.isfinite(value) else format(value, fmt)


def _pct(value: float | None) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{100 * value:.1f} %"


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{1000 * value:.1f}"


def _ratio(a: float | None, b: float | None) -> str:
    return "–" if not a or not b else f"{a / b:.2f}x"


def _x(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}x"


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("rdkit", "numpy", "cdpkit", "posebusters", "torch", "rdconfvae"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _weights_lines(weights: dict | None) -> list[str]:
    if not weights:
        return []
    if "error" in weights:
        return [f"- rdconfvae weights: failed to load ({weights['error']})"]
    return [
        f"- rdconfvae weights: `{weights['dir']}` (preset {weights['preset']}, epoch "
        f"{weights['epoch']}, validation median {_f(weights['val_median_min_rmsd'])} A; "
        f"confvae.pt sha256 {str(weights['sha256'])[:12]}...)"
    ]


def _shard_lines(info: dict) -> list[str]:
    if info.get("shard"):
        return [
            f"- shard {info['shard']} of the selection: every {info['shard'].split('/')[1]}-th "
            "molecule (join the shards with `--merge`); the tables cover this shard only"
        ]
    if info.get("shards"):
        lines = [
            f"- run as {len(info['shards'])} shards side by side, joined by "
            f"`{info['merge_command']}`; wall time above: the longest shard"
        ]
        lines += [
            f"  - `{s['command']}` ({s['date']}, {s['wall_s']:.0f} s)" for s in info["shards"]
        ]
        return lines
    return []


def _by_rot_lines(methods: list[str], sm: dict) -> list[str]:
    """Share below 1 A (median min-RMSD) per rotatable-bond bin of the benchmarked molecules."""
    labels = [rot_bin_label(lo, hi) for lo, hi in ROT_BINS]
    counts = {lab: sm[methods[0]]["by_rot"][lab]["n"] for lab in labels}
    labels = [lab for lab in labels if counts[lab]]
    lines = [
        "",
        "Below 1 A (median min-RMSD) by rotatable bonds (molecules):",
        "",
        "| method | " + " | ".join(f"{lab} ({counts[lab]})" for lab in labels) + " |",
        "|---|" + "---|" * len(labels),
    ]
    for m in methods:
        cells = [sm[m]["by_rot"][lab] for lab in labels]
        lines.append(
            f"| {m} | "
            + " | ".join(f"{_pct(c['below_1.0'])} ({_f(c['median'], '.2f')})" for c in cells)
            + " |"
        )
    return lines


def write_report(path: Path, task: str, summary: dict, info: dict) -> None:
    """Markdown report: command, settings, quality table, time table, failures."""
    methods = list(summary["methods"])
    sm = summary["methods"]
    ref = "etkdg" if "etkdg" in sm else None
    lines = [
        f"# rdconfvae benchmark: {task}",
        "",
        "Command:",
        "",
        "```",
        info["command"],
        "```",
        "",
        "## Settings",
        "",
        f"- date: {info['date']}; machine: {info['cpu']}, {info['n_cpus']} logical CPUs "
        "(shared; CPU time, not wall time, is reported)",
        f"- data: `{info['data']}` ({info['n_records']} molecules read, "
        f"{info['n_selected']} benchmarked, sample `{info['sample']}`"
        + (
            f", stratified by rotatable bonds {list(ROT_BINS)} with seed {SAMPLE_SEED}"
            if info["sample"] == "stratified" and info["limit"]
            else ""
        )
        + ")",
        f"- conformers requested per molecule: {info['n_desc']}; seed {info['seed']}; "
        f"timeout {info['timeout']} s per molecule and method",
        "- input: canonical isomeric SMILES of the reference heavy atoms (stereo from 3D), "
        "`Chem.AddHs`; no reference coordinates reach a generator",
        "- CPU time: `time.process_time()` around each generator call, one thread, methods "
        "interleaved per molecule after one untimed warm-up call each; `+mmff` = base "
        "conformers (reused from the same run) + `rdconfvae.forcefield.mmff.mmff_minimize` "
        "(MMFF94s, distance-dependent dielectric 4r, up to 5000 iterations; `+mmffgas`: "
        "constant dielectric 1, gas phase), both timed",
        "- RMSD: heavy atoms, symmetry-aware, optimal superposition without reflection "
        "(`rdMolAlign.GetBestRMS` semantics, `rdconfvae.evaluation.metrics`)",
        f"- versions: {', '.join(f'{k} {v}' for k, v in info['versions'].items())}",
        f"- wall time of the whole run: {_f(info.get('wall_s'), '.0f')} s (evaluation CPU: "
        + ", ".join(f"{m} {sm[m].get('eval_cpu_s', 0.0):.0f} s" for m in methods)
        + ")",
    ]
    if info.get("conforge_settings"):
        cs = info["conforge_settings"]
        lines.append("- CONFORGE: " + ", ".join(f"{k}={v}" for k, v in cs.items()))
    lines += _weights_lines(info.get("weights")) + _shard_lines(info)
    lines += ["", "## Results", ""]
    if task == "platinum":
        lines += [
            "Minimum heavy-atom RMSD of each ensemble to the crystal pose, over all "
            "benchmarked molecules (a failed molecule counts as a miss).",
            "",
            "| method | ok / total | median (A) | mean (A) | < 0.5 A | < 1.0 A | < 1.5 A "
            "| < 2.0 A | mean confs |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for m in methods:
            s, a = sm[m], sm[m]["all"]
            lines.append(
                f"| {m} | {s['n_ok']} / {s['n_mols']} | {_f(a['median'])} | {_f(a['mean'])} | "
                f"{_pct(a['below_0.5'])} | {_pct(a['below_1.0'])} | {_pct(a['below_1.5'])} | "
                f"{_pct(a['below_2.0'])} | {_f(s['mean_confs'], '.1f')} |"
            )
        if 0 < summary["n_common"] != sm[methods[0]]["n_mols"]:
            lines += [
                "",
                f"On the {summary['n_common']} molecules where every method succeeded:",
                "",
                "| method | median (A) | < 1.0 A | < 2.0 A |",
                "|---|---|---|---|",
            ]
            for m in methods:
                c = sm[m]["common"]
                lines.append(
                    f"| {m} | {_f(c['median'])} | {_pct(c['below_1.0'])} | {_pct(c['below_2.0'])} |"
                )
        lines += _by_rot_lines(methods, sm)
    elif task == "ensembles":
        lines += [
            f"COV / MAT against the reference ensembles, delta = {info['delta']} A "
            f"({'strict <' if info['strict'] else '<='}); mean (median) over molecules with "
            "a generated ensemble; COV-R (all) counts failures as 0.",
            "",
            "| method | ok / total | COV-R | COV-R (all) | MAT-R (A) | COV-P | MAT-P (A) "
            "| mean confs |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for m in methods:
            s = sm[m]
            lines.append(
                f"| {m} | {s['n_ok']} / {s['n_mols']} | {_pct(s['cov_r_mean'])} "
                f"({_pct(s['cov_r_median'])}) | {_pct(s['cov_r_mean_all'])} | "
                f"{_f(s['mat_r_mean'])} ({_f(s['mat_r_median'])}) | {_pct(s['cov_p_mean'])} "
                f"({_pct(s['cov_p_median'])}) | {_f(s['mat_p_mean'])} ({_f(s['mat_p_median'])}) "
                f"| {_f(s['mean_confs'], '.1f')} |"
            )
    else:
        lines += [
            "Share of generated conformers passing PoseBusters' molecule checks (its `mol` "
            "config and thresholds; "
            "`rdconfvae.evaluation.metrics.posebusters_checks`, same pass/fail "
            'as `PoseBusters(config="mol").bust` per conformer, with the energy-ratio '
            "reference ensemble of the input's InChI computed once per molecule: "
            f"{info.get('energy_references')} ensembles in this run, "
            f"{info.get('eval_threads')} thread(s)) and keeping the input's stereo (RDKit, "
            "perceived from 3D).",
            "",
            "| method | ok / total | conformers | PB pass all | stereo kept | both "
            "| molecules all-pass | InChI differs |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for m in methods:
            s = sm[m]
            lines.append(
                f"| {m} | {s['n_ok']} / {s['n_mols']} | {s['n_checked']} | "
                f"{_pct(s['share_pass'])} | {_pct(s['share_stereo'])} | "
                f"{_pct(s['share_pass_and_stereo'])} | {s['mols_all_pass']} | "
                f"{s.get('n_inchi_differs', 0)} |"
            )
        lines += [
            "",
            "InChI differs: conformers whose InChI (stereo perceived from 3D by InChI) is "
            "not the input's; their energy ratio uses the input's reference ensemble, where "
            "PoseBusters would embed that other stereoisomer.",
        ]
        checks = sorted({k for m in methods for k in sm[m]["per_check_share"]})
        if checks:
            lines += [
                "",
                "Per check (share of conformers passing):",
                "",
                "| check | " + " | ".join(methods) + " |",
                "|---|" + "---|" * len(methods),
            ]
            for k in checks:
                lines.append(
                    f"| {k} | "
                    + " | ".join(_pct(sm[m]["per_check_share"].get(k)) for m in methods)
                    + " |"
                )
    lines += [
        "",
        "## CPU time",
        "",
        "Per conformer = total CPU of successful molecules / their conformers (median: of "
        "the per-molecule values). vs ETKDG (per conf) divides the per-conformer figures; "
        "vs ETKDG (total) divides total CPU on the molecules where both the method and "
        "ETKDGv3 succeeded.",
        "",
        "| method | ms / conformer | median ms / conformer | median ms / molecule "
        "| mean ms / molecule | total s | vs ETKDG (per conf) | vs ETKDG (total) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in methods:
        s = sm[m]
        r = sm[ref] if ref else None
        lines.append(
            f"| {m} | {_ms(s['cpu_per_conf_s'])} | {_ms(s['cpu_per_conf_median_s'])} | "
            f"{_ms(s['cpu_per_mol_median_s'])} | {_ms(s['cpu_per_mol_mean_s'])} | "
            f"{s['cpu_total_s']:.1f} | "
            f"{_ratio(s['cpu_per_conf_s'], r['cpu_per_conf_s']) if r else '–'} | "
            f"{_x(s.get('cpu_vs_etkdg'))} |"
        )
    lines += ["", "## Failures", ""]
    any_fail = False
    for m in methods:
        s = sm[m]
        if s["n_failed"]:
            any_fail = True
            names = ", ".join(s["failed_names"][:10]) + (" ..." if s["n_failed"] > 10 else "")
            lines.append(f"- **{m}**: {s['n_failed']} of {s['n_mols']} ({names})")
            for reason, count in s["failures"].items():
                lines.append(f"  - {count} x {reason}")
        for note, count in s["notes"].items():
            lines.append(f"- {m}: note, {count} x {note}")
        if s.get("mmff_not_converged"):
            lines.append(f"- {m}: {s['mmff_not_converged']} conformers not converged by MMFF")
    if not any_fail:
        lines.append("- none")
    if info.get("plots"):
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in info["plots"]]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def print_summary(task: str, summary: dict, out: Path) -> None:
    for m, s in summary["methods"].items():
        if task == "platinum":
            a = s["all"]
            q = (
                f"median {_f(a['median'])} A, <1 A {_pct(a['below_1.0'])}, "
                f"<2 A {_pct(a['below_2.0'])}"
            )
        elif task == "ensembles":
            q = (
                f"COV-R {_pct(s['cov_r_mean'])}, MAT-R {_f(s['mat_r_mean'])} A, "
                f"COV-P {_pct(s['cov_p_mean'])}, MAT-P {_f(s['mat_p_mean'])} A"
            )
        else:
            q = f"PB pass {_pct(s['share_pass'])}, stereo {_pct(s['share_stereo'])}"
        print(
            f"{m:16s} ok {s['n_ok']}/{s['n_mols']}  {q}  "
            f"{_ms(s['cpu_per_conf_s'])} ms/conf, {_ms(s['cpu_per_mol_median_s'])} ms/mol"
        )
    print(f"report: {out / 'report.md'}")
