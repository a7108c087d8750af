"""Diagnostic ladder: which part of the model limits reconstruction (issue 17, section 1).

Every rung (an architecture or loss variant) is trained with the same short budget on
the same training subset with the same seed, and its checkpoints are scored along the
way, so each rung gives a learning curve (reconstruction against training steps):

    python benchmarks/diagnostics/ladder.py train --name vae
    python benchmarks/diagnostics/ladder.py train --name ae --mode ae
    python benchmarks/diagnostics/ladder.py train --name path2 --model path_layers=2
    python benchmarks/diagnostics/ladder.py train --name NAME --steps 3000 --lr-decay 600
    python benchmarks/diagnostics/ladder.py train --name fit-ae --mode ae --overfit 32
    python benchmarks/diagnostics/ladder.py table > benchmarks/diagnostics/ladder.md

The learning rate is constant (Adam 1e-3) unless ``--lr-decay STEP`` cosine-decays it from
STEP to a tenth at ``--steps``. ``--overfit N`` is a capacity test: the rung trains on N
training molecules per rotatable-bond bin and is scored on those same molecules, so its curve
says how closely decoder + solver can fit conformations they have seen, apart from generalisation.

Evaluation molecules come from the CCD validation split, never from the 400 that
``rdconfvae.train`` uses to select checkpoints (seed ``preset.seed + 1``, as
``decoder_bottleneck.py`` does), and never from a benchmark set (those are excluded when
the CCD set is built; :func:`rdconfvae.train.check_exclusions` checks again). They are
drawn per rotatable-bond bin (RDKit strict definition, heavy atoms) so every bin holds the
same number.

Scores per checkpoint, heavy atoms, Kabsch RMSD with mirror images allowed (the trainer's
own validation metric; distances cannot tell mirror images apart), solved with
:func:`rdconfvae.geometry.solver.solve_pairs` (30 SMACOF steps, no stereo repair):

* ``post``: decoder at the posterior mean z = E q(z | G, R*) (can decoder + solver
  represent the answer at all?),
* ``prior10``: the best of 10 prior draws (and ``prior50``, best of 50, at the end).

A rung's JSON (``benchmarks/diagnostics/ladder/NAME.json``) holds the curve, the exact
command and the configuration; ``table`` turns all of them into the markdown table, with
the verdicts of ``ladder/notes.json``. Checkpoints go to ``runs/ladder/NAME`` and a
stopped rung continues with ``--resume``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from rdconfvae.bench import ROT_BINS, rot_bin_label  # the benchmarks' own bins (inclusive)
from rdconfvae.geometry import solver
from rdconfvae.model import featurize as fz
from rdconfvae.model.network import ConfVAE, default_config
from rdconfvae.train import (
    PRESETS,
    Example,
    Preset,
    batch_loss,
    check_exclusions,
    checkpoint_selection,
    collate,
    featurize_records,
    load_records,
)
from rdconfvae.train.objective import cosine_lr

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "ladder"


def _parse_kv(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        if not _:
            raise SystemExit(f"expected KEY=VALUE, got {item!r}")
        out[key] = json.loads(value)
    return out


def _stratified(
    pool: list, per_bin: int, preset: Preset, seed: int
) -> tuple[list[Example], list[int]]:
    """``per_bin`` featurized records of ``pool`` per rotatable-bond bin, in a seeded order."""
    from rdkit.Chem import rdMolDescriptors

    order = np.random.default_rng(seed).permutation(len(pool))
    chosen: list[Example] = []
    rot: list[int] = []
    filled = dict.fromkeys(ROT_BINS, 0)
    for i in order:
        if all(v >= per_bin for v in filled.values()):
            break
        heavy, _ = fz.heavy_atom_mol(pool[i].mol)
        n_rot = int(rdMolDescriptors.CalcNumRotatableBonds(heavy))
        key = next(b for b in ROT_BINS if b[0] <= n_rot <= b[1])
        if filled[key] >= per_bin or not 4 <= heavy.GetNumAtoms() <= preset.max_heavy_atoms:
            continue
        ex, _ = featurize_records([pool[i]], preset.max_heavy_atoms)
        if ex:
            chosen.append(ex[0])
            rot.append(n_rot)
            filled[key] += 1
    return chosen, rot


def load_sets(
    data: Path, preset: Preset, train_molecules: int, per_bin: int, overfit: int = 0
) -> tuple[list[Example], list[Example], list[int]]:
    """Training subset, evaluation molecules and their rotatable-bond counts.

    With ``overfit`` > 0 the training set is ``overfit`` training molecules per rotatable-bond
    bin and the evaluation molecules are those same molecules (a capacity test: can the model
    fit conformations it is trained on?).
    """
    records = load_records(data)
    check_exclusions(records, names_are_ccd_codes=True)
    train_recs = [r for r in records if r.split != "val"]
    if overfit:
        chosen, rot = _stratified(train_recs, overfit, preset, seed=7)
        return chosen, chosen, rot
    idx = np.random.default_rng(preset.seed).permutation(len(train_recs))[:train_molecules]
    train_ex, _ = featurize_records([train_recs[i] for i in sorted(idx)], preset.max_heavy_atoms)
    val = [r for r in records if r.split == "val"]
    selected = set(checkpoint_selection(len(val), preset))  # the trainer's, left out
    pool = [r for i, r in enumerate(val) if i not in selected]
    eval_ex, rot = _stratified(pool, per_bin, preset, seed=5)
    return train_ex, eval_ex, rot


def cached_sets(
    args: argparse.Namespace, preset: Preset
) -> tuple[list[Example], list[Example], list[int]]:
    """:func:`load_sets`, featurized once per (subset, bins, seed) and kept in the run dir."""
    key = f"sets-{args.train_molecules}-{args.per_bin}-{preset.seed}.pt"
    if args.overfit:
        key = f"sets-overfit-{args.overfit}.pt"
    path = Path(args.run_dir) / key
    if path.exists():
        blob = torch.load(path, weights_only=False)
        return blob["train"], blob["eval"], blob["rot"]
    train_ex, eval_ex, rot = load_sets(
        args.data, preset, args.train_molecules, args.per_bin, args.overfit
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"train": train_ex, "eval": eval_ex, "rot": rot}, path)
    return train_ex, eval_ex, rot


def reference(args: argparse.Namespace) -> int:
    """Score the shipped weights with the same evaluator (one row, no training)."""
    from rdconfvae.model.store import load_model

    torch.set_num_threads(args.threads)
    preset = PRESETS["default"]
    _, eval_ex, rot = cached_sets(args, preset)
    shipped = load_model()
    config = dict(shipped.manifest["model_config"])
    model = ConfVAE(config)
    model.load_state_dict(shipped.module.state_dict())
    training = shipped.manifest["training"]
    scores = evaluate(model, eval_ex, rot, (10, 50))
    result = {
        "name": args.name,
        "command": "python benchmarks/diagnostics/ladder.py " + " ".join(sys.argv[1:]),
        "mode": "vae",
        "model_options": {},
        "config": config,
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_molecules": training["train_molecules"],
        "eval_molecules": len(eval_ex),
        "steps": training["steps"],
        "elapsed_s": training["wall_time_s"],
        "finished": True,
        "curve": [{"step": training["steps"], **scores}],
        "train": [],
        "reference": True,
        "overfit_per_bin": args.overfit,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"{args.name}: post {scores['post']['all']['median']:.3f}", flush=True)
    return 0


def build_model(preset: Preset, model_options: dict) -> tuple[ConfVAE, dict]:
    config = default_config(fz.ATOM_DIM, fz.PAIR_DIM)
    for key in ("hidden", "latent", "trunk_layers", "encoder_layers", "decoder_layers"):
        config[key] = getattr(preset, key)
    config.update(model_options)
    return ConfVAE(config), config


def _summary(values: list[float], rot: list[int]) -> dict:
    arr, rot_arr = np.asarray(values), np.asarray(rot)

    def stats(a: np.ndarray) -> dict:
        return {
            "n": int(len(a)),
            "median": float(np.median(a)),
            "below_0_5": float((a < 0.5).mean()),
            "below_1": float((a < 1.0).mean()),
        }

    out = {"all": stats(arr)}
    for lo, hi in ROT_BINS:
        sel = (rot_arr >= lo) & (rot_arr <= hi)
        if sel.any():
            out[rot_bin_label(lo, hi)] = stats(arr[sel])
    return out


@torch.no_grad()
def evaluate(
    model: ConfVAE, eval_ex: list[Example], rot: list[int], samples: tuple[int, ...]
) -> dict:
    """Posterior-mean reconstruction and best-of-k prior draws (k in ``samples``)."""
    model.eval()
    post: list[float] = []
    prior: dict[int, list[float]] = {k: [] for k in samples}
    gen = torch.Generator().manual_seed(0)
    kmax = max(samples) if samples else 0
    for ex in eval_ex:
        g = ex.graph
        n = g.num_atoms
        inv = torch.full((n,), 1.0 / max(n - 1, 1))
        ref_d = (ex.coords[g.pair_i] - ex.coords[g.pair_j]).norm(dim=-1)
        h, e, mu_p, logvar_p = model.encode_graph(g.atom_feat, g.pair_feat, g.pair_i, g.pair_j, inv)
        mu_q, _ = model.encode_posterior(h, e, g.pair_i, g.pair_j, inv, ref_d)
        mu, log_sigma = model.decode(h, e, g.pair_i, g.pair_j, inv, mu_q.unsqueeze(0), g.pair_feat)
        post.append(_rmsd(mu.exp(), log_sigma, g, ex.coords)[0])
        if kmax:
            eps = torch.randn(kmax, n, model.latent, generator=gen)
            dist, sig = model.sample_distances(
                g.atom_feat, g.pair_feat, g.pair_i, g.pair_j, inv, eps, 1.0
            )
            r = np.asarray(_rmsd(dist, sig, g, ex.coords))
            for k in samples:
                prior[k].append(float(r[:k].min()))
    model.train()
    out = {"post": _summary(post, rot)}
    for k in samples:
        out[f"prior{k}"] = _summary(prior[k], rot)
    return out


def _rmsd(dist: torch.Tensor, log_sigma: torch.Tensor, g: fz.MolGraph, ref: torch.Tensor):
    n = g.num_atoms
    x = solver.solve_pairs(dist, log_sigma, g.pair_i, g.pair_j, n)
    k = x.shape[0]
    rmsd = solver.superpose_rmsd(x, ref.expand(k, n, 3), torch.ones(k, n), allow_reflection=True)
    return [float(v) for v in rmsd]


def decayed_lr(lr: float, step: int, start: int, end: int) -> float:
    """Cosine decay of the learning rate from ``lr`` at ``start`` to ``lr / 10`` at ``end``."""
    return cosine_lr(lr, (step - start) / max(end - start, 1), 0.1)


def train_rung(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    preset = Preset(
        **{**asdict(PRESETS["default"]), "batch_size": args.batch_size, **_parse_kv(args.set)}
    )
    model_options = _parse_kv(args.model)
    ae = args.mode == "ae"
    if ae:
        # deterministic latent (z = posterior mean) and no information cost to the encoder;
        # the prior still regresses onto the posterior (KL-balancing's prior-side term)
        preset.free_bits = 1e9
    torch.manual_seed(preset.seed)
    train_ex, eval_ex, rot = cached_sets(args, preset)
    model, config = build_model(preset, model_options)
    opt = torch.optim.Adam(model.parameters(), lr=preset.lr)
    gen = torch.Generator().manual_seed(preset.seed)
    run = Path(args.run_dir) / args.name
    run.mkdir(parents=True, exist_ok=True)
    state = {"step": 0, "elapsed_s": 0.0, "curve": [], "train": []}
    if args.resume and (run / "last.ckpt").exists():
        ckpt = torch.load(run / "last.ckpt", weights_only=True)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        gen.set_state(ckpt["generator"])
        state = json.loads(ckpt["state"])
    n_params = sum(p.numel() for p in model.parameters())
    out_path = RESULTS / f"{args.name}.json"
    RESULTS.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/diagnostics/ladder.py " + " ".join(
        a for a in sys.argv[1:] if a != "--resume"
    )

    def record(final: bool) -> None:
        result = {
            "name": args.name,
            "command": command,
            "mode": args.mode,
            "model_options": model_options,
            "config": config,
            "preset": asdict(preset),
            "parameters": n_params,
            "train_molecules": len(train_ex),
            "eval_molecules": len(eval_ex),
            "steps": state["step"],
            "elapsed_s": state["elapsed_s"],
            "finished": final,
            "lr_decay_from": args.lr_decay,
            "overfit_per_bin": args.overfit,
            "curve": state["curve"],
            "train": state["train"],
        }
        out_path.write_text(json.dumps(result, indent=1) + "\n")

    def checkpoint() -> None:
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "generator": gen.get_state(),
                "state": json.dumps(state),
                "config": json.dumps(config),
            },
            run / "last.ckpt",
        )

    running: dict[str, float] = {}
    clock = time.time()
    while state["step"] < args.steps:
        # a fixed order per pass over the subset, so a resumed rung sees the same batches
        # (the subset is a multiple of the batch size in the defaults)
        epoch, pos = divmod(state["step"] * preset.batch_size, len(train_ex))
        order = np.random.default_rng(preset.seed + 1000 + epoch).permutation(len(train_ex))
        idx = order[pos : pos + preset.batch_size]
        examples = [train_ex[i] for i in idx]
        eps = torch.randn(sum(ex.graph.num_atoms for ex in examples), model.latent, generator=gen)
        if ae:
            eps = torch.zeros_like(eps)
        batch = collate(examples)
        loss, parts = batch_loss(model, batch, preset, eps)
        if args.lr_decay is not None:
            for group in opt.param_groups:
                group["lr"] = decayed_lr(preset.lr, state["step"], args.lr_decay, args.steps)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        state["step"] += 1
        for k, v in parts.items():
            running[k] = 0.95 * running.get(k, v) + 0.05 * v
        if state["step"] % args.eval_every == 0 or state["step"] == args.steps:
            state["elapsed_s"] += time.time() - clock
            final = state["step"] == args.steps
            samples = (10, 50) if final else (10,)
            t0 = time.time()
            scores = evaluate(model, eval_ex, rot, samples)
            state["curve"].append({"step": state["step"], "train_s": state["elapsed_s"], **scores})
            state["train"].append({"step": state["step"], **running})
            print(
                f"{args.name} step {state['step']} train {state['elapsed_s']:.0f}s "
                f"eval {time.time() - t0:.0f}s post {scores['post']['all']['median']:.3f} "
                f"prior10 {scores['prior10']['all']['median']:.3f} "
                + " ".join(f"{k}={v:.3f}" for k, v in running.items()),
                flush=True,
            )
            checkpoint()
            record(final)
            clock = time.time()
    return 0


def _fmt(s: dict) -> str:
    return f"{s['median']:.2f} / {100 * s['below_0_5']:.0f} / {100 * s['below_1']:.0f}"


def table(args: argparse.Namespace) -> int:
    notes_path = RESULTS / "notes.json"
    notes = json.loads(notes_path.read_text()) if notes_path.exists() else {}
    rungs = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))]
    rungs = [r for r in rungs if "curve" in r]
    order = notes.get("_order", [])
    rungs.sort(key=lambda r: order.index(r["name"]) if r["name"] in order else len(order))
    bins = [rot_bin_label(lo, hi) for lo, hi in ROT_BINS]
    print("# Diagnostic ladder (issue 17, section 1)\n")
    print(notes.get("_intro", "") + "\n")
    print("## Final checkpoint of each rung\n")
    print(
        "Cells: median RMSD (A) / % below 0.5 A / % below 1 A. `post` = posterior mean, "
        "`prior k` = best of k prior draws.\n"
    )
    print(
        "| rung | steps | train min | params | KL nats/atom | post | prior 10 | prior 50 "
        "| why it lost |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rungs:
        last = r["curve"][-1]
        p50 = _fmt(last["prior50"]["all"]) if "prior50" in last else "-"
        kl = f"{r['train'][-1]['kl']:.3f}" if r["train"] else "-"
        done = "" if r["finished"] else " (unfinished)"
        print(
            f"| {r['name']}{done} | {r['steps']} | {r['elapsed_s'] / 60:.1f} | "
            f"{r['parameters']:,} | {kl} | {_fmt(last['post']['all'])} | "
            f"{_fmt(last['prior10']['all'])} | {p50} | {notes.get(r['name'], '')} |"
        )
    print("\n## Learning curves: posterior-mean median RMSD (A) against training steps\n")
    steps = sorted({c["step"] for r in rungs for c in r["curve"]})
    print("| rung | " + " | ".join(str(s) for s in steps) + " |")
    print("|---|" + "---|" * len(steps))
    for r in rungs:
        by = {c["step"]: c["post"]["all"]["median"] for c in r["curve"]}
        print(
            f"| {r['name']} | "
            + " | ".join(f"{by[s]:.3f}" if s in by else "" for s in steps)
            + " |"
        )
    print("\n## Learning curves: prior best-of-10 median RMSD (A)\n")
    print("| rung | " + " | ".join(str(s) for s in steps) + " |")
    print("|---|" + "---|" * len(steps))
    for r in rungs:
        by = {c["step"]: c["prior10"]["all"]["median"] for c in r["curve"]}
        print(
            f"| {r['name']} | "
            + " | ".join(f"{by[s]:.3f}" if s in by else "" for s in steps)
            + " |"
        )
    print("\n## Learning curves: KL(q || p) in nats per atom (training batches, running mean)\n")
    print("| rung | " + " | ".join(str(s) for s in steps) + " |")
    print("|---|" + "---|" * len(steps))
    for r in rungs:
        by = {t["step"]: t["kl"] for t in r["train"]}
        print(
            f"| {r['name']} | "
            + " | ".join(f"{by[s]:.3f}" if s in by else "" for s in steps)
            + " |"
        )
    print("\n## By rotatable bonds (final checkpoint, posterior mean; prior best of 10)\n")
    print("| rung | " + " | ".join(f"post {b}" for b in bins) + " | "
          + " | ".join(f"prior10 {b}" for b in bins) + " |")  # fmt: skip
    print("|---|" + "---|" * (2 * len(bins)))
    for r in rungs:
        last = r["curve"][-1]
        cells = [_fmt(last["post"][b]) if b in last["post"] else "-" for b in bins]
        cells += [_fmt(last["prior10"][b]) if b in last["prior10"] else "-" for b in bins]
        print(f"| {r['name']} | " + " | ".join(cells) + " |")
    print("\n## Commands\n")
    print(notes.get("_how", "") + "\n")
    for r in rungs:
        print(f"- {r['name']}: `{r['command']}`")
    if notes.get("_conclusion"):
        print("\n## Reading\n")
        print(notes["_conclusion"])
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    tr = sub.add_parser("train", help="train and score one rung")
    tr.add_argument("--name", required=True)
    tr.add_argument("--mode", choices=("vae", "ae"), default="vae")
    tr.add_argument("--model", nargs="*", default=[], help="model config KEY=JSON")
    tr.add_argument("--set", nargs="*", default=[], help="preset field KEY=JSON")
    tr.add_argument("--steps", type=int, default=300)
    tr.add_argument("--eval-every", type=int, default=50)
    tr.add_argument("--batch-size", type=int, default=32)
    tr.add_argument("--resume", action="store_true")
    tr.add_argument(
        "--lr-decay",
        type=int,
        default=None,
        metavar="STEP",
        help="cosine-decay the learning rate from STEP to a tenth of it at --steps",
    )
    ref = sub.add_parser("reference", help="score the shipped weights (no training)")
    ref.add_argument("--name", default="shipped-v1")
    sub.add_parser("table", help="markdown table of every rung's JSON")
    for p in (tr, ref):
        p.add_argument("--data", type=Path, default=Path("data_build/ccd"))
        p.add_argument("--train-molecules", type=int, default=8000)
        p.add_argument("--per-bin", type=int, default=20)
        p.add_argument("--threads", type=int, default=1)
        p.add_argument("--run-dir", default="runs/ladder")
        p.add_argument(
            "--overfit",
            type=int,
            default=0,
            metavar="N",
            help="capacity test: train on N training molecules per rotatable-bond bin and "
            "score on those same molecules",
        )
    args = ap.parse_args()
    if args.cmd == "train":
        return train_rung(args)
    return reference(args) if args.cmd == "reference" else table(args)


if __name__ == "__main__":
    raise SystemExit(main())
