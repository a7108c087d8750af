"""``python -m rdconfvae.data``: build training data sets.

Subcommands:
    ccd OUT_DIR    the training set of experimental conformations from the PDB Chemical
                   Component Dictionary (see :func:`rdconfvae.data.ccd.build_ccd_set`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from rdconfvae.errors import RdConfVAEError


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m rdconfvae.data", description="Build rdconfvae training data."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ccd = sub.add_parser(
        "ccd",
        help="training set from the PDB Chemical Component Dictionary (shipped with biotite)",
        description="Build the set of experimental ligand conformations from the CCD: "
        "OUT_DIR/ccd_set.npz, OUT_DIR/manifest.json, OUT_DIR/rejected.tsv.",
    )
    ccd.add_argument("out_dir", metavar="OUT_DIR", help="output directory (created)")
    ccd.add_argument("--sdf", metavar="FILE", help="also write the set as SDF (.sdf or .sdf.gz)")
    ccd.add_argument("--limit", type=_positive_int, metavar="K", help="only the first K components")
    ccd.add_argument("--codes", metavar="C1,C2,...", help="only these CCD codes")
    ccd.add_argument(
        "--ccd", metavar="BCIF", help="CCD BinaryCIF file (default: the one inside biotite)"
    )
    ccd.add_argument(
        "--exclusions",
        metavar="TSV",
        help="exclusion list (default: the copy packaged with rdconfvae)",
    )
    ccd.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "ccd":
        from rdconfvae.data.ccd import build_ccd_set

        codes = None if args.codes is None else [c for c in args.codes.split(",") if c.strip()]
        try:
            manifest = build_ccd_set(
                args.out_dir,
                sdf=args.sdf,
                limit=args.limit,
                codes=codes,
                ccd_path=args.ccd,
                exclusions=args.exclusions,
                progress=False if args.no_progress else None,
            )
        except RdConfVAEError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        out = manifest["output"]
        print(f"{'filter':<18} {'dropped':>8} {'remaining':>10}")
        print(f"{'(components)':<18} {'':>8} {manifest['selection']['components']:>10}")
        for f in manifest["filters"]:
            print(f"{f['name']:<18} {f['dropped']:>8} {f['remaining']:>10}")
        print(
            f"kept {out['molecules']} molecules (train {out['train']}, val {out['val']}), "
            f"{out['bytes'] / 1e6:.1f} MB, {manifest['wall_time_s']} s -> {args.out_dir}"
        )
        return 0
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    raise SystemExit(main())
