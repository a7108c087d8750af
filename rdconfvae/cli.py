"""Command line: ``rdconfvae embed|info|train|data|bench`` (also ``python -m rdconfvae``).

Exit codes: 0 success; 1 the run finished but some molecules failed (listed in
the error file); 2 the run itself failed (bad arguments, unreadable input,
broken weights).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

from rdconfvae import __version__
from rdconfvae.batch import read_molecules as batch_read
from rdconfvae.errors import RdConfVAEError
from rdconfvae.params import DEFAULT_POLISH_ITERS

__all__ = ["main", "read_molecules"]

log = logging.getLogger("rdconfvae.cli")


def read_molecules(path: Path) -> Iterator[tuple[str, object, str]]:
    """Yield ``(name, mol or None, error)`` from .smi, .csv, .sdf or .sdf.gz, streaming.

    Kept for scripts written against 0.1; :func:`rdconfvae.batch.read_molecules` is the
    streaming reader the ``embed`` command uses.
    """
    from rdconfvae.pipeline import to_mol

    for rec in batch_read(path):
        if rec.item is None:
            yield rec.name, None, rec.problem
            continue
        try:
            yield rec.name, to_mol(rec.item), ""
        except RdConfVAEError as exc:
            yield rec.name, None, str(exc)


def _cmd_embed(args: argparse.Namespace) -> int:
    from rdconfvae.batch import embed_file
    from rdconfvae.pipeline import EmbedOptions

    options = EmbedOptions(
        n=args.n,
        mmff=args.mmff,
        seed=args.seed,
        prune_rms=args.prune_rms,
        timeout=args.timeout,
        fallback=args.fallback,
        num_threads=args.threads,
        polish_iters=args.polish_iters,
    )
    progress = {"auto": None, "on": True, "off": False}[args.progress]
    summary = embed_file(
        args.input,
        args.output,
        options,
        workers=args.workers,
        resume=args.resume,
        errors_path=args.errors,
        progress=progress,
    )
    resumed = f" (resumed after {summary.resumed_from})" if summary.resumed_from else ""
    print(
        f"{summary.ok} of {summary.done} input molecules embedded{resumed}: "
        f"{summary.conformers} conformer records in {summary.output}; "
        f"{summary.failed} failed (see {summary.errors}); "
        f"{summary.rate:.2f} molecules/s in this run",
        file=sys.stderr,
    )
    return 1 if summary.failed else 0


def _cmd_info(args: argparse.Namespace) -> int:
    from rdconfvae.modelstore import load_model

    loaded = load_model()
    m = loaded.manifest
    info = {
        "version": __version__,
        "weights": str(loaded.path),
        "sha256": m["sha256"],
        "training": {
            k: m["training"].get(k)
            for k in (
                "preset",
                "data",
                "data_hash",
                "train_molecules",
                "epochs",
                "finished",
                "git_commit",
            )
        },
        "validation": m.get("validation", {}),
    }
    print(json.dumps(info, indent=2))
    return 0


def _forward(module: str, argv: list[str]) -> int:
    import importlib

    return int(importlib.import_module(module).main(argv) or 0)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    forwards = {
        "train": "rdconfvae.train",
        "data": "rdconfvae.data.__main__",
        "bench": "rdconfvae.bench",
    }
    if argv and argv[0] in forwards:
        return _forward(forwards[argv[0]], argv[1:])
    parser = argparse.ArgumentParser(prog="rdconfvae", description="ConfVAE conformers for RDKit")
    parser.add_argument("--version", action="version", version=f"rdconfvae {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("embed", help="embed molecules from .smi/.csv/.sdf[.gz] into an SDF")
    p.add_argument("input")
    p.add_argument("output", help="SDF (.sdf or .sdf.gz), one record per conformer")
    p.add_argument("-n", type=int, default=10, help="conformers per molecule")
    p.add_argument("--mmff", action="store_true", help="MMFF94s minimisation (energy stored)")
    p.add_argument(
        "--polish-iters",
        type=int,
        default=None,
        metavar="N",
        help=f"without --mmff: MMFF94s polish steps (default {DEFAULT_POLISH_ITERS}; "
        "0: the raw model output)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prune-rms", type=float, default=-1.0)
    p.add_argument("--timeout", type=float, default=None, help="seconds per molecule")
    p.add_argument("--fallback", choices=("raise", "etkdg"), default="etkdg")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes, each loading the model once (0: one per core); "
        "output order = input order",
    )
    p.add_argument(
        "--threads", type=int, default=1, help="threads per molecule (num_threads of embed)"
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run into the same OUTPUT (same input and options)",
    )
    p.add_argument("--errors", default=None, help="error file (default OUTPUT.errors.tsv)")
    p.add_argument(
        "--progress",
        choices=("auto", "on", "off"),
        default="auto",
        help="progress bar with rate and ETA on stderr (auto: only on a terminal)",
    )
    sub.add_parser("info", help="the weights in use, their training data and metrics")
    for name in forwards:
        sub.add_parser(name, help=f"see rdconfvae {name} --help", add_help=False)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        if args.command == "embed":
            return _cmd_embed(args)
        return _cmd_info(args)
    except (RdConfVAEError, OSError) as exc:
        print(f"rdconfvae: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rdconfvae: interrupted; continue with --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
