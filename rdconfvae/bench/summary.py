"""Per-method aggregates of a run, and the JSON form of its results."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from rdconfvae.bench.records import ROT_BINS, rot_bin_label
from rdconfvae.evaluation import metrics


def median(values: Sequence[float]) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.median(vals)) if vals else None


def mean(values: Sequence[float]) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def summarize(task: str, rows: Sequence[dict], methods: Sequence[str]) -> dict:
    """Per-method aggregates: failures, CPU time, and the task's quality metrics."""
    common = [r for r in rows if all(r["methods"][m]["ok"] for m in methods)]
    out: dict[str, dict] = {}
    for m in methods:
        entries = [r["methods"][m] for r in rows]
        ok = [e for e in entries if e["ok"]]
        reasons = Counter(e["error"] for e in entries if not e["ok"])
        confs = sum(e["n_confs"] for e in ok)
        cpu_ok = sum(e["cpu_s"] for e in ok)
        s = {
            "n_mols": len(entries),
            "n_ok": len(ok),
            "n_failed": len(entries) - len(ok),
            "failures": dict(reasons.most_common()),
            "failed_names": [r["name"] for r in rows if not r["methods"][m]["ok"]],
            "notes": dict(Counter(e["note"] for e in entries if e.get("note")).most_common()),
            "mean_confs": confs / len(ok) if ok else None,
            "cpu_total_s": sum(e["cpu_s"] for e in entries),
            "cpu_per_mol_median_s": median([e["cpu_s"] for e in ok]),
            "cpu_per_mol_mean_s": mean([e["cpu_s"] for e in ok]),
            "cpu_per_conf_s": cpu_ok / confs if confs else None,
            "cpu_per_conf_median_s": median([e["cpu_per_conf_s"] for e in ok]),
            "eval_cpu_s": sum(e.get("eval_cpu_s", 0.0) for e in entries),
        }
        if "etkdg" in methods:
            pair = [r for r in rows if r["methods"][m]["ok"] and r["methods"]["etkdg"]["ok"]]
            mine = sum(r["methods"][m]["cpu_s"] for r in pair)
            base = sum(r["methods"]["etkdg"]["cpu_s"] for r in pair)
            s["cpu_vs_etkdg"] = mine / base if pair and base > 0 else None
            s["cpu_vs_etkdg_n"] = len(pair)
        if any("mmff_not_converged" in e for e in ok):
            s["mmff_not_converged"] = sum(e.get("mmff_not_converged", 0) for e in ok)
        if task == "platinum":
            s["all"] = metrics.pose_summary([e.get("min_rmsd") for e in entries])
            s["by_rot"] = {
                rot_bin_label(lo, hi): metrics.pose_summary(
                    [r["methods"][m].get("min_rmsd") for r in rows if lo <= r["n_rot"] <= hi]
                )
                for lo, hi in ROT_BINS
            }
            s["common"] = metrics.pose_summary([r["methods"][m]["min_rmsd"] for r in common])
        elif task == "ensembles":
            for key in ("cov_r", "mat_r", "cov_p", "mat_p"):
                vals = [e.get(key) for e in ok]
                s[f"{key}_mean"], s[f"{key}_median"] = mean(vals), median(vals)
            # failures count as zero coverage
            for key in ("cov_r", "cov_p"):
                s[f"{key}_mean_all"] = float(np.mean([e.get(key, 0.0) or 0.0 for e in entries]))
            for key in ("cov_r", "mat_r", "cov_p", "mat_p"):
                vals = [r["methods"][m][key] for r in common]
                s[f"{key}_mean_common"], s[f"{key}_median_common"] = mean(vals), median(vals)
        else:
            n_checked = sum(e.get("n_checked", 0) for e in ok)
            s["n_checked"] = n_checked
            for key in ("n_pass", "n_stereo", "n_pass_and_stereo"):
                s[key.replace("n_", "share_", 1)] = (
                    sum(e.get(key, 0) for e in ok) / n_checked if n_checked else None
                )
            per: Counter = Counter()
            for e in ok:
                per.update(e.get("per_check_pass", {}))
            s["per_check_share"] = {k: v / n_checked for k, v in per.items()} if n_checked else {}
            s["n_inchi_differs"] = sum(e.get("n_inchi_differs", 0) for e in ok)
            s["mols_all_pass"] = sum(
                e.get("n_pass", 0) == e.get("n_checked", -1) and e.get("n_checked", 0) > 0
                for e in ok
            )
        out[m] = s
    return {"methods": out, "n_common": len(common)}


def jsonable(obj: Any) -> Any:
    """``obj`` with numpy scalars as Python numbers, non-finite floats as None, keys as str."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj
