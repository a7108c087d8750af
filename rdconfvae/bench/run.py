"""One benchmark run: every method on every molecule, then the task's evaluation."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

from rdconfvae.bench.methods import MethodRun, Runner, short_error
from rdconfvae.bench.records import Record, input_mol
from rdconfvae.evaluation import metrics


def _evaluate(task: str, run: MethodRun, record: Record, args: argparse.Namespace) -> dict:
    if run.mol is None:
        return {}
    if task == "platinum":
        return {"min_rmsd": metrics.min_rmsd_to_pose(run.mol, record.ref)}
    if task == "ensembles":
        res = metrics.ensemble_metrics(run.mol, record.ref, delta=args.delta, strict=args.strict)
        return {k: res[k] for k in ("cov_r", "mat_r", "cov_p", "mat_p")}
    checks = metrics.posebusters_checks(run.mol, num_threads=getattr(args, "eval_threads", 1))
    names = list(checks[0]["checks"]) if checks else []
    return {
        "n_checked": len(checks),
        "n_pass": sum(c["pass_all"] for c in checks),
        "n_stereo": sum(c["stereo"] for c in checks),
        "n_pass_and_stereo": sum(c["pass_all"] and c["stereo"] for c in checks),
        "n_inchi_differs": sum(not c["inchi_matches_input"] for c in checks),
        "per_check_pass": {k: sum(c["checks"][k] for c in checks) for k in names},
    }


def run_benchmark(
    task: str,
    records: Sequence[Record],
    methods: Sequence[str],
    args: argparse.Namespace,
    progress: bool = True,
) -> tuple[list[dict], dict]:
    """Run every method on every record; returns per-molecule rows and run metadata."""
    runner = Runner(methods, args.timeout)
    runner.warm_up()
    refs_before = metrics.reference_energy.cache_info().misses if task == "validity" else 0
    rows: list[dict] = []
    iterator = records
    bar = None
    if progress:
        try:
            from tqdm import tqdm

            bar = tqdm(records, desc=task, unit="mol", file=sys.stderr)
            iterator = bar
        except ImportError:  # pragma: no cover
            pass
    for rec in iterator:
        n = args.n if args.n is not None else 2 * rec.ref.GetNumConformers()
        runs = runner.run(input_mol(rec), n, args.seed)
        row: dict[str, Any] = {
            "name": rec.name,
            "smiles": rec.smiles,
            "n_heavy": rec.n_heavy,
            "n_rot": rec.n_rot,
            "n_ref": rec.ref.GetNumConformers(),
            "n_requested": n,
            "methods": {},
        }
        for method, run in runs.items():
            entry: dict[str, Any] = {
                "ok": run.mol is not None,
                "n_confs": run.n_confs,
                "cpu_s": run.cpu_s,
                "cpu_per_conf_s": run.cpu_s / run.n_confs if run.n_confs else None,
                "error": run.error,
                "note": run.note,
            }
            if run.mmff_not_converged is not None:
                entry["mmff_not_converged"] = run.mmff_not_converged
            t0 = time.process_time()
            try:
                entry.update(_evaluate(task, run, rec, args))
            except ValueError as exc:
                entry.update(ok=False, error=f"evaluation: {short_error(exc)}")
            entry["eval_cpu_s"] = time.process_time() - t0
            row["methods"][method] = entry
        rows.append(row)
    if bar is not None:
        bar.close()
    meta: dict[str, Any] = {
        "conforge_settings": runner.conforge.settings(args.n or 0) if runner.conforge else None
    }
    if task == "validity":
        meta["energy_references"] = metrics.reference_energy.cache_info().misses - refs_before
    if meta["conforge_settings"] is not None and args.n is None:
        meta["conforge_settings"]["max_output_conformers"] = "2 x reference count"
    return rows, meta
