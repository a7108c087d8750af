"""Does ranking samples make the first conformers better? (issue 18, item 7)

For each molecule, ``M`` conformers are made with the shipped defaults
(``rdconfvae.embed(mol, n=M, seed)``), and for each one three ranking scores are
recorded next to its heavy-atom RMSD to the reference pose:

- ``prior``: the prior's negative log-likelihood of the latent up to a per-molecule
  constant, ``|eps|^2 / N`` (z = mu_p + sigma_p * eps, so the likelihood of z is that of
  eps): free to use, since it is known before anything is decoded;
- ``stress``: the solver's weighted stress of the returned heavy-atom coordinates against
  the model's distances, over the sum of the weights (needs the sample decoded and solved);
- ``mmff``: the MMFF94s energy (eps = 4r) of the polished conformer, kcal/mol.

Policies are simulated from the pool: "top-1 of m" splits the M samples into M // m
disjoint groups of m and takes each group's best-ranked sample (m = 1 is today's first
conformer); "top-10 of 30" keeps the 10 best-ranked of 30 against the 3 disjoint groups
of 10. Numbers: share below 1 A (mean over groups, then molecules) and median RMSD.

Decide on CCD validation molecules (``--ccd data_build/ccd``), confirm on Platinum
(``--platinum ../shared/data/platinum/platinum_public.sdf.gz``); never tune on the latter.

    nice -n 10 .venv/bin/python benchmarks/diagnostics/sample_ordering.py \
        --ccd data_build/ccd --limit 200 --out benchmarks/diagnostics/sample_ordering_ccd.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch
from rdkit import Chem
from rdkit.Chem import rdForceFieldHelpers

import rdconfvae
from rdconfvae import bench
from rdconfvae.embedding import engine, sampling
from rdconfvae.geometry import solver
from rdconfvae.geometry.rmsd import rmsd_matrix

log = logging.getLogger("sample_ordering")
SCORES = ("prior", "stress", "mmff")


class Recorder:
    """Wraps :func:`rdconfvae.embedding.sampling.sample_chunk` (serial path) to record each sample's
    scores in call order, with its ``ok`` flag."""

    def __init__(self) -> None:
        self.orig = engine.sample_chunk
        self.rows: list[tuple[float, float, bool]] = []

    def __call__(self, model, graph, geom, eps, temperature, steps, enforce, *rest):
        x, ok = self.orig(model, graph, geom, eps, temperature, steps, enforce, *rest)
        n = graph.num_atoms
        with torch.no_grad():
            _, _, d, w = sampling.decode_pairs(model, graph, geom, eps, temperature)
            ones = torch.ones(d.shape[0], n)
            s = solver.stress(x, d, w, ones) / (0.5 * w.sum((-1, -2)))
        prior = eps.pow(2).sum((-1, -2)) / n
        for p, st, k in zip(prior.tolist(), s.tolist(), ok.tolist(), strict=True):
            self.rows.append((p, st, bool(k)))
        return x, ok


def mmff_energies(mol: Chem.Mol) -> list[float]:
    props = rdForceFieldHelpers.MMFFGetMoleculeProperties(mol, mmffVariant="MMFF94s")
    if props is None:
        return [float("nan")] * mol.GetNumConformers()
    props.SetMMFFDielectricModel(2)  # distance-dependent
    props.SetMMFFDielectricConstant(4.0)
    out = []
    for conf in mol.GetConformers():
        ff = rdForceFieldHelpers.MMFFGetMoleculeForceField(mol, props, confId=conf.GetId())
        out.append(float(ff.CalcEnergy()))
    return out


def measure(records, m: int, seed: int, polish_iters: int | None = None) -> list[dict]:
    rows = []
    rec_hook = Recorder()
    engine.sample_chunk = rec_hook
    ranked = getattr(engine, "batch_order", None)
    if ranked is not None:  # the sampling order, so that conformer i is recorded sample i
        engine.batch_order = lambda job, batch: np.arange(len(batch.all_xyz))
    try:
        for k, rec in enumerate(records):
            mol = bench.input_mol(rec)
            if len(Chem.GetMolFrags(mol)) > 1:
                continue  # one latent set per fragment: the mapping below needs one
            rec_hook.rows = []
            t = time.process_time()
            try:
                params = None
                if polish_iters is not None:
                    params = rdconfvae.EmbedParameters(polishIters=polish_iters)
                ids = rdconfvae.embed(mol, n=m, seed=seed, num_threads=1, params=params)
            except rdconfvae.RdConfVAEError as exc:
                log.info("%s: %s", rec.name, exc)
                continue
            cpu = time.process_time() - t
            good = [(p, s) for p, s, ok in rec_hook.rows if ok][: len(ids)]
            if len(ids) != m or len(good) != m:
                continue
            rmsd = rmsd_matrix(mol, rec.ref)[:, 0]
            rows.append(
                {
                    "name": rec.name,
                    "n_heavy": rec.n_heavy,
                    "n_rot": rec.n_rot,
                    "rmsd": rmsd.tolist(),
                    "prior": [p for p, _ in good],
                    "stress": [s for _, s in good],
                    "mmff": mmff_energies(mol),
                    "cpu_s": cpu,
                }
            )
            if k % 20 == 0:
                log.info("%d / %d", k, len(records))
    finally:
        engine.sample_chunk = rec_hook.orig
        if ranked is not None:
            engine.batch_order = ranked
    return rows


def _pick(rmsd: np.ndarray, score: np.ndarray | None, group: np.ndarray, top: int) -> float:
    idx = group if score is None else group[np.argsort(score[group], kind="stable")[:top]]
    return float(rmsd[idx].min())


def policies(rows: list[dict], m: int) -> dict:
    out: dict = {}
    for size in [s for s in (1, 2, 3, 5, 10, 30) if s <= m and m % s == 0]:
        for score in (None, *SCORES):
            if size == 1 and score is not None:
                continue
            per_mol = []
            for r in rows:
                rmsd = np.asarray(r["rmsd"])
                sc = None if score is None else np.nan_to_num(np.asarray(r[score]), nan=1e9)
                groups = np.arange(m).reshape(-1, size)
                vals = [_pick(rmsd, sc, g, 1) if sc is not None else rmsd[g[0]] for g in groups]
                per_mol.append(vals)
            arr = np.asarray(per_mol)
            out[f"top1_of_{size}_{score or 'first'}"] = {
                "below_1A": float((arr < 1.0).mean()),
                "median": float(np.median(arr.mean(1))),
            }
    if m >= 30 and m % 30 == 0:
        for score in (None, *SCORES):
            per_mol = []
            for r in rows:
                rmsd = np.asarray(r["rmsd"][:30])
                if score is None:
                    vals = [rmsd[g].min() for g in np.arange(30).reshape(3, 10)]
                else:
                    sc = np.nan_to_num(np.asarray(r[score][:30]), nan=1e9)
                    vals = [_pick(rmsd, sc, np.arange(30), 10)]
                per_mol.append(float(np.mean([v < 1.0 for v in vals])))
                per_mol[-1] = (per_mol[-1], float(np.mean(vals)))
            arr = np.asarray(per_mol)
            out[f"top10_of_30_{score or 'first10'}"] = {
                "below_1A": float(arr[:, 0].mean()),
                "median": float(np.median(arr[:, 1])),
            }
    return out


def paired(rows: list[dict], m: int, seed: int = 0) -> list[str]:
    """Each policy against a random sample (the shipped order), paired per molecule: change in
    the share below 1 A with a bootstrap 95 % interval over molecules, and in mean RMSD."""
    rng = np.random.default_rng(seed)

    def ci(x: np.ndarray) -> tuple[float, float]:
        boot = [x[rng.integers(0, len(x), len(x))].mean() for _ in range(2000)]
        return float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))

    base = np.mean([(np.asarray(r["rmsd"][:m]) < 1).mean() for r in rows])
    lines = [f"{len(rows)} molecules, {m} samples each; a random sample: {100 * base:.1f} % < 1 A"]
    for score in SCORES:
        for size in [s for s in (2, 5, 10, 30) if s <= m]:
            d_s, d_r = [], []
            for r in rows:
                rm = np.asarray(r["rmsd"][:m])
                sc = np.nan_to_num(np.asarray(r[score][:m]), nan=1e9)
                groups = np.arange(m - m % size).reshape(-1, size)
                pick = [g[np.argmin(sc[g])] for g in groups]
                d_s.append((rm[pick] < 1).mean() - (rm < 1).mean())
                d_r.append(rm[pick].mean() - rm.mean())
            lo, hi = ci(np.asarray(d_s))
            lines.append(
                f"{score:6s} best of {size:2d}: {100 * np.mean(d_s):+.1f} pts "
                f"(95 % CI {100 * lo:+.1f}..{100 * hi:+.1f}), mean RMSD {np.mean(d_r):+.3f} A"
            )
    if m >= 30:
        for score in SCORES:
            d_s = []
            for r in rows:
                rm = np.asarray(r["rmsd"][:30])
                sc = np.nan_to_num(np.asarray(r[score][:30]), nan=1e9)
                top = np.argsort(sc, kind="stable")[:10]
                first = [rm[g].min() < 1 for g in np.arange(30).reshape(3, 10)]
                d_s.append(float(rm[top].min() < 1) - np.mean(first))
            lo, hi = ci(np.asarray(d_s))
            lines.append(
                f"{score:6s} 10 best of 30 vs 10: {100 * np.mean(d_s):+.1f} pts "
                f"(95 % CI {100 * lo:+.1f}..{100 * hi:+.1f})"
            )
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--ccd", type=Path, help="CCD set directory (validation split used)")
    src.add_argument("--platinum", type=Path, help="Platinum SDF (confirmation only)")
    src.add_argument("--analyze", type=Path, help="print the paired statistics of a saved run")
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("-m", type=int, default=30, help="samples per molecule")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--polish-iters", type=int, help="polishIters (default: the package's)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    if args.analyze is not None:
        saved = json.loads(args.analyze.read_text())
        print("\n".join(paired(saved["rows"], int(saved["info"]["samples"]))))
        return 0
    if args.out is None:
        ap.error("--out is required")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    if args.ccd is not None:
        from rdconfvae.data.ccd import load_ccd_set

        recs = [bench.records.make_record(r.name, r.mol) for r in load_ccd_set(args.ccd, "val")]
    else:
        recs = bench.load_records(args.platinum, "platinum")
    recs = bench.select_records(recs, args.limit, "stratified")
    t = time.time()
    rows = measure(recs, args.m, args.seed, args.polish_iters)
    summary = policies(rows, args.m)
    info = {
        "command": " ".join(sys.argv),
        "molecules": len(rows),
        "samples": args.m,
        "seed": args.seed,
        "wall_s": round(time.time() - t, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"info": info, "summary": summary, "rows": rows}, indent=1))
    for key, val in summary.items():
        print(f"{key:32s} <1A {100 * val['below_1A']:5.1f} %  median {val['median']:.3f} A")
    print("\n".join(paired(rows, args.m)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
