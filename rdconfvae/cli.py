"""Command line: ``rdconfvae embed|info|train|data|bench`` (also ``python -m rdconfvae``).

Exit codes: 0 success; 1 the run finished but some molecules failed (listed in
the error file); 2 the run itself failed (bad arguments, unreadable input,
broken weights).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

from rdconfvae import __version__
from rdconfvae.errors import RdConfVAEError

__all__ = ["main", "read_molecules"]

log = logging.getLogger("rdconfvae.cli")


def read_molecules(path: Path) -> Iterator[tuple[str, object, str]]:
    """Yield ``(name, mol or None, error)`` from .smi, .csv, .sdf or .sdf.gz, streaming."""
    from rdkit import Chem

    name = path.name.lower()
    if name.endswith((".sdf", ".sdf.gz")):
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "rb") as fh:
            for i, mol in enumerate(Chem.ForwardSDMolSupplier(fh, removeHs=False)):
                if mol is None:
                    yield f"record{i + 1}", None, "unreadable SDF record"
                    continue
                title = mol.GetProp("_Name") if mol.HasProp("_Name") else ""
                yield title or f"record{i + 1}", mol, ""
        return
    if name.endswith(".csv"):
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            cols = {c.lower(): c for c in reader.fieldnames or []}
            smi_col = cols.get("smiles")
            if smi_col is None:
                raise RdConfVAEError(f"{path}: no 'smiles' column (columns: {reader.fieldnames})")
            name_col = cols.get("name") or cols.get("id")
            for i, row in enumerate(reader):
                title = row.get(name_col, "") if name_col else ""
                yield from _from_smiles(row[smi_col], title or f"mol{i + 1}")
        return
    with open(path) as fh:
        for i, line in enumerate(fh):
            parts = line.strip().split(maxsplit=1)
            if not parts or parts[0].startswith("#"):
                continue
            yield from _from_smiles(parts[0], parts[1] if len(parts) > 1 else f"mol{i + 1}")


def _from_smiles(smiles: str, title: str) -> Iterator[tuple[str, object, str]]:
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        yield title, None, f"invalid SMILES {smiles!r}"
    else:
        yield title, mol, ""


def _cmd_embed(args: argparse.Namespace) -> int:
    from rdkit import Chem

    from rdconfvae.api import embed

    out = Path(args.output)
    opener = gzip.open if out.name.endswith(".gz") else open
    errors_path = Path(args.errors) if args.errors else out.with_name(out.name + ".errors.tsv")
    n_ok = n_fail = 0
    with opener(out, "wt") as fh, open(errors_path, "w") as err:
        writer = Chem.SDWriter(fh)
        for name, mol, problem in read_molecules(Path(args.input)):
            if mol is None:
                err.write(f"{name}\t{problem}\n")
                n_fail += 1
                continue
            mol = Chem.AddHs(mol, addCoords=mol.GetNumConformers() > 0)
            try:
                ids = embed(
                    mol,
                    n=args.n,
                    mmff=args.mmff,
                    seed=args.seed,
                    prune_rms=args.prune_rms,
                    timeout=args.timeout,
                    fallback=args.fallback,
                    num_threads=args.threads,
                )
            except RdConfVAEError as exc:
                err.write(f"{name}\t{type(exc).__name__}: {exc}\n")
                n_fail += 1
                continue
            mol.SetProp("_Name", name)
            for cid in ids:
                conf = mol.GetConformer(cid)
                for prop in conf.GetPropNames():
                    mol.SetProp(prop, conf.GetProp(prop))
                mol.SetIntProp("conformer_id", cid)
                writer.write(mol, confId=cid)
            n_ok += 1
        writer.close()
    print(
        f"{n_ok} molecules embedded into {out}; {n_fail} failed (see {errors_path})",
        file=sys.stderr,
    )
    return 1 if n_fail else 0


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
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prune-rms", type=float, default=-1.0)
    p.add_argument("--timeout", type=float, default=None, help="seconds per molecule")
    p.add_argument("--fallback", choices=("raise", "etkdg"), default="etkdg")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--errors", default=None, help="error file (default OUTPUT.errors.tsv)")
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


if __name__ == "__main__":
    raise SystemExit(main())
