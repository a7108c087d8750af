"""Embed molecules on a Dask cluster: bags, dataframes and SMILES / SDF files.

Every molecule goes through :func:`rdconfvae.batch.unit.embed_one` with the same
:class:`~rdconfvae.batch.unit.EmbedOptions` (the seed is per molecule), so a molecule
gets the same coordinates on any worker, in any partition, as in a single process.
Each result carries the molecule's position in the input (``EmbedResult.index``);
``embed_bag(...).compute()`` returns one result per input molecule, in input order.
A molecule that fails is a result with ``status == "failed"`` and the reason.

Workers: the model is loaded once per worker process (the model store caches it per
process; :func:`prepare_worker` loads it ahead of the first task) and torch runs one
thread per task in a worker, so ``threads_per_worker`` sets the parallelism.

>>> import dask.bag as db
>>> from rdconfvae.integrations.dask import embed_bag
>>> bag = db.from_sequence(["CCO", "c1ccccc1O", "not a smiles"], npartitions=2)
>>> results = embed_bag(bag, n=3, seed=1).compute(scheduler="synchronous")
>>> [(r.index, r.status, r.n_conformers) for r in results]
[(0, 'ok', 3), (1, 'ok', 3), (2, 'failed', 0)]

On a cluster, create a ``distributed.Client`` first: ``compute()`` then runs there.
``python -m rdconfvae.integrations.dask embed|bench`` runs a file on a cluster / measures
throughput.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rdkit import Chem

from rdconfvae.batch.resumable_output import ResumableOutput
from rdconfvae.batch.unit import EmbedOptions, EmbedResult, conformer_records, embed_one

if TYPE_CHECKING:  # pragma: no cover
    import dask.bag as db
    import dask.dataframe as dd

__all__ = [
    "embed_bag",
    "embed_file",
    "embed_dataframe",
    "read_molecules_bag",
    "from_molecules",
    "prepare_worker",
    "write_results",
    "split_smiles",
    "main",
]

log = logging.getLogger(__name__)

_PICKLE_PROPS = Chem.PropertyPickleOptions.AllProps
_prepared = False
_malloc_tuned = False
# glibc mallopt parameters (malloc.h) and the values set in workers (see _tune_malloc).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_TRIM_BYTES, _MMAP_BYTES = 64 << 20, 32 << 20


# ----------------------------------------------------------------------------- workers


def _in_dask_worker() -> bool:
    try:
        from distributed import get_worker
    except ImportError:  # pragma: no cover - dask without distributed
        return False
    try:
        get_worker()
    except ValueError:
        return False
    return True


def _tune_malloc() -> bool:
    """Undo the cost of Dask's ``MALLOC_TRIM_THRESHOLD_`` in this worker process (glibc only).

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536`` (config
    ``distributed.nanny.pre-spawn-environ``) to hand freed memory back to the OS early. Any
    explicit value also freezes glibc's mmap threshold at 128 KiB, so every larger
    temporary (tensors, RDKit arrays) is a fresh mmap: measured here, 25-30 % more CPU per
    molecule (0.153 against 0.121 CPU s, 60 CCD ligands, n = 10). Setting the trim and mmap
    thresholds back to glibc's dynamic maxima (64 / 32 MiB) restores the speed.
    """
    if not sys.platform.startswith("linux") or "MALLOC_TRIM_THRESHOLD_" not in os.environ:
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return bool(
            libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_BYTES) == 1
            and libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_BYTES) == 1
        )
    except (OSError, AttributeError):  # not glibc
        return False


def _prepare_process(in_worker: bool | None = None) -> None:
    """Once per process, inside a Dask worker: one torch thread per task (no
    oversubscription) and glibc's malloc thresholds back to normal (:func:`_tune_malloc`).

    Outside a worker (synchronous or threaded scheduler in the caller's process) the
    caller's settings are left alone; ``embed`` itself runs with ``num_threads``.
    """
    global _prepared, _malloc_tuned
    if _prepared:
        return
    if in_worker or (in_worker is None and _in_dask_worker()):
        import torch

        torch.set_num_threads(1)
        _malloc_tuned = _tune_malloc()
        _prepared = True


def prepare_worker(dask_worker: Any = None) -> dict[str, Any]:
    """Set up this process for embedding and load the model; report the state.

    Run it on every worker ahead of the work with ``client.run(prepare_worker)``, so
    the first tasks do not wait for the model (it would otherwise load on first use,
    still once per worker process). ``client.run`` passes ``dask_worker``; called
    without it, outside a worker, only the model is loaded.

    Returns:
        ``{"pid", "torch_threads", "models_loaded", "model_sha256", "malloc_tuned"}`` of
        this process.
    """
    import torch

    from rdconfvae.model import store as modelstore

    _prepare_process(True if dask_worker is not None else None)
    model = modelstore.load_model()
    return {
        "pid": os.getpid(),
        "torch_threads": torch.get_num_threads(),
        "models_loaded": modelstore.loaded_count(),
        "model_sha256": str(model.manifest.get("sha256", "")),
        "malloc_tuned": _malloc_tuned,
    }


# ----------------------------------------------------------------------------- elements


def _parse_record(text: str) -> Chem.Mol | None:
    """An SDF record (mol block plus data fields), properties kept; None if unreadable."""
    supplier = Chem.SDMolSupplier()
    supplier.SetData(text, sanitize=True, removeHs=False)
    return supplier[0] if len(supplier) else None


def _embed_element(index: int, element: Any, options: EmbedOptions) -> EmbedResult:
    """Embed one bag element: a molecule, SMILES, SDF record, RDKit binary or (name, any)."""
    name = ""
    item = element
    if isinstance(element, tuple) and len(element) == 2 and isinstance(element[0], str):
        name, item = element
    if isinstance(item, (bytes, bytearray)):
        try:
            item = Chem.Mol(bytes(item))  # type: ignore[call-overload]  # stubs lack Mol(bytes)
        except Exception as exc:  # noqa: BLE001 -- a bad element fails alone
            return EmbedResult(index, name, "failed", f"InvalidInputError: {exc}")
    elif isinstance(item, str) and "\n" in item.strip():
        item = _parse_record(item) or item  # unreadable: embed_one reports why
    return embed_one(item, name, index, options)


def _as_list(part: Iterable[Any]) -> list[Any]:
    return list(part)


def _add_len(offset: int, part: list[Any]) -> int:
    return offset + len(part)


def _embed_partition(part: list[Any], start: int, options: EmbedOptions) -> list[EmbedResult]:
    _prepare_process()
    return [_embed_element(start + i, item, options) for i, item in enumerate(part)]


# ----------------------------------------------------------------------------- bags


def embed_bag(bag: db.Bag, n: int = 10, **embed_options: Any) -> db.Bag:
    """Embed every element of a Dask bag; a bag of :class:`EmbedResult`, in input order.

    Args:
        bag: elements are ``Chem.Mol``, SMILES strings, mol blocks / SDF records, RDKit
            binaries (``mol.ToBinary()``, see :func:`from_molecules`) or ``(name, any of
            these)`` tuples (what :func:`read_molecules_bag` yields).
        n: conformers per molecule.
        **embed_options: :class:`~rdconfvae.batch.unit.EmbedOptions` fields (``mmff``,
            ``seed`` (default 0), ``prune_rms``, ``timeout``, ``fallback``, ``add_hs``,
            ``num_threads``); an unknown one raises ``TypeError`` here, not on a worker.

    Returns:
        A lazy bag, one :class:`EmbedResult` per element; ``result.index`` is the
        element's position in ``bag`` (counted across partitions, so it does not depend
        on the partitioning), ``result.mol`` the embedded molecule.

    ``Chem.Mol`` elements lose their properties (``_Name`` included) when Dask pickles
    them to another process (RDKit's default pickle options); name them with tuples or
    use :func:`from_molecules`.
    """
    from dask import delayed
    from dask.bag import from_delayed

    options = EmbedOptions(n=n, **embed_options)
    parts = []
    offset: Any = 0
    for part in bag.to_delayed(optimize_graph=True):
        items = delayed(_as_list, pure=True)(part)
        parts.append(delayed(_embed_partition, pure=True)(items, offset, options))
        offset = delayed(_add_len, pure=True)(offset, items)
    return from_delayed(parts)


def from_molecules(mols: Sequence[Chem.Mol], npartitions: int | None = None) -> db.Bag:
    """A bag of ``(name, RDKit binary)`` for :func:`embed_bag` that keeps every property."""
    import dask.bag as dbag

    items = []
    for mol in mols:
        name = mol.GetProp("_Name") if mol is not None and mol.HasProp("_Name") else ""
        items.append((name, mol.ToBinary(_PICKLE_PROPS) if mol is not None else None))
    return dbag.from_sequence(items, npartitions=npartitions)


def _split_sdf(chunks: Iterable[str]) -> list[tuple[str, str]]:
    """SDF records of text chunks (any line ending), as ``(title, record text)``."""
    records: list[tuple[str, str]] = []
    for chunk in chunks:
        lines: list[str] = []
        for line in chunk.splitlines(keepends=True):
            lines.append(line)
            if line.rstrip("\r\n") == "$$$$":
                records.append(_titled("".join(lines)))
                lines = []
        if "".join(lines).strip():
            records.append(_titled("".join(lines)))
    return records


def _titled(record: str) -> tuple[str, str]:
    return record.split("\n", 1)[0].strip(), record


def split_smiles(lines: Iterable[str]) -> list[tuple[str, str]]:
    """``(name, SMILES)`` per non-empty, non-comment line ``SMILES [name]``."""
    out = []
    for line in lines:
        parts = line.strip().split(maxsplit=1)
        if parts and not parts[0].startswith("#"):
            out.append((parts[1].strip() if len(parts) > 1 else "", parts[0]))
    return out


def read_molecules_bag(
    path: str | Path | Sequence[str | Path],
    *,
    blocksize: int | str | None = "64KiB",
    npartitions: int | None = None,
) -> db.Bag:
    """A bag of ``(name, SMILES or SDF record)`` from SMILES or SDF files, split into partitions.

    Args:
        path: a ``.smi`` (``SMILES [name]`` per line, ``#`` comments) or ``.sdf`` file,
            optionally ``.gz``; a glob or list of them; any fsspec URL Dask reads.
        blocksize: bytes per partition for uncompressed files (records are never cut);
            compressed files are one partition each.
        npartitions: if given, repartition to this many partitions.

    Parsing happens on the workers; an unreadable record becomes a failed result.

    Raises:
        ValueError: a CSV / TSV / Parquet path (use :func:`embed_dataframe`).
    """
    import dask.bag as dbag

    paths = [str(p) for p in path] if isinstance(path, (list, tuple)) else [str(path)]
    low = paths[0].lower()
    compressed = low.endswith((".gz", ".bz2", ".xz"))
    stem = low.rsplit(".", 1)[0] if compressed else low
    is_sdf = stem.endswith((".sdf", ".sd"))
    if stem.endswith((".csv", ".tsv", ".parquet")):
        raise ValueError(
            f"{paths[0]}: a table; read it with dask.dataframe and use "
            "embed_dataframe(ddf, smiles_col=...)"
        )
    size = None if compressed else blocksize
    if is_sdf:
        bag = dbag.read_text(paths, blocksize=size, linedelimiter="$$$$\n")
        bag = bag.map_partitions(_split_sdf)
    else:
        bag = dbag.read_text(paths, blocksize=size).map_partitions(split_smiles)
    if npartitions is not None:
        bag = bag.repartition(npartitions=npartitions)
    return bag


def embed_file(
    path: str | Path,
    n: int = 10,
    *,
    blocksize: int | str | None = "64KiB",
    npartitions: int | None = None,
    **embed_options: Any,
) -> db.Bag:
    """:func:`embed_bag` over :func:`read_molecules_bag`: a bag of :class:`EmbedResult`."""
    bag = read_molecules_bag(path, blocksize=blocksize, npartitions=npartitions)
    return embed_bag(bag, n, **embed_options)


def write_results(results: Iterable[EmbedResult], path: str | Path) -> tuple[int, int]:
    """Write results like ``rdconfvae embed``: SDF + ``<path>.errors.tsv``; (ok, failed).

    One SDF record per conformer (title = name, or ``mol<index + 1>`` when unnamed),
    failures as ``name<TAB>reason`` lines.
    """
    path = Path(path)
    out = ResumableOutput(path, path.with_name(path.name + ".errors.tsv"))
    n_ok = n_fail = 0
    try:
        for r in results:
            name = r.name or f"mol{r.index + 1}"
            mol = r.mol
            if r.ok and mol is not None:
                out.write_record(conformer_records(mol, name))
                n_ok += 1
            else:
                out.write_error(name, r.error)
                n_fail += 1
    finally:
        out.close()
    return n_ok, n_fail


# ----------------------------------------------------------------------------- dataframes


def _embed_frame_partition(df: Any, col: str, kwargs: dict[str, Any]) -> Any:
    from rdconfvae.integrations.pandas import sdf_frame

    _prepare_process()
    return sdf_frame(df, col, **kwargs)


def embed_dataframe(
    ddf: dd.DataFrame,
    smiles_col: str | None = None,
    mol_col: str | None = None,
    *,
    n: int = 10,
    rows: str = "molecule",
    name_col: str | None = None,
    sdf_col: str = "sdf",
    **embed_options: Any,
) -> dd.DataFrame:
    """Embed a column of a Dask dataframe; a lazy dataframe with SDF text per row.

    The columns are those of :func:`rdconfvae.integrations.pandas.embed_frame` (``status``,
    ``error``, ``n_conformers``; per conformer ``conformer_id``, ``MMFF_ENERGY``, ...), with SDF
    text in ``sdf_col`` instead of ``Chem.Mol`` objects (plain strings travel and store well:
    Parquet, CSV). Per molecule the text holds all conformers; ``None`` on failure.
    ``mol_col`` may hold mol blocks or ``Chem.Mol`` objects (see :func:`embed_bag` on
    pickled properties).
    """
    from rdconfvae.integrations.pandas import check_rows, sdf_frame, source_column

    col = source_column(ddf, smiles_col, mol_col)
    check_rows(rows)
    EmbedOptions(n=n, **embed_options)  # validate here, not on a worker
    kwargs: dict[str, Any] = {
        "n": n,
        "rows": rows,
        "name_col": name_col,
        "sdf_col": sdf_col,
        "embed_options": embed_options,
    }
    meta = sdf_frame(ddf._meta, col, **kwargs)
    return ddf.map_partitions(_embed_frame_partition, col, kwargs, meta=meta)


# ----------------------------------------------------------------------------- command line


def _options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    return {"mmff": args.mmff, "seed": args.seed, "fallback": args.fallback}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m rdconfvae.integrations.dask embed|bench``; exit 0 ok, 1 some molecules
    failed, 2 error."""
    p = argparse.ArgumentParser(
        prog="python -m rdconfvae.integrations.dask", description=__doc__.split("\n")[0]
    )
    sub = p.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-n", type=int, default=10, help="conformers per molecule (10)")
    common.add_argument("--mmff", action="store_true", help="MMFF94s minimisation")
    common.add_argument("--seed", type=int, default=0, help="per-molecule seed (0)")
    common.add_argument("--fallback", choices=("etkdg", "raise"), default="etkdg")
    e = sub.add_parser("embed", parents=[common], help="embed a .smi/.sdf[.gz] on a cluster")
    e.add_argument("input")
    e.add_argument("output", help="SDF, one record per conformer; failures to OUTPUT.errors.tsv")
    e.add_argument(
        "--scheduler",
        help="address of a running scheduler (tcp://host:8786); "
        "default: a LocalCluster on this machine",
    )
    e.add_argument("--workers", type=int, default=2, help="LocalCluster workers (2)")
    e.add_argument("--blocksize", default="64KiB", help="input bytes per partition (64KiB)")
    e.add_argument("--npartitions", type=int, help="repartition the input to this many")
    b = sub.add_parser("bench", parents=[common], help="molecules per second, 1 vs K workers")
    b.add_argument("input", help=".smi file (SMILES name per line)")
    b.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    b.add_argument("--report", help="write a Markdown report here")
    b.add_argument("--no-cli", action="store_true", help="do not time the CLI")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    if args.command == "bench":  # the benchmark lives with the others (rdconfvae.bench)
        command = "python -m rdconfvae.integrations.dask " + " ".join(
            sys.argv[1:] if argv is None else argv
        )
        throughput = importlib.import_module("rdconfvae.bench.throughput")
        return int(throughput.run_command(args, command))

    from distributed import Client, LocalCluster

    if args.scheduler:
        client = Client(args.scheduler)
        cluster = None
    else:
        cluster = LocalCluster(
            n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = Client(cluster)
    try:
        client.run(prepare_worker)
        bag = embed_file(
            args.input,
            args.n,
            blocksize=args.blocksize,
            npartitions=args.npartitions,
            **_options_from_args(args),
        )
        n_ok, n_fail = write_results(bag.compute(), args.output)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    print(
        f"{n_ok} molecules embedded into {args.output}; {n_fail} failed "
        f"(see {args.output}.errors.tsv)",
        file=sys.stderr,
    )
    return 1 if n_fail else 0


def __getattr__(name: str) -> Any:
    """``bench_throughput`` is :func:`rdconfvae.bench.throughput.bench_throughput` (the
    benchmark code lives in :mod:`rdconfvae.bench`; it is loaded on first use)."""
    if name == "bench_throughput":
        return importlib.import_module("rdconfvae.bench.throughput").bench_throughput
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    sys.exit(main())
