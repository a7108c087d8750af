"""Compare a re-run of the shipped training command with the shipped weights.

Reads the validation history of both runs' checkpoints (every epoch; without the shipped
run's checkpoint, the best epoch's metrics from ``weights/manifest.json``) and compares
the re-run's best checkpoint with the parameters of ``weights/confvae.pt`` tensor by
tensor (the TorchScript file's bytes differ between exports of the same checkpoint:
torch writes a random serialization id).

    python benchmarks/diagnostics/reproduce_weights.py --shipped-run runs/default --rerun runs/repro
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch


def _history(run: Path) -> list[dict]:
    ckpt = torch.load(run / "last.ckpt", weights_only=True, map_location="cpu")
    return json.loads(ckpt["state"])["history"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shipped-run", type=Path, default=Path("runs/default"))
    parser.add_argument("--rerun", type=Path, required=True)
    parser.add_argument("--weights", type=Path, default=Path("weights/confvae.pt"))
    args = parser.parse_args()
    rerun = _history(args.rerun)
    if (args.shipped_run / "last.ckpt").exists():
        shipped = _history(args.shipped_run)
    else:  # only the shipped run's best epoch is public: its metrics are in the manifest
        manifest = json.loads((args.weights.parent / "manifest.json").read_text())
        shipped = [manifest["validation"]]
        rerun = [h for h in rerun if h["epoch"] == shipped[0]["epoch"]]
        print(f"{args.shipped_run}/last.ckpt absent: comparing with the manifest's epoch only\n")
    print("| epoch | shipped val median (A) | re-run val median (A) | validation | train_loss |")
    print("|---|---|---|---|---|")
    same = 0
    for a, b in zip(shipped, rerun, strict=False):  # the shipped run went on to 36
        val_same = all(a[k] == b[k] for k in a if k.startswith("val_"))
        same += val_same
        train = "same" if a["train_loss"] == b["train_loss"] else "differs"
        print(
            f"| {a['epoch']} | {a['val_median_min_rmsd']!r} | {b['val_median_min_rmsd']!r} | "
            f"{'identical' if val_same else 'DIFFERS'} | {train} |"
        )
    print(f"\n{same} of {len(rerun)} re-run epochs have the shipped run's validation metrics.")
    best = torch.load(args.rerun / "best.ckpt", weights_only=True, map_location="cpu")
    model = best["model"]
    script = torch.jit.load(str(args.weights), map_location="cpu").state_dict()
    differ = [k for k in model if k not in script or not torch.equal(model[k], script[k])]
    print(
        f"Re-run best checkpoint (epoch {json.loads(best['state'])['epoch']}) vs "
        f"{args.weights}: {len(model)} tensors, {len(script)} in the shipped file, "
        f"{len(differ)} differ{': ' + ', '.join(differ[:5]) if differ else ''}."
    )
    return 0 if same == len(rerun) and not differ and len(model) == len(script) else 1


if __name__ == "__main__":
    sys.exit(main())
