"""A training run's validation curve beside the shipped v1 run's, epoch by epoch (issue 17 §3).

Both are the trainer's own checkpoint-selection metric: median over the 400 fixed CCD
validation molecules of the minimum heavy-atom RMSD of 8 prior draws (``validate`` in
``rdconfvae/train/objective.py``, same seed), so the columns compare directly. v1's curve
is ``v1_curve.json`` (the shipped run's epochs 1-29, reproduced to the last digit by a re-run:
``reproduce_weights.md``).

    python benchmarks/diagnostics/v2_curve.py runs/v2-long > benchmarks/diagnostics/v2_training.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from rdconfvae.train.objective import cosine_lr

HERE = Path(__file__).resolve().parent
SHOWN = ("lr_schedule", "lr", "lr_final", "max_epochs", "ae_warmup_steps", "hidden", "latent")


def learning_rate(preset: dict, step: int, steps_per_epoch: int) -> float | None:
    """The learning rate of the last step before ``step`` (cosine schedule only)."""
    if preset.get("lr_schedule") != "cosine":
        return None
    total = preset["max_epochs"] * steps_per_epoch
    return cosine_lr(preset["lr"], (step - 1) / total, preset["lr_final"])


def table(run: Path) -> str:
    ckpt = torch.load(run / "last.ckpt", weights_only=True, map_location="cpu")
    state, preset = json.loads(ckpt["state"]), json.loads(ckpt["preset"])
    hist = state["history"]
    v1 = {
        r["epoch"]: r["val_median_min_rmsd"]
        for r in json.loads((HERE / "v1_curve.json").read_text())["curve"]
    }
    per_epoch = hist[0]["step"] if hist else 1
    out = [
        f"# Validation curve of `{run.name}` beside shipped v1",
        "",
        f"Run `{run}`: preset values {json.dumps({k: preset.get(k) for k in SHOWN})}; "
        f"{state['epoch']} epochs, {state['step']} steps, "
        f"{state['elapsed_s'] / 3600:.2f} h of training wall time so far; "
        f"best validation median {state['best']:.4f} A.",
        "",
        "Validation: median minimum RMSD (A) of 8 prior draws over the trainer's 400 CCD "
        "validation molecules, and the share of them below 1 A (lower median is better). "
        "v1 (the shipped weights) used the `default` preset: learning rate halved on plateau, "
        "stopped by patience at epoch 36, best (shipped) epoch 29 at 1.0419 A.",
        "",
        "| epoch | v1 val median | run val median | run val < 1 A | run train RMSD | run train KL "
        "(nats/atom) | learning rate |",
        "|---|---|---|---|---|---|---|",
    ]
    for h in hist:
        e = h["epoch"]
        lr = learning_rate(preset, h["step"], per_epoch)
        ref = f"{v1[e]:.4f}" if e in v1 else ""
        out.append(
            f"| {e} | {ref} | {h['val_median_min_rmsd']:.4f} | "
            f"{100 * h['val_share_below_1A']:.1f} % | {h.get('train_rmsd', float('nan')):.3f} | "
            f"{h.get('train_kl', float('nan')):.3f} | {'' if lr is None else f'{lr:.2e}'} |"
        )
    return "\n".join(out) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="run directory with last.ckpt")
    args = parser.parse_args()
    sys.stdout.write(table(args.run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
