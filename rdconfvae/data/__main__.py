"""``python -m rdconfvae.data``: build training data sets.

Subcommands:
    ccd OUT_DIR    the training set of experimental conformations from the PDB Chemical
                   Component Dictionary (see :func:`rdconfvae.data.ccd.build_ccd_set`).
    build IN OUT   conformer ensembles from SMILES (ETKDGv3 -> MMFF94s -> [xTB] -> window ->
                   RMSD dedupe -> Boltzmann weights; :func:`rdconfvae.data.job.build_file`).
    coverage       how close the build recipe comes to experimental poses
                   (:func:`rdconfvae.data.coverage.measure_coverage`).

Exit codes: 0 done (``build``: molecules that failed are listed in OUT.errors.tsv); 1 the run
itself failed (bad arguments, unreadable input, a resume that does not match).
"""

from __future__ import annotations

import argparse
import logging
import math
import shlex
import sys
from collections.abc import Callable, Sequence

from rdconfvae.errors import RdConfVAEError


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer >= ``minimum``, with a message naming the fault."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


_positive_int = _int_at_least(1)
_nonneg_int = _int_at_least(0)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _add_recipe_args(p: argparse.ArgumentParser) -> None:
    """Options of the ensemble recipe, shared by ``build`` and ``coverage``."""
    from rdconfvae.data.recipe_options import DEFAULT_RMS, DEFAULT_SAMPLES, DEFAULT_WINDOW

    g = p.add_argument_group("recipe")
    g.add_argument(
        "--samples",
        type=_positive_int,
        default=DEFAULT_SAMPLES,
        help=f"ETKDGv3 embeddings per molecule (default {DEFAULT_SAMPLES})",
    )
    g.add_argument(
        "--samples-per-rotor",
        type=_nonneg_int,
        default=0,
        metavar="K",
        help="at least K embeddings per rotatable bond: max(--samples, K x rotors) (default 0)",
    )
    g.add_argument(
        "--dielectric",
        choices=("distance", "constant"),
        default="distance",
        help="MMFF94s electrostatics: distance-dependent eps=4r (default) or constant eps=1 "
        "(gas phase)",
    )
    g.add_argument(
        "--eps", type=_positive_float, default=None, help="dielectric constant (default 4 / 1)"
    )
    g.add_argument(
        "--window",
        type=float,
        default=DEFAULT_WINDOW,
        help=f"energy window, kcal/mol above the lowest conformer (default {DEFAULT_WINDOW:g}; "
        "0 or less: no window)",
    )
    g.add_argument(
        "--rms",
        type=float,
        default=DEFAULT_RMS,
        help=f"dedupe threshold, heavy-atom RMSD in A (default {DEFAULT_RMS:g}; 0: none)",
    )
    g.add_argument(
        "--max-confs", type=_positive_int, default=None, help="keep at most this many (lowest)"
    )
    g.add_argument(
        "--xtb", action="store_true", help="re-optimise with GFN2-xTB (needs the tblite package)"
    )
    g.add_argument("--xtb-solvent", default=None, help="ALPB solvent for xTB (default: gas)")
    g.add_argument("--temperature", type=_positive_float, default=298.15, help="K (Boltzmann)")
    g.add_argument("--seed", type=_nonneg_int, default=0, help="run seed (default 0)")
    g.add_argument(
        "--timeout",
        type=_positive_float,
        default=None,
        help="ETKDG seconds per molecule (default none; makes output machine-dependent)",
    )
    g.add_argument(
        "--any-element",
        action="store_true",
        help="do not reject elements outside the model's vocabulary (H C N O F P S Cl Br I)",
    )


def _options(args: argparse.Namespace):
    from rdconfvae.data.recipe_options import BuildOptions

    return BuildOptions(
        samples=args.samples,
        samples_per_rotor=args.samples_per_rotor,
        dielectric=args.dielectric,
        dielectric_constant=args.eps,
        window=args.window if args.window > 0 else math.inf,
        rms=args.rms,
        max_confs=args.max_confs,
        xtb=args.xtb,
        xtb_solvent=args.xtb_solvent,
        temperature=args.temperature,
        seed=args.seed,
        timeout=args.timeout,
        allowed_elements=None if args.any_element else BuildOptions().allowed_elements,
    )


def _parser(prog: str = "python -m rdconfvae.data") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Build rdconfvae training data.")
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

    build = sub.add_parser(
        "build",
        help="conformer ensembles from SMILES (ETKDGv3 + MMFF94s [+ xTB], weighted)",
        description="Per molecule: ETKDGv3 over-sampling, MMFF94s minimisation to convergence, "
        "optional GFN2-xTB re-optimisation, energy window, symmetry-aware heavy-atom RMSD "
        "de-duplication, Boltzmann weights. Writes OUT (one SD record per conformer), "
        "OUT.errors.tsv (name, reason), OUT.manifest.json and OUT.progress.json.",
    )
    build.add_argument("input", metavar="SMILES_FILE", help=".smi (SMILES name), .csv or .sdf[.gz]")
    build.add_argument("out", metavar="OUT", help="output SDF (.sdf or .sdf.gz)")
    build.add_argument(
        "--workers", type=_nonneg_int, default=1, help="processes (0: one per core; default 1)"
    )
    build.add_argument("--limit", type=_nonneg_int, default=None, help="only the first K records")
    build.add_argument(
        "--shard", default=None, metavar="i/n", help="only records with index %% n == i (0-based)"
    )
    build.add_argument("--resume", action="store_true", help="continue an interrupted run")
    build.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    build.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_recipe_args(build)

    cov = sub.add_parser(
        "coverage",
        help="how close the build recipe comes to experimental poses (vs raw ETKDGv3)",
        description="For each pose: graph rebuilt from SMILES, the build recipe run, minimum "
        "heavy-atom RMSD of the ensemble to the pose; raw ETKDGv3 with the same samples "
        "alongside. Writes OUT_DIR/report.md and OUT_DIR/results.json.",
    )
    cov.add_argument("--poses", required=True, metavar="SDF", help="poses, .sdf or .sdf.gz")
    cov.add_argument("--out", default=None, metavar="OUT_DIR", help="report folder")
    cov.add_argument("--limit", type=_positive_int, default=None, help="at most K poses")
    cov.add_argument(
        "--sample",
        choices=("first", "stratified"),
        default="stratified",
        help="which poses --limit keeps (default: stratified by rotatable bonds)",
    )
    cov.add_argument("--workers", type=_nonneg_int, default=1, help="processes (default 1)")
    cov.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_recipe_args(cov)
    return parser


def _build(args: argparse.Namespace) -> int:
    from rdconfvae.data.job import build_file

    manifest = build_file(
        args.input,
        args.out,
        _options(args),
        workers=args.workers,
        limit=args.limit,
        shard=args.shard,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=False if args.no_progress else None,
    )
    c, t = manifest["counts"], manifest["time"]
    state = "complete" if manifest["complete"] else "partial (continue with --resume)"
    print(
        f"{c['molecules_ok']} ensembles ({c['conformers']['kept']} conformers) -> {args.out}; "
        f"{c['molecules_failed']} failed (see {manifest['failures']['file']}); "
        f"{c['molecules_done']} records done, {state}; "
        f"{t['cpu_s_per_molecule']} CPU s per molecule",
        file=sys.stderr,
    )
    return 0


def _coverage(args: argparse.Namespace, argv: Sequence[str]) -> int:
    import datetime as dt

    from rdconfvae.data.coverage import coverage_table, measure_coverage, write_coverage_report

    result = measure_coverage(
        args.poses,
        _options(args),
        limit=args.limit,
        sample=args.sample,
        workers=args.workers,
        progress=False if args.no_progress else None,
    )
    out = args.out or f"benchmarks/results/coverage-{dt.date.today().isoformat()}"
    command = "python -m rdconfvae.data " + shlex.join(argv)
    report = write_coverage_report(out, result, command)
    print(coverage_table(result))
    print(f"report: {report}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m rdconfvae.data") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser(prog).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.command in ("build", "coverage"):
        # per-conformer MMFF convergence warnings: counted in the manifest / report instead
        logging.getLogger("rdconfvae.forcefield.mmff").setLevel(logging.ERROR)
        try:
            return _build(args) if args.command == "build" else _coverage(args, argv)
        except (RdConfVAEError, ImportError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            hint = "; continue with --resume" if args.command == "build" else ""
            print(f"interrupted{hint}", file=sys.stderr)
            return 130
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
