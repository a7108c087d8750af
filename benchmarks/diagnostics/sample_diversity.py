"""Diversity of the n returned conformers (issue 17, section 2), on CCD validation molecules.

    python benchmarks/diagnostics/sample_diversity.py --data DIR_OR_NPZ [--per-bin 40]
        [-n 10,50] [--pool 4] [--arms iid,antithetic,fps-eps,fps-dist,medoid-dist] [--shard i/k]
        [--out benchmarks/diagnostics/sample_diversity.json]

Today every conformer decodes its own i.i.d. standard-normal latent. The arms here change
only which latents are decoded, then run the unchanged default pipeline (solver, stereo
repair, hydrogens, 80-step MMFF94s polish, energy ranking):

* ``iid``: today's sampler (the package's own ``sample_fragment``);
* ``antithetic``: latents in pairs ``eps, -eps`` (mirror draws about the prior mean; free);
* ``fps-eps``: ``--pool`` x n i.i.d. latents, n kept by farthest-point selection in latent
  space (free apart from the selection);
* ``fps-dist``: ``--pool`` x n i.i.d. latents decoded by the network (distances only, no
  solver), n kept by farthest-point selection on the decoded pair distances (Euclidean over
  all pairs, A), then solved and polished; costs ``pool - 1`` extra network passes per
  conformer.
* ``medoid-dist``: as ``fps-dist``, but the n candidates kept are the ones nearest the
  centres of n k-means clusters of the decoded distances (typical members of n groups,
  where farthest-point selection keeps the extremes).

Molecules: the CCD validation split minus the 400 that select training checkpoints,
``--per-bin`` per rotatable-bond bin (``polish_iters.select``, the ladder's rule); no
benchmark molecule. Scores: best heavy-atom RMSD of the n conformers to the CCD
conformation (median, share below 1 A), CPU per conformer, and the paired change of each
arm against ``iid`` (share below 1 A, mean RMSD) with a bootstrap 95 % interval over
molecules. ``--table`` prints the markdown of a saved run (shards of one run joined by
``--out a.json,b.json``; runs of other arms or seeds on the same molecules too, with
``--arms`` naming the arms they all hold). ``--distinct`` asks the question behind the
arms instead: how many of the n conformers the default output returns are distinct at
0.5 A (greedy pruning, symmetry-aware heavy-atom RMSD), against ETKDGv3 on the same
molecules.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from polish_iters import ROT_BINS, select  # noqa: E402

from rdconfvae.bench import rot_bin_label  # noqa: E402

ARMS = ("iid", "antithetic", "fps-eps", "fps-dist", "medoid-dist")


def farthest_points(feat: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of k rows of ``feat`` (M, F) by farthest-point selection from row 0.

    Row 0 is an ordinary i.i.d. draw; each next pick maximises its Euclidean distance to
    the nearest row already picked. Shapes: returns (k,) int64.
    """
    m = feat.shape[0]
    picked = [0]
    near = torch.cdist(feat[:1], feat).squeeze(0)
    for _ in range(1, min(k, m)):
        nxt = int(torch.argmax(near))
        picked.append(nxt)
        near = torch.minimum(near, torch.cdist(feat[nxt : nxt + 1], feat).squeeze(0))
    return torch.tensor(picked, dtype=torch.int64)


def medoids(feat: torch.Tensor, k: int, gen: torch.Generator, iters: int = 10) -> torch.Tensor:
    """Indices of k rows of ``feat`` (M, F): the row nearest each of k Lloyd cluster centres.

    Centres start from k random rows (k-means++ would favour the outliers farthest-point
    selection already picks); the kept rows are typical members of k distinct groups.
    Shapes: returns (k,) int64, distinct indices.
    """
    m = feat.shape[0]
    k = min(k, m)
    centres = feat[torch.randperm(m, generator=gen)[:k]].clone()
    for _ in range(iters):
        owner = torch.cdist(feat, centres).argmin(dim=1)
        for c in range(k):
            members = feat[owner == c]
            if len(members):
                centres[c] = members.mean(dim=0)
    near = torch.cdist(centres, feat)
    picked: list[int] = []
    for c in range(k):  # nearest row not yet taken, centre by centre
        order = torch.argsort(near[c])
        picked.append(next(int(i) for i in order if int(i) not in picked))
    return torch.tensor(picked, dtype=torch.int64)


def latent_chooser(arm: str, pool: int) -> Callable:
    """``choose(graph, k, latent, gen) -> eps (k, N, Z)`` for one arm."""
    from rdconfvae.model.store import load_model

    def choose(graph, k: int, latent: int, gen: torch.Generator) -> torch.Tensor:
        n = graph.num_atoms
        if arm == "antithetic":
            half = torch.randn(math.ceil(k / 2), n, latent, generator=gen)
            return torch.cat([half, -half])[:k]
        cand = torch.randn(k * pool, n, latent, generator=gen)
        if arm == "fps-eps":
            return cand[farthest_points(cand.reshape(len(cand), -1), k)]
        # fps-dist, medoid-dist: the network's distances for every candidate, no solver
        model = load_model()
        inv = torch.full((n,), 1.0 / max(n - 1, 1))
        with torch.no_grad():
            dist, _ = model.module.sample_distances(
                graph.atom_feat, graph.pair_feat, graph.pair_i, graph.pair_j, inv, cand, 1.0
            )
        if arm == "medoid-dist":
            return cand[medoids(dist, k, gen)]
        return cand[farthest_points(dist, k)]

    return choose


def patched_sample_fragment(choose: Callable) -> Callable:
    """``sampling.sample_fragment`` with the first round's latents from ``choose``."""
    from rdconfvae.embedding import sampling

    def sample_fragment(graph, latent, n, seed, rounds, deadline, run_chunks):
        found: list[torch.Tensor] = []
        have = 0
        for round_no in range(max(1, rounds)):
            need = n - have
            if need <= 0:
                break
            k = need if round_no == 0 else int(math.ceil(need * 2)) + 2
            gen = torch.Generator().manual_seed((seed * 1_000_003 + round_no) % (2**63 - 1))
            if round_no == 0:
                eps = choose(graph, k, latent, gen)
            else:
                eps = torch.randn(k, graph.num_atoms, latent, generator=gen)
            sizes = sampling.chunk_sizes(k)
            n_free = graph.free_chiral_idx.shape[0] + graph.free_dbl_idx.shape[0]
            signs: list[torch.Tensor | None] = [None] * len(sizes)
            if n_free:
                draw = torch.randint(0, 2, (k, n_free), generator=gen).float() * 2.0 - 1.0
                signs = list(torch.split(draw, sizes))
            for x, ok in run_chunks(list(torch.split(eps, sizes)), signs):
                good = x[ok]
                found.append(good[: max(n - have, 0)])
                have += int(min(len(good), max(n - have, 0)))
            deadline.check("sampling")
        if not found:
            return np.zeros((0, graph.num_atoms, 3))
        return torch.cat(found).double().numpy()

    return sample_fragment


def shard_molecules(args: argparse.Namespace) -> list[tuple[str, object, int]]:
    """(code, CCD conformation, rotatable bonds) of this ``--shard`` of the selection."""
    part, parts = (int(v) for v in args.shard.split("/"))
    return select(Path(args.data), args.per_bin)[part::parts]


def run(args: argparse.Namespace) -> dict:
    from rdkit import Chem

    import rdconfvae
    from rdconfvae.embedding import engine
    from rdconfvae.evaluation.metrics import min_rmsd_to_pose

    torch.set_num_threads(1)
    original = engine.sample_fragment
    samplers = {
        arm: original if arm == "iid" else patched_sample_fragment(latent_chooser(arm, args.pool))
        for arm in args.arms.split(",")
    }
    sizes = [int(v) for v in args.n.split(",")]
    mols = shard_molecules(args)
    rdconfvae.embed(Chem.MolFromSmiles("CCO"), n=2, seed=1)  # model load, not timed
    rows: dict[str, list[dict]] = {f"{arm}@{n}": [] for n in sizes for arm in samplers}
    for code, ref, n_rot in mols:
        smiles = Chem.MolToSmiles(Chem.RemoveHs(ref))
        for n in sizes:
            for arm, sampler in samplers.items():
                engine.sample_fragment = sampler
                mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
                params = rdconfvae.EmbedParameters()
                params.randomSeed = args.seed
                t = time.process_time()
                try:
                    confs = rdconfvae.EmbedMultipleConfs(mol, n, params)
                except rdconfvae.RdConfVAEError:
                    confs = []
                cpu = time.process_time() - t
                engine.sample_fragment = original
                row = {"code": code, "rot": n_rot, "cpu": cpu, "confs": len(confs)}
                row["rmsd"] = float(min_rmsd_to_pose(mol, ref)) if len(confs) else math.inf
                rows[f"{arm}@{n}"].append(row)
        print(
            code,
            n_rot,
            {k: round(v[-1]["rmsd"], 3) for k, v in rows.items()},
            flush=True,
        )
    return {
        "command": " ".join(sys.argv),
        "seed": args.seed,
        "pool": args.pool,
        "rows": rows,
    }


def distinct_count(d: np.ndarray, cutoff: float = 0.5) -> int:
    """Conformers kept by greedy pruning at ``cutoff`` (A) of the RMSD matrix ``d`` (K, K):
    in order, each is kept unless it lies within ``cutoff`` of one already kept (RDKit's
    ``pruneRmsThresh`` rule, and CONFORGE's 0.5 A)."""
    kept: list[int] = []
    for i in range(d.shape[0]):
        if all(d[i, j] >= cutoff for j in kept):
            kept.append(i)
    return len(kept)


def distinct(args: argparse.Namespace) -> dict:
    """Near-duplicates among the n returned conformers: the default output against ETKDGv3.

    Per molecule: the number of conformers that survive pruning at 0.5 A (symmetry-aware
    heavy-atom RMSD after alignment), the share of conformer pairs closer than 0.5 A, and
    the median pair RMSD; the same seed and molecules for both methods.
    """
    from rdkit import Chem
    from rdkit.Chem import rdDistGeom

    import rdconfvae
    from rdconfvae.evaluation.metrics import rmsd_matrix

    torch.set_num_threads(1)
    n = int(args.n.split(",")[-1])
    rows: dict[str, list[dict]] = {"rdconfvae": [], "ETKDGv3": []}
    for code, ref, n_rot in shard_molecules(args):
        smiles = Chem.MolToSmiles(Chem.RemoveHs(ref))
        for method in rows:
            mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
            if method == "rdconfvae":
                params, embed = rdconfvae.EmbedParameters(), rdconfvae.EmbedMultipleConfs
            else:
                params, embed = rdDistGeom.ETKDGv3(), rdDistGeom.EmbedMultipleConfs
                params.numThreads = 1
            params.randomSeed = args.seed
            ids = list(embed(mol, n, params))
            if len(ids) < 2:
                continue
            d = np.asarray(rmsd_matrix(mol, mol))
            pairs = d[np.triu_indices(len(ids), 1)]
            rows[method].append(
                {
                    "code": code,
                    "rot": n_rot,
                    "confs": len(ids),
                    "distinct": distinct_count(d),
                    "dup_pairs": float(np.mean(pairs < 0.5)),
                    "pair_median": float(np.median(pairs)),
                }
            )
        print(code, n_rot, {m: rs[-1]["distinct"] for m, rs in rows.items() if rs}, flush=True)
    return {"command": " ".join(sys.argv), "seed": args.seed, "n": n, "rows": rows}


def distinct_table(result: dict) -> str:
    lines = [
        f"`{result['command']}`",
        "",
        f"| method | molecules | distinct of {result['n']} at 0.5 A, median "
        "(by rotatable bonds: "
        + ", ".join(rot_bin_label(lo, hi) for lo, hi in ROT_BINS)
        + ") | pairs closer than 0.5 A | median pair RMSD (A) |",
        "|---|---:|---|---:|---:|",
    ]
    for method, rs in result["rows"].items():
        by_bin = []
        for lo, hi in ROT_BINS:
            sub = [r["distinct"] for r in rs if lo <= r["rot"] <= hi]
            by_bin.append(f"{np.median(sub):.0f}" if sub else "-")
        lines.append(
            f"| {method} | {len(rs)} | {np.median([r['distinct'] for r in rs]):.0f} "
            f"({', '.join(by_bin)}) | {100 * np.mean([r['dup_pairs'] for r in rs]):.1f} % | "
            f"{np.median([r['pair_median'] for r in rs]):.2f} |"
        )
    return "\n".join(lines)


def _paired(base: np.ndarray, arm: np.ndarray, codes: list[str], rng: np.random.Generator) -> str:
    """Change of the share below 1 A (points) with a bootstrap 95 % interval over molecules.

    Rows of one molecule (runs with other seeds, joined) are resampled together.
    """
    diff = (arm < 1.0).astype(float) - (base < 1.0).astype(float)
    groups = [np.flatnonzero(np.array(codes) == c) for c in dict.fromkeys(codes)]
    boots = []
    for _ in range(2000):
        pick = np.concatenate([groups[g] for g in rng.integers(0, len(groups), len(groups))])
        boots.append(diff[pick].mean())
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return f"{100 * diff.mean():+.1f} ({100 * lo:+.1f}..{100 * hi:+.1f})"


def merged(results: list[dict], arms: tuple[str, ...] = ARMS) -> dict:
    """One result from the shards of a run (``--shard i/k``), rows joined in shard order.

    Runs of other arms or seeds on the same molecules join too: give every arm's shards and
    seeds in the same order; ``arms`` keeps those arms only (each must be in every run).
    """
    out = dict(results[0], rows={})
    out["command"] = " ; ".join(r["command"] for r in results)
    for r in results:
        for k, rs in r["rows"].items():
            if k.split("@")[0] in arms:
                out["rows"].setdefault(k, []).extend(rs)
    for n in {k.split("@")[1] for k in out["rows"]}:
        at_n = [rs for k, rs in out["rows"].items() if k.split("@")[1] == n]
        codes = {tuple(r["code"] for r in rs) for rs in at_n}
        if len(codes) != 1:
            raise SystemExit(f"the joined runs at n = {n} differ in molecules or their order")
    return out


def merged_distinct(results: list[dict]) -> dict:
    """One ``--distinct`` result from its shards, rows joined in shard order."""
    out = dict(results[0], command=" ; ".join(r["command"] for r in results))
    out["rows"] = {m: [x for r in results for x in r["rows"][m]] for m in results[0]["rows"]}
    return out


def table(result: dict) -> str:
    rng = np.random.default_rng(0)
    rows = result["rows"]
    order = sorted(rows, key=lambda k: (int(k.split("@")[1]), ARMS.index(k.split("@")[0])))
    rows = {k: rows[k] for k in order}
    lines = [
        f"`{result['command']}`",
        "",
        "| arm | n | CPU ms / conformer | best RMSD median (A) | < 1 A | change < 1 A vs iid, "
        "points (95 % CI) | mean RMSD change vs iid (A) |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    for key, rs in rows.items():
        arm, n = key.split("@")
        rmsd = np.array([r["rmsd"] for r in rs])
        base = np.array([r["rmsd"] for r in rows[f"iid@{n}"]])
        confs = sum(r["confs"] for r in rs)
        cpu = 1e3 * sum(r["cpu"] for r in rs) / max(confs, 1)
        finite = np.isfinite(rmsd) & np.isfinite(base)
        codes = [r["code"] for r in rs]
        change = "-" if arm == "iid" else _paired(base, rmsd, codes, rng)
        dmean = "-" if arm == "iid" else f"{np.mean(rmsd[finite] - base[finite]):+.3f}"
        lines.append(
            f"| {arm} | {n} | {cpu:.1f} | {np.median(rmsd):.3f} | "
            f"{100 * np.mean(rmsd < 1.0):.1f} % | {change} | {dmean} |"
        )
    lines += ["", "Below 1 A by rotatable bonds:", ""]
    head = " | ".join(rot_bin_label(lo, hi) for lo, hi in ROT_BINS)
    lines += [f"| arm | n | {head} |", "|---|---:|" + "---:|" * len(ROT_BINS)]
    for key, rs in rows.items():
        arm, n = key.split("@")
        cells = []
        for lo, hi in ROT_BINS:
            sub = [r["rmsd"] for r in rs if lo <= r["rot"] <= hi]
            cells.append(f"{100 * np.mean(np.array(sub) < 1.0):.0f} %" if sub else "-")
        lines.append(f"| {arm} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="the CCD set (python -m rdconfvae.data ccd output)")
    ap.add_argument("--per-bin", type=int, default=40)
    ap.add_argument("-n", default="10,50", help="conformers per call, comma-separated")
    ap.add_argument("--pool", type=int, default=4, help="candidates per kept latent")
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--distinct",
        action="store_true",
        help="count near-duplicates of the default output and ETKDGv3 at the last -n instead",
    )
    ap.add_argument("--shard", default="0/1", help="i/k: every k-th molecule from the i-th")
    ap.add_argument("--out", default=str(Path(__file__).with_suffix(".json")))
    ap.add_argument(
        "--table", action="store_true", help="print the table of --out (comma-separated shards)"
    )
    args = ap.parse_args(argv)
    if args.distinct:
        measure, show, join = distinct, distinct_table, merged_distinct
    else:
        arms = tuple(args.arms.split(","))
        measure, show, join = run, table, lambda runs: merged(runs, arms)
    if args.table:
        print(show(join([json.loads(Path(p).read_text()) for p in args.out.split(",")])))
        return 0
    result = measure(args)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(show(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
