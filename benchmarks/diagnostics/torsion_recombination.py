"""Recombining the samples' torsions, ranked by the model's own ELBO: a sampler lead (CCD).

    python benchmarks/diagnostics/torsion_recombination.py --per-bin 30 \
        > benchmarks/diagnostics/torsion_recombination.md

``flexible_misses.md`` found that for flexible molecules the n samples of ``embed`` hold the
experimental rotamer of nearly every torsion between them, while no single sample holds them
all. This measures whether that can be used without the answer. Held-out CCD validation
molecules with 5 or more rotatable bonds (never the 400 that pick checkpoints, never a benchmark
set; the pool and order of ``decoder_bottleneck.py``):

1. ``rdconfvae.embed(mol, n=50)`` (the default output), heavy atoms;
2. M candidates: a random sample, each acyclic torsion replaced with probability ``--mix`` by
   the same torsion of another random sample (``SetDihedralDeg``: bond lengths, angles and
   rings kept); candidates with a heavy-atom clash (atoms 4+ bonds apart closer than 2.5 A)
   are dropped;
3. every conformer (samples and candidates) scored by the model's evidence bound
   ELBO = log p(d | z = mean of q(z | d, G), G) - KL(q(z | d, G) || p(z | G)) of its heavy-atom
   distances: the objective the model was trained to maximise on experimental conformations;
4. n kept: highest ELBO first, skipping any within 0.5 A RMSD of one already kept.

Columns: the default output (first n samples), the pool's best (samples and candidates: can
recombination reach the pose at all?), and the ELBO-selected n (can the model recognise it?),
at n = 50 and n = 10; share below 1 A and median min-RMSD. Nothing here trains or selects a
model.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from flexible_misses import collect, torsions  # this folder: run as a script
from rdkit import Chem
from rdkit.Chem import rdMolTransforms

import rdconfvae
from rdconfvae.bench import input_mol, rot_bin_label
from rdconfvae.bench.records import make_record
from rdconfvae.evaluation.metrics import min_rmsd_to_pose, superposed_rmsd, symmetry_matches
from rdconfvae.forcefield.mmff import mmff_minimize
from rdconfvae.geometry.conformers import heavy_with_confs
from rdconfvae.model import featurize as fz
from rdconfvae.model.store import load_model

CLASH_A = 2.5
DIVERSE_A = 0.5


def recombine(
    mol: Chem.Mol, xyz: np.ndarray, m: int, mix: float, rng: np.random.Generator
) -> np.ndarray:
    """(M', N, 3) clash-free candidates from the samples ``xyz`` (S, N, 3) of ``mol``.

    ``mol`` may carry hydrogens (they move with their heavy atom); torsions and the clash
    test use its heavy atoms, which must come first (as after ``Chem.AddHs``).
    """
    heavy = Chem.RemoveAllHs(mol) if mol.GetNumAtoms() > mol.GetNumHeavyAtoms() else mol
    n_heavy = heavy.GetNumAtoms()
    tors = torsions(heavy)
    if not tors:
        return np.zeros((0, *xyz.shape[1:]))
    work = Chem.Mol(mol)
    work.RemoveAllConformers()
    work.AddConformer(Chem.Conformer(mol.GetNumAtoms()), assignId=True)
    conf = work.GetConformer()
    angles = np.array(
        [[rdMolTransforms.GetDihedralDeg(c, *t) for t in tors] for c in _confs(mol, xyz)]
    )  # (S, T)
    topo = Chem.GetDistanceMatrix(heavy)
    far = np.triu(topo >= 4, 1)
    out = []
    for _ in range(m):
        tpl = int(rng.integers(len(xyz)))
        for i, p in enumerate(xyz[tpl]):
            conf.SetAtomPosition(i, p.tolist())
        donors = rng.integers(len(xyz), size=len(tors))
        for k, t in enumerate(tors):
            if rng.random() < mix:
                rdMolTransforms.SetDihedralDeg(conf, *t, float(angles[donors[k], k]))
        x = conf.GetPositions()
        h = x[:n_heavy]
        d = np.linalg.norm(h[:, None] - h[None], axis=-1)
        if far.any() and d[far].min() < CLASH_A:
            continue
        out.append(x)
    return np.asarray(out).reshape(-1, *xyz.shape[1:])


def _confs(heavy: Chem.Mol, xyz: np.ndarray) -> list[Chem.Conformer]:
    confs = []
    for x in xyz:
        c = Chem.Conformer(heavy.GetNumAtoms())
        for i, p in enumerate(x):
            c.SetAtomPosition(i, p.tolist())
        confs.append(c)
    return confs


@torch.no_grad()
def elbo(net: torch.jit.ScriptModule, g: fz.MolGraph, xyz: np.ndarray) -> np.ndarray:
    """The model's evidence lower bound of each conformation (C, N, 3) -> (C,), nats."""
    n = g.num_atoms
    inv = torch.full((n,), 1.0 / max(n - 1, 1))
    h, e, mu_p, logvar_p = net.encode_graph(g.atom_feat, g.pair_feat, g.pair_i, g.pair_j, inv)
    x = torch.as_tensor(xyz, dtype=torch.float32)
    dist = (x[:, g.pair_i] - x[:, g.pair_j]).norm(dim=-1).clamp(min=1e-3)  # (C, P)
    scores = []
    for d in dist:
        mu_q, logvar_q = net.encode_posterior(h, e, g.pair_i, g.pair_j, inv, d)
        mu, log_sigma = net.decode(h, e, g.pair_i, g.pair_j, inv, mu_q.unsqueeze(0))
        z = (torch.log(d) - mu[0]) / torch.exp(log_sigma[0])
        nll = (0.5 * z.pow(2) + log_sigma[0]).sum()
        kl = (
            0.5
            * (
                logvar_p
                - logvar_q
                + (torch.exp(logvar_q) + (mu_q - mu_p).pow(2)) / torch.exp(logvar_p)
                - 1.0
            ).sum()
        )
        scores.append(float(-(nll + kl)))
    return np.asarray(scores)


def select(xyz: np.ndarray, score: np.ndarray, n: int) -> np.ndarray:
    """Up to ``n`` conformers, best score first, none within DIVERSE_A of one kept."""
    kept: list[int] = []
    ident = np.arange(xyz.shape[1])[None]
    for i in np.argsort(-score):
        if kept and superposed_rmsd(xyz[i][None], xyz[kept], ident).min() < DIVERSE_A:
            continue
        kept.append(int(i))
        if len(kept) == n:
            break
    return xyz[kept]


def analyse(rec_mol: Chem.Mol, name: str, args: argparse.Namespace, net) -> dict:
    record = make_record(name, rec_mol)
    mol = input_mol(record)
    rdconfvae.embed(mol, n=args.n, seed=args.seed)
    heavy, heavy_idx = fz.heavy_atom_mol(mol)
    g = fz.featurize(heavy)
    samples = np.stack([c.GetPositions()[heavy_idx] for c in mol.GetConformers()])
    t0 = time.process_time()
    rng = np.random.default_rng(args.seed)
    cands = recombine(heavy, samples, args.candidates, args.mix, rng)
    pool = np.concatenate([samples, cands]) if len(cands) else samples
    score = elbo(net, g, pool)
    cpu = time.process_time() - t0

    def best(xyz: np.ndarray) -> float:
        return min_rmsd_to_pose(heavy_with_confs(heavy, xyz), record.ref)

    out = {"name": name, "n_rot": record.n_rot, "cpu_s": cpu, "n_cands": len(cands)}
    out["pool"] = best(pool)
    out["cands"] = best(cands) if len(cands) else float("inf")
    for n in (args.n, 10):
        out[f"default_{n}"] = best(samples[:n])
        out[f"elbo_{n}"] = best(select(pool, score, n))
        out[f"elbo_samples_{n}"] = best(select(samples, score[: len(samples)], n))
    # does the ELBO prefer conformers near the experiment? rank correlation within the pool
    rms = superposed_rmsd(
        pool, record.ref.GetConformer().GetPositions()[None], symmetry_matches(heavy, record.ref)
    )[:, 0]
    out["spearman"] = float(
        np.corrcoef(np.argsort(np.argsort(-score)), np.argsort(np.argsort(rms)))[0, 1]
    )
    return out


def analyse_mmff(rec_mol: Chem.Mol, name: str, args: argparse.Namespace) -> dict:
    """The same pool with hydrogens, minimised (MMFF94s, eps = 4r), selected by energy."""
    record = make_record(name, rec_mol)
    mol = input_mol(record)
    rdconfvae.embed(mol, n=args.n, seed=args.seed)
    n_heavy = mol.GetNumHeavyAtoms()
    assert all(a.GetAtomicNum() > 1 for a in mol.GetAtoms() if a.GetIdx() < n_heavy)
    samples = np.stack([c.GetPositions() for c in mol.GetConformers()])
    t0 = time.process_time()
    rng = np.random.default_rng(args.seed)
    cands = recombine(mol, samples, args.candidates, args.mix, rng)
    pool_xyz = np.concatenate([samples, cands]) if len(cands) else samples
    pool = Chem.Mol(mol)
    pool.RemoveAllConformers()
    for c in _confs(mol, pool_xyz):
        pool.AddConformer(c, assignId=True)
    res = mmff_minimize(pool, max_iters=args.mmff_iters)
    if res is None:
        raise ValueError("MMFF cannot type the molecule")
    energy = np.array([c.GetDoubleProp("MMFF_ENERGY") for c in pool.GetConformers()])
    cpu = time.process_time() - t0
    heavy, heavy_idx = fz.heavy_atom_mol(mol)
    mini = np.stack([c.GetPositions()[heavy_idx] for c in pool.GetConformers()])
    raw = samples[:, heavy_idx]

    def best(xyz: np.ndarray) -> float:
        return min_rmsd_to_pose(heavy_with_confs(heavy, xyz), record.ref)

    s = len(samples)
    out = {"name": name, "n_rot": record.n_rot, "cpu_s": cpu, "n_cands": len(cands)}
    out["pool"] = best(mini)
    for n in (args.n, 10):
        out[f"default_{n}"] = best(raw[:n])
        out[f"mmff_{n}"] = best(mini[:n])
        out[f"energy_{n}"] = best(select(mini, -energy, n))
        out[f"energy_samples_{n}"] = best(select(mini[:s], -energy[:s], n))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("data_build/ccd"))
    ap.add_argument("--per-bin", type=int, default=30, help="molecules per bin 5-6, 7-9, 10+")
    ap.add_argument("-n", type=int, default=50)
    ap.add_argument("--candidates", type=int, default=300)
    ap.add_argument("--mix", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument(
        "--select",
        choices=("elbo", "mmff"),
        default="elbo",
        help="rank by the model's ELBO, or minimise the pool with MMFF and rank by energy",
    )
    ap.add_argument("--mmff-iters", type=int, default=200, help="--select mmff: iterations")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = load_model()
    if args.select == "mmff":
        rows = collect(args.data, args.per_bin, lambda rec: analyse_mmff(rec.mol, rec.name, args))
    else:
        rows = collect(
            args.data, args.per_bin, lambda rec: analyse(rec.mol, rec.name, args, model.module)
        )
    by = "MMFF energy" if args.select == "mmff" else "the model's ELBO"
    print(f"# Recombining torsions across samples, ranked by {by} (CCD validation)\n")
    print(
        f"Weights sha256 `{model.manifest['sha256'][:12]}...` (epoch "
        f"{model.manifest['validation']['epoch']}); n = {args.n}, {args.candidates} candidates, "
        f"mix {args.mix}, seed {args.seed}; command: `python {' '.join(sys.argv)}`\n"
    )
    n = args.n
    if args.select == "mmff":
        print(
            f"MMFF94s (eps = 4r), up to {args.mmff_iters} iterations on every conformer of the "
            "pool; kept by energy, lowest first, 0.5 A apart.\n"
        )
        cols = [
            (f"default_{n}", f"default, n = {n}"),
            (f"mmff_{n}", f"default + MMFF, n = {n}"),
            ("pool", "pool + MMFF (samples + candidates)"),
            (f"energy_{n}", f"lowest-energy {n} of the pool"),
            ("default_10", "default, n = 10"),
            ("mmff_10", "default + MMFF, n = 10"),
            ("energy_samples_10", "lowest-energy 10 of the samples"),
            ("energy_10", "lowest-energy 10 of the pool"),
        ]
        print_table(rows, cols, [])
    else:
        cols = [
            (f"default_{n}", f"default, n = {n}"),
            ("pool", "pool (samples + candidates)"),
            (f"elbo_{n}", f"ELBO-selected {n} of the pool"),
            (f"elbo_samples_{n}", f"ELBO-selected {n} of the samples"),
            ("default_10", "default, n = 10"),
            ("elbo_10", "ELBO-selected 10 of the pool"),
            ("elbo_samples_10", "ELBO-selected 10 of the samples"),
        ]
        print_table(rows, cols, [("ELBO-RMSD rank corr.", "spearman", ".2f")])
    return 0


def print_table(
    rows: dict[tuple[int, int], list[dict]],
    cols: list[tuple[str, str]],
    medians: list[tuple[str, str, str]],
) -> None:
    """Share below 1 A (median) of each RMSD column ``(key, title)`` per bin and for all
    molecules, then the median of each ``(title, key, format)`` and of the extra CPU."""
    print("Share below 1 A (median min-RMSD, A):\n")
    titles = [c[1] for c in cols] + [m[0] for m in medians] + ["extra CPU / molecule"]
    print("| rotatable bonds | molecules | " + " | ".join(titles) + " |")
    print("|---|---|" + "---|" * len(titles))
    everything = [r for rs in rows.values() for r in rs]
    for label, rs in [(rot_bin_label(*b), v) for b, v in rows.items()] + [("all 5+", everything)]:
        if not rs:
            continue
        cells = []
        for key, _ in cols:
            v = np.asarray([r[key] for r in rs])
            cells.append(f"{100 * (v < 1).mean():.0f} % ({np.median(v):.2f})")
        cells += [format(np.median([r[key] for r in rs]), fmt) for _, key, fmt in medians]
        cells.append(f"{np.median([r['cpu_s'] for r in rs]):.1f} s")
        print(f"| {label} | {len(rs)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    raise SystemExit(main())
