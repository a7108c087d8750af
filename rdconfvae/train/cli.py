"""``python -m rdconfvae.train``: the command line of :func:`rdconfvae.train.train`."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from rdconfvae.errors import RdConfVAEError
from rdconfvae.train.loop import train
from rdconfvae.train.presets import PRESETS

__all__ = ["main"]

DESCRIPTION = "Train the ConfVAE: ``python -m rdconfvae.train --preset default``."


def main(argv: list[str] | None = None, *, prog: str = "python -m rdconfvae.train") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default")
    parser.add_argument(
        "--data",
        type=Path,
        default=Path("data_build/ccd"),
        help="CCD set directory (built there if missing) or an SDF with 3D records",
    )
    parser.add_argument("--out", type=Path, default=None, help="run directory (checkpoints)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.ckpt")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument(
        "--max-hours",
        type=float,
        default=0.0,
        help="stop cleanly after this much wall time (checkpointed; resume later)",
    )
    parser.add_argument(
        "--export",
        type=Path,
        default=None,
        help="export the best model + manifest here at the end (e.g. runs/default/export; "
        "use it with RDCONFVAE_WEIGHTS=DIR)",
    )
    parser.add_argument(
        "--overwrite-shipped-weights",
        action="store_true",
        help="allow --export to replace the installed package's own weights",
    )
    parser.add_argument("--max-epochs", type=int, default=None)
    parser.add_argument(
        "--export-only",
        action="store_true",
        help="no training: export OUT/best.ckpt to --export (after a stopped run)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    out = args.out or Path("runs") / args.preset
    overrides = {"max_epochs": args.max_epochs} if args.max_epochs else None
    try:
        result = train(
            args.data,
            out,
            args.preset,
            args.resume,
            args.device,
            args.max_hours,
            args.export,
            args.threads,
            overrides,
            args.export_only,
            args.overwrite_shipped_weights,
        )
    except RdConfVAEError as exc:
        print(f"rdconfvae.train: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0
