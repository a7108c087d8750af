"""The ``speed`` task: the costs a user meets outside a Platinum run, side by side with RDKit.

    python -m rdconfvae.bench speed [--parts small,macrocycle,first-call,cli]
        [--data examples/library_200.smi] [--limit K] [--repeats 3] [--out DIR]

Parts (all by default):

- ``small``: CPU seconds of ``rdconfvae.embed(mol, n=50)`` (default output) and of ETKDGv3
  (``EmbedMultipleConfs``, one thread) on three small molecules as users pass them, without
  explicit hydrogens: a zwitterion, a salt and propranolol. Median of ``--repeats`` calls each,
  the two generators interleaved.
- ``macrocycle``: erythromycin (a 14-membered macrolide, explicit hydrogens), n = 50:
  ``embed(mmff=True)`` against ETKDGv3 followed by the same MMFF94s minimisation
  (:func:`rdconfvae.mmff_minimize`, eps = 4r, to convergence), CPU seconds, one call each.
- ``first-call``: wall seconds of a fresh interpreter that imports rdconfvae and runs
  ``embed(mol, n=10)`` (torch import and model load included), and of one that only imports
  torch (the floor the first call cannot go under); median of ``--repeats``.
- ``cli``: ``python -m rdconfvae embed`` on ``--data`` (the first ``--limit`` molecules),
  n = 10, with ``--workers 1`` and ``--workers 2``: wall seconds and molecules per second.

Every timing is taken in this one run, so the ratios compare like with like. Writes
``report.md`` and ``results.json`` to ``--out``.
"""

from __future__ import annotations

import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rdkit import Chem

from rdconfvae.bench.methods import run_etkdg
from rdconfvae.bench.report import cpu_model, package_versions
from rdconfvae.bench.summary import jsonable

__all__ = ["PARTS", "SMALL_MOLECULES", "ERYTHROMYCIN", "check_options", "run_speed"]

PARTS = ("small", "macrocycle", "first-call", "cli")
DEFAULT_CLI_INPUT = Path("examples") / "library_200.smi"

#: name -> SMILES, passed without explicit hydrogens (as most callers do)
SMALL_MOLECULES = {
    "glycine zwitterion": "[NH3+]CC(=O)[O-]",
    "tetramethylammonium chloride": "C[N+](C)(C)C.[Cl-]",
    "propranolol": "CC(C)NCC(O)COc1cccc2ccccc12",
}
ERYTHROMYCIN = (
    "CC[C@@H]1[C@@]([C@@H]([C@H](C(=O)[C@@H](C[C@@]([C@@H]([C@H]([C@@H]([C@H](C(=O)O1)C)"
    "O[C@H]2C[C@@]([C@H]([C@@H](O2)C)O)(C)OC)C)O[C@H]3[C@@H]([C@H](C[C@H](O3)C)N(C)C)O)"
    "(C)O)C)C)O)(C)O"
)
_FIRST_CALL = (
    "import rdconfvae; from rdkit import Chem; "
    "rdconfvae.embed(Chem.MolFromSmiles('CC(=O)Nc1ccc(O)cc1'), n=10, seed=1)"
)


def check_options(parts: Sequence[str], repeats: int) -> None:
    """ValueError unless every part is one of :data:`PARTS` and ``repeats >= 1``."""
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise ValueError(f"unknown speed part(s) {unknown}; choose from {', '.join(PARTS)}")
    if repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {repeats}")


def _cpu(fn: Callable[..., object], *args: Any, **kwargs: Any) -> float:
    """CPU seconds of ``fn(*args, **kwargs)`` in this process."""
    t = time.process_time()
    fn(*args, **kwargs)
    return time.process_time() - t


def small_molecules(n: int, seed: int, repeats: int) -> list[dict[str, Any]]:
    """CPU seconds per call, rdconfvae default output and ETKDGv3, median of ``repeats``."""
    import rdconfvae

    rows = []
    for name, smiles in SMALL_MOLECULES.items():
        mol = Chem.MolFromSmiles(smiles)
        ours, theirs = [], []
        for _ in range(repeats):  # interleaved, so a busy moment hits both
            ours.append(_cpu(rdconfvae.embed, Chem.Mol(mol), n=n, seed=seed))
            theirs.append(_cpu(run_etkdg, Chem.Mol(mol), n, seed, None))
        a, b = statistics.median(ours), statistics.median(theirs)
        rows.append(
            {
                "molecule": name,
                "smiles": smiles,
                "heavy_atoms": mol.GetNumAtoms(),
                "rdconfvae_cpu_s": a,
                "etkdg_cpu_s": b,
                "ratio": a / b,
            }
        )
    return rows


def macrocycle(n: int, seed: int) -> dict[str, Any]:
    """erythromycin: ``embed(mmff=True)`` against ETKDGv3 + the same minimisation, CPU s."""
    import rdconfvae

    mol = Chem.AddHs(Chem.MolFromSmiles(ERYTHROMYCIN))
    ours = Chem.Mol(mol)
    a = _cpu(rdconfvae.embed, ours, n=n, seed=seed, mmff=True)
    theirs = Chem.Mol(mol)
    t_embed = _cpu(run_etkdg, theirs, n, seed, None)
    t = time.process_time()
    results = rdconfvae.mmff_minimize(theirs) or []
    t_min = time.process_time() - t
    return {
        "molecule": "erythromycin",
        "atoms": mol.GetNumAtoms(),
        "rdconfvae_mmff_cpu_s": a,
        "rdconfvae_conformers": ours.GetNumConformers(),
        "etkdg_cpu_s": t_embed,
        "etkdg_mmff_cpu_s": t_min,
        "etkdg_conformers": theirs.GetNumConformers(),
        "etkdg_converged": sum(r.converged for r in results),
        "ratio": a / (t_embed + t_min),
    }


def _wall(cmd: Sequence[str]) -> float:
    t = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed: {done.stderr.strip()[-500:]}")
    return wall


def first_call(repeats: int) -> dict[str, Any]:
    """Wall seconds of fresh interpreters: the first ``embed`` and ``import torch`` alone."""
    embed = [_wall([sys.executable, "-c", _FIRST_CALL]) for _ in range(repeats)]
    torch_only = [_wall([sys.executable, "-c", "import torch"]) for _ in range(repeats)]
    return {
        "first_embed_wall_s": statistics.median(embed),
        "first_embed_runs_s": embed,
        "import_torch_wall_s": statistics.median(torch_only),
        "import_torch_runs_s": torch_only,
    }


def cli(path: Path, limit: int | None, workers: Sequence[int] = (1, 2)) -> dict[str, Any]:
    """``python -m rdconfvae embed`` on ``path`` at n = 10 per worker count: wall, molecules/s."""
    lines = [ln for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    if limit is not None:
        lines = lines[:limit]
    out: dict[str, Any] = {"input": str(path), "molecules": len(lines), "n": 10}
    with tempfile.TemporaryDirectory() as tmp:
        smi = Path(tmp) / "input.smi"
        smi.write_text("\n".join(lines) + "\n")
        for w in workers:
            sdf = Path(tmp) / f"out_w{w}.sdf"
            cmd = [sys.executable, "-m", "rdconfvae", "embed", str(smi), str(sdf)]
            cmd += ["-n", "10", "--workers", str(w), "--progress", "off"]
            wall = _wall(cmd)
            out[f"workers_{w}_wall_s"] = wall
            out[f"workers_{w}_molecules_per_s"] = len(lines) / wall
    if len(workers) == 2:
        a, b = workers
        out["speedup"] = out[f"workers_{a}_wall_s"] / out[f"workers_{b}_wall_s"]
    return out


def _report(result: dict[str, Any]) -> str:
    info = result["info"]
    lines = [
        "# Speed outside a Platinum run (python -m rdconfvae.bench speed)",
        "",
        f"Command: `{info['command']}`  ",
        f"Machine: {info['cpu']}, {info['n_cpus']} CPUs; seed {info['seed']}; "
        f"{info['date']}; wall {info['wall_s']:.0f} s.",
        "",
    ]
    if "small" in result:
        lines += [
            f"## Small molecules, n = {info['n_small']}, no explicit hydrogens "
            f"(CPU seconds per call, median of {info['repeats']})",
            "",
            "| molecule | heavy atoms | rdconfvae | ETKDGv3 | ratio |",
            "|---|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r['molecule']} | {r['heavy_atoms']} | {r['rdconfvae_cpu_s']:.3f} "
            f"| {r['etkdg_cpu_s']:.3f} | {r['ratio']:.2f}x |"
            for r in result["small"]
        ]
        lines.append("")
    if "macrocycle" in result:
        m = result["macrocycle"]
        lines += [
            f"## Erythromycin, n = {info['n_macrocycle']}, MMFF94s to convergence (eps = 4r), "
            "CPU seconds",
            "",
            "| generator | embed | MMFF | total | conformers |",
            "|---|---:|---:|---:|---:|",
            f"| rdconfvae `mmff=True` | | | {m['rdconfvae_mmff_cpu_s']:.1f} "
            f"| {m['rdconfvae_conformers']} |",
            f"| ETKDGv3 + `mmff_minimize` | {m['etkdg_cpu_s']:.1f} | {m['etkdg_mmff_cpu_s']:.1f} "
            f"| {m['etkdg_cpu_s'] + m['etkdg_mmff_cpu_s']:.1f} | {m['etkdg_conformers']} "
            f"({m['etkdg_converged']} converged) |",
            "",
            f"Ratio: {m['ratio']:.2f}x.",
            "",
        ]
    if "first_call" in result:
        f = result["first_call"]
        runs = ", ".join(f"{s:.2f}" for s in f["first_embed_runs_s"])
        torch_runs = ", ".join(f"{s:.2f}" for s in f["import_torch_runs_s"])
        lines += [
            "## First call in a fresh interpreter (wall seconds, interpreter start included)",
            "",
            "| command | median | runs |",
            "|---|---:|---|",
            f"| import rdconfvae + `embed(mol, n=10)` | {f['first_embed_wall_s']:.2f} | {runs} |",
            f"| `import torch` alone | {f['import_torch_wall_s']:.2f} | {torch_runs} |",
            "",
        ]
    if "cli" in result:
        c = result["cli"]
        lines += [
            f"## CLI, {c['molecules']} molecules of `{c['input']}`, n = {c['n']}",
            "",
            "| workers | wall s | molecules / s |",
            "|---:|---:|---:|",
        ]
        for w in (1, 2):
            if f"workers_{w}_wall_s" in c:
                lines.append(
                    f"| {w} | {c[f'workers_{w}_wall_s']:.1f} "
                    f"| {c[f'workers_{w}_molecules_per_s']:.2f} |"
                )
        if "speedup" in c:
            lines += ["", f"2 workers against 1: {c['speedup']:.2f}x."]
        lines.append("")
    return "\n".join(lines)


def run_speed(
    out: Path,
    parts: Sequence[str],
    seed: int,
    repeats: int,
    cli_input: Path,
    limit: int | None,
    argv: Sequence[str],
) -> int:
    """Measure ``parts`` (of :data:`PARTS`), write ``out``/report.md and results.json."""
    import torch

    import rdconfvae

    check_options(parts, repeats)
    t0 = time.perf_counter()
    torch.set_num_threads(1)
    rdconfvae.embed(Chem.MolFromSmiles("CCO"), n=2, seed=seed)  # model load, not timed
    result: dict[str, Any] = {}
    if "first-call" in parts:  # first: nothing of this process competes with it yet
        result["first_call"] = first_call(repeats)
    if "cli" in parts:
        result["cli"] = cli(cli_input, limit)
    if "small" in parts:
        result["small"] = small_molecules(50, seed, repeats)
    if "macrocycle" in parts:
        result["macrocycle"] = macrocycle(50, seed)
    result["info"] = {
        "command": "python -m rdconfvae.bench " + shlex.join(argv),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cpu": cpu_model(),
        "n_cpus": os.cpu_count(),
        "seed": seed,
        "repeats": repeats,
        "parts": list(parts),
        "n_small": 50,
        "n_macrocycle": 50,
        "versions": package_versions(),
        "wall_s": time.perf_counter() - t0,
    }
    text = _report(result)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(text)
    with open(out / "results.json", "w", encoding="utf-8") as fh:
        json.dump(jsonable(result), fh, indent=1)
    print(text)
    return 0
