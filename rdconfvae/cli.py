"""Command line: ``rdconfvae embed|info|train|data|bench`` (also ``python -m rdconfvae``).

Exit codes: 0 success; 1 the run finished but some molecules failed (listed in
the error file); 2 the run itself failed (bad arguments, unreadable input, an
output that cannot be written, broken weights); 130 Ctrl-C, 143 SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from rdconfvae import __version__
from rdconfvae.batch.stream import read_molecules as batch_read
from rdconfvae.errors import RdConfVAEError
from rdconfvae.params import DEFAULT_POLISH_ITERS

__all__ = ["main", "read_molecules"]

log = logging.getLogger("rdconfvae.cli")


def read_molecules(path: Path) -> Iterator[tuple[str, object, str]]:
    """Yield ``(name, mol or None, error)`` from .smi, .csv, .sdf or .sdf.gz, streaming.

    Kept for scripts written against 0.1; :func:`rdconfvae.batch.stream.read_molecules` is the
    streaming reader the ``embed`` command uses.
    """
    from rdconfvae.batch.unit import to_mol

    for rec in batch_read(path):
        if rec.item is None:
            yield rec.name, None, rec.problem
            continue
        try:
            yield rec.name, to_mol(rec.item), ""
        except RdConfVAEError as exc:
            yield rec.name, None, str(exc)


def _cmd_embed(args: argparse.Namespace) -> int:
    from rdconfvae.batch.stream import embed_file
    from rdconfvae.batch.unit import EmbedOptions

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
        input_format=args.format,
        capture_logs=True,
    )
    resumed = f" (resumed after {summary.resumed_from})" if summary.resumed_from else ""
    failed = f"{summary.failed} failed (see {summary.errors})" if summary.failed else "0 failed"
    notes = ""
    if summary.messages:
        notes = (
            f"; RDKit and rdconfvae logged {summary.messages} messages about "
            f"{summary.molecules_with_messages} molecules"
            + ("" if args.verbose else " (-v shows them)")
        )
    print(
        f"{summary.ok} of {summary.done} input molecules embedded{resumed}: "
        f"{summary.conformers} conformer records in {summary.output}; {failed}; "
        f"{summary.rate:.2f} molecules/s in this run{notes}",
        file=sys.stderr,
    )
    return 1 if summary.failed else 0


def _cmd_info(args: argparse.Namespace) -> int:
    from rdconfvae.model.store import load_model

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


def _forward(module: str, argv: list[str], prog: str) -> int:
    import importlib

    return int(importlib.import_module(module).main(argv, prog=prog) or 0)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Descriptions as written, and each option's default (unless it has none)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False or "(default" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action) or ""


_EMBED_DESCRIPTION = """\
Embed every molecule of INPUT into OUTPUT, an SDF with one record per conformer, in input
order. INPUT is read by its extension (or --format), each optionally gzip-compressed (.gz):
  .smi .smiles .ism  SMILES and name per line (or tab-separated columns, name second);
                     '#' comments, blank lines and a first line 'smiles ...' skipped
  .csv               a 'smiles' column (any case); the name from a 'name' or 'id' column
  .sdf .sd           records with 2D or 3D coordinates; the title line is the name
Hydrogens are added before embedding. A molecule that fails (unparsable, unsupported with
--fallback raise, timeout, ...) is listed in the error file and the run goes on; the error
file exists only when one failed. The checkpoint OUTPUT.progress.json exists while the run
does: after a crash, kill or Ctrl-C, the same command with --resume continues it."""

_EMBED_EPILOG = """\
exit codes:
  0    every molecule embedded
  1    the run finished, some molecules failed (listed in the error file)
  2    the run failed: bad arguments, unreadable or unknown input, an output that cannot
       be written (a checkpoint is kept: fix the cause and --resume), broken weights
  130  interrupted by Ctrl-C, 143 by SIGTERM (continue with --resume)"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rdconfvae",
        description="ConfVAE conformers for RDKit",
        epilog="'rdconfvae COMMAND --help' describes each command.",
    )
    parser.add_argument("--version", action="version", version=f"rdconfvae {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser(
        "embed",
        help="embed molecules from .smi/.csv/.sdf[.gz] into an SDF",
        description=_EMBED_DESCRIPTION,
        epilog=_EMBED_EPILOG,
        formatter_class=_HelpFormatter,
    )
    p.add_argument("input", help="molecules: .smi, .smiles, .ism, .csv, .sdf or .sd, [.gz]")
    p.add_argument("output", help="SDF output: .sdf or .sdf.gz (gzip-compressed)")
    p.add_argument("-n", type=int, default=10, help="conformers per molecule")
    p.add_argument(
        "--format",
        choices=("smi", "csv", "sdf"),
        default=None,
        help="read INPUT as this format whatever its extension (default: from the extension)",
    )
    p.add_argument(
        "--mmff",
        action="store_true",
        help="minimise each conformer with MMFF94s to convergence (MMFF_ENERGY stored)",
    )
    p.add_argument(
        "--polish-iters",
        type=int,
        default=None,
        metavar="N",
        help=f"without --mmff: MMFF94s polish steps (default {DEFAULT_POLISH_ITERS}; "
        "0: the raw model output)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="random seed, the same for every molecule: same seed, same output (-1: random; "
        "the Python API's default is -1)",
    )
    p.add_argument(
        "--prune-rms",
        type=float,
        default=-1.0,
        help="drop conformers within this heavy-atom RMSD (Angstrom) of a kept one (-1: keep all)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="time limit per molecule; a molecule over it goes to the error file "
        "(default: no limit)",
    )
    p.add_argument(
        "--fallback",
        choices=("raise", "etkdg"),
        default="etkdg",
        help="molecules outside the model's domain (elements, size): etkdg embeds them with "
        "RDKit ETKDGv3 (SD field rdconfvae_generator says which), raise lists them as failed",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes, each loading the model once and embedding whole molecules "
        "(0: one per core); output order = input order, bytes independent of N",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="num_threads of rdconfvae.embed: one molecule's samples and polish split "
        "across this many helper processes (not threads: the GIL serialises them; "
        "coordinates unchanged); for many molecules prefer --workers",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run into the same OUTPUT (same input and options)",
    )
    p.add_argument(
        "--errors", default=None, metavar="FILE", help="error file (default: OUTPUT.errors.tsv)"
    )
    p.add_argument(
        "--progress",
        choices=("auto", "on", "off"),
        default="auto",
        help="progress bar with rate and ETA on stderr (auto: only on a terminal)",
    )
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show RDKit's messages (parse errors, force-field typing) per molecule",
    )
    sub.add_parser("info", help="the weights in use, their training data and metrics")
    for name in _FORWARDS:
        sub.add_parser(name, help=f"see rdconfvae {name} --help", add_help=False)
    return parser


_FORWARDS = {
    "train": "rdconfvae.train",
    "data": "rdconfvae.data.__main__",
    "bench": "rdconfvae.bench",
}


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in _FORWARDS:
        return _forward(_FORWARDS[argv[0]], argv[1:], f"rdconfvae {argv[0]}")
    args = _parser().parse_args(argv)
    verbose = getattr(args, "verbose", False)
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(message)s",
    )
    if verbose:
        logging.getLogger("rdconfvae").setLevel(logging.INFO)
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminated) if in_main else None
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
    except SystemExit as exc:
        if exc.code == 128 + signal.SIGTERM:
            print("rdconfvae: terminated (SIGTERM); continue with --resume", file=sys.stderr)
        raise
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    raise SystemExit(main())
