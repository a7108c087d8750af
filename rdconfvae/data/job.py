"""The file job of ``python -m rdconfvae.data build``: sharded, resumable, parallel.

Files (:func:`build_file`): one multi-conformer SDF (``.sdf`` or ``.sdf.gz``, one record per
conformer, records of a molecule contiguous and in energy order), readable with
:func:`read_built_ensembles` (that is :func:`~rdconfvae.data.readers.read_sdf_ensembles` with
:data:`~rdconfvae.data.recipe_options.ENERGY_PROP` and
:data:`~rdconfvae.data.recipe_options.WEIGHT_PROP`); ``OUT.errors.tsv`` (name, reason: every
molecule that produced no ensemble); ``OUT.manifest.json`` (options, counts, failures, times);
``OUT.progress.json`` (the resume checkpoint).

Determinism: each molecule is built by :func:`rdconfvae.data.recipe.build_one` with a seed
derived from the run seed and its record index in the input, so ``workers`` and ``shard``
never change a molecule's ensemble, and output order is input order.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from rdkit import rdBase

from rdconfvae.batch import process_map
from rdconfvae.batch.inputs import count_records, read_molecules
from rdconfvae.batch.resumable_output import ResumableOutput, write_json_atomic
from rdconfvae.data.readers import read_sdf_ensembles
from rdconfvae.data.recipe import MoleculeResult, build_one
from rdconfvae.data.recipe_options import ENERGY_PROP, STAT_KEYS, WEIGHT_PROP, BuildOptions
from rdconfvae.data.records import MolRecord
from rdconfvae.data.xtb import load_tblite
from rdconfvae.errors import (
    DataError,
    InvalidInputError,
)
from rdconfvae.hashing import sha256_file

__all__ = [
    "build_file",
    "ordered_map",
    "read_built_ensembles",
]

log = logging.getLogger(__name__)


_PROGRESS_FORMAT = 1


def _init_worker(parent: int) -> None:
    """Worker start-up: RDKit and per-conformer warnings quiet (they are counted instead);
    the worker ends when its parent dies (a SIGKILLed run would otherwise leave idle workers
    waiting on the task queue forever)."""
    from rdkit import RDLogger

    from rdconfvae.embedding.workers import exit_with_parent

    RDLogger.DisableLog("rdApp.*")  # type: ignore[attr-defined]  # absent from rdkit stubs
    logging.getLogger("rdconfvae.forcefield.mmff").setLevel(logging.ERROR)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    exit_with_parent(parent)


def ordered_map(
    fn: Callable[..., Any], items: Iterable[Any], workers: int, *args: Any
) -> Iterator[Any]:
    """:func:`rdconfvae.batch.process_map.ordered_map` with the builder's worker start-up:
    RDKit quiet,
    no model loaded, the worker ends with its parent."""
    return process_map.ordered_map(
        fn, items, workers, *args, initializer=_init_worker, initargs=(os.getpid(),)
    )


def _side_path(out: Path, suffix: str) -> Path:
    return out.with_name(out.name + suffix)


def _parse_shard(shard: str | tuple[int, int] | None) -> tuple[int, int]:
    if shard is None:
        return 0, 1
    if isinstance(shard, str):
        try:
            i_text, n_text = shard.split("/")
            i, n = int(i_text), int(n_text)
        except ValueError:
            raise InvalidInputError(f"shard must look like i/n (e.g. 0/4), got {shard!r}") from None
    else:
        i, n = shard
    if n < 1 or not 0 <= i < n:
        raise InvalidInputError(f"shard i/n needs n >= 1 and 0 <= i < n, got {i}/{n}")
    return i, n


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """Refuse a second build writing the same output at the same time."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock
        yield
        return
    with open(path, "a") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise DataError(f"another build is writing this output (lock {path})") from None
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
            with contextlib.suppress(OSError):
                path.unlink()


def _fresh_state() -> dict[str, Any]:
    return {
        "done": 0,
        "ok": 0,
        "failed": 0,
        "out_offset": 0,
        "err_offset": 0,
        "stats": dict.fromkeys((*STAT_KEYS, "stereo_assigned"), 0),
        "failures_by_kind": {},
        "cpu_s": 0.0,
        "wall_s": 0.0,
        "sittings": 0,
    }


def build_file(
    input_path: str | Path,
    output_path: str | Path,
    options: BuildOptions | None = None,
    *,
    workers: int = 1,
    limit: int | None = None,
    shard: str | tuple[int, int] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Build ensembles for every molecule of ``input_path`` into ``output_path``.

    Input: ``.smi`` (``SMILES name`` per line, ``#`` comments), ``.csv`` (``smiles`` and
    optional ``name`` columns) or ``.sdf[.gz]`` (graph and stereo of each record), read by
    :func:`rdconfvae.batch.inputs.read_molecules`; record indices count from 0 in file order.

    Args:
        input_path: the molecules.
        output_path: ``.sdf`` or ``.sdf.gz``; side files ``OUT.errors.tsv`` (name, reason per
            failed molecule), ``OUT.manifest.json`` and ``OUT.progress.json`` next to it.
        options: the recipe (default :class:`BuildOptions`).
        workers: worker processes (0: one per CPU); the output does not depend on it.
        limit: handle only the first ``limit`` records of the selection (a later
            ``resume=True`` run with a larger or no limit continues after them).
        shard: ``"i/n"``: only records with ``index % n == i``.
        resume: continue an interrupted run: the files are cut back to the last checkpoint
            (taken after every molecule) and the run goes on; refused when the input, options
            or shard differ. Without a checkpoint it starts from the beginning.
        overwrite: replace an existing output instead of refusing.
        progress: progress bar on stderr (rate, ETA); None shows it only on a terminal.

    Returns:
        The manifest (also written to ``OUT.manifest.json``).

    Raises:
        InvalidInputError: bad arguments, or an input with no molecule.
        DataError: the output exists (without ``resume``/``overwrite``), or the checkpoint
            belongs to another input, options or shard.
        ImportError: ``options.xtb`` without tblite.
    """
    from tqdm.auto import tqdm

    options = options or BuildOptions()
    src, out = Path(input_path), Path(output_path)
    if not out.name.lower().endswith((".sdf", ".sdf.gz")):
        raise InvalidInputError(f"output must end in .sdf or .sdf.gz, got {out.name}")
    if not src.is_file():
        raise InvalidInputError(f"input file {src} does not exist")
    if limit is not None and limit < 0:
        raise InvalidInputError("limit must be >= 0")
    if options.xtb:
        load_tblite()  # fail before any work
    shard_i, shard_n = _parse_shard(shard)
    workers = (os.cpu_count() or 1) if workers == 0 else max(int(workers), 1)
    errors = _side_path(out, ".errors.tsv")
    prog_path = _side_path(out, ".progress.json")
    manifest_path = _side_path(out, ".manifest.json")
    out.parent.mkdir(parents=True, exist_ok=True)

    n_records = count_records(src)
    if n_records == 0:
        raise InvalidInputError(f"{src}: no molecules in the input (empty file?)")
    n_shard = max(0, (n_records - shard_i + shard_n - 1) // shard_n)
    n_target = n_shard if limit is None else min(limit, n_shard)
    identity = {
        "format": _PROGRESS_FORMAT,
        "input_sha256": sha256_file(src),
        "options": options.to_dict(),
        "shard": [shard_i, shard_n],
    }

    with _lock(_side_path(out, ".lock")):
        state = _fresh_state()
        if resume and prog_path.is_file():
            saved = json.loads(prog_path.read_text(encoding="utf-8"))
            for key, value in identity.items():
                then = saved.get(key)
                if then == value:
                    continue
                if isinstance(then, dict) and isinstance(value, dict):
                    diff = ", ".join(
                        f"{k}: {then.get(k)!r} then, {value.get(k)!r} now"
                        for k in sorted(set(then) | set(value))
                        if then.get(k) != value.get(k)
                    )
                else:
                    diff = f"{then!r} then, {value!r} now"
                what = "the input file" if key == "input_sha256" else key
                raise DataError(
                    f"cannot resume {out}: {what} differs from the interrupted run ({diff}); "
                    "rerun with the same input and options, or start again with --overwrite"
                )
            state = {k: saved[k] for k in state}
            log.info("resuming %s after %d molecules", out, state["done"])
        elif resume:
            log.info("no checkpoint at %s: starting from the beginning", prog_path)
        elif not overwrite and (out.exists() or prog_path.exists()):
            raise DataError(
                f"{out} exists: pass --resume to continue it or --overwrite to start again"
            )
        already = state["done"]
        state["sittings"] += 1
        t0 = time.perf_counter()

        def save(complete: bool) -> None:
            write_json_atomic(prog_path, {**identity, **state, "complete": complete})

        def selection() -> Iterator[Any]:
            k = 0  # position within the shard
            for rec in read_molecules(src):
                if rec.index % shard_n != shard_i:
                    continue
                if k >= n_target:
                    return
                if k >= already:
                    yield rec
                k += 1

        sink = ResumableOutput(
            out, errors, state["out_offset"], state["err_offset"], error=DataError
        )
        if already == 0:
            state["out_offset"], state["err_offset"] = sink.checkpoint()
            save(False)
        bar = tqdm(
            total=n_target,
            initial=min(already, n_target),
            unit="mol",
            desc=out.name,
            disable=None if progress is None else not progress,
            dynamic_ncols=True,
        )
        names: set[str] = set()
        n_dup_names = 0  # in this sitting
        try:
            for result in ordered_map(_work, selection(), workers, options):
                state["done"] += 1
                state["cpu_s"] += result.cpu_s
                if result.ok:
                    sink.write_record(result.sdf)
                    state["ok"] += 1
                    for key, value in result.stats.items():
                        state["stats"][key] = state["stats"].get(key, 0) + int(value)
                else:
                    sink.write_error(result.name, result.error)
                    state["failed"] += 1
                    kind = result.error.split(":", 1)[0]
                    state["failures_by_kind"][kind] = state["failures_by_kind"].get(kind, 0) + 1
                    log.warning("%s (record %d): %s", result.name, result.index, result.error)
                if result.name in names:
                    if not n_dup_names:
                        log.warning(
                            "name %r occurs more than once: read the output with "
                            "group_by='prop:record_index' (count in the manifest)",
                            result.name,
                        )
                    n_dup_names += 1
                names.add(result.name)
                state["out_offset"], state["err_offset"] = sink.checkpoint()
                state["wall_s"] += time.perf_counter() - t0
                t0 = time.perf_counter()
                save(False)
                bar.update(1)
        finally:
            bar.close()
            sink.close()
        complete = state["done"] >= n_shard
        save(complete)
        manifest = _manifest(
            src,
            out,
            errors,
            options,
            identity,
            state,
            n_records,
            n_shard,
            limit,
            workers,
            complete,
        )
        manifest["counts"]["repeated_names_last_sitting"] = n_dup_names
        write_json_atomic(manifest_path, manifest)
    return manifest


def _work(record: Any, options: BuildOptions) -> MoleculeResult:
    if record.item is None:
        return MoleculeResult(
            record.index, record.name, error=f"unreadable record: {record.problem}"
        )
    return build_one(record.item, record.name, record.index, options)


def _manifest(
    src: Path,
    out: Path,
    errors: Path,
    options: BuildOptions,
    identity: dict[str, Any],
    state: dict[str, Any],
    n_records: int,
    n_shard: int,
    limit: int | None,
    workers: int,
    complete: bool,
) -> dict[str, Any]:
    ok, stats = state["ok"], state["stats"]
    return {
        "format": "rdconfvae-ensembles",
        "complete": complete,
        "input": {
            "file": str(src),
            "sha256": identity["input_sha256"],
            "records": n_records,
            "shard": f"{identity['shard'][0]}/{identity['shard'][1]}",
            "records_in_shard": n_shard,
            "limit": limit,
        },
        "options": options.to_dict(),
        "energy_method": options.energy_method,
        "recipe": "ETKDGv3 -> MMFF94s to convergence"
        + (" -> GFN2-xTB" if options.xtb else "")
        + " -> stereo check -> energy window -> heavy-atom RMSD dedupe -> Boltzmann weights",
        "output": {
            "file": str(out),
            "bytes": out.stat().st_size,
            "sha256": sha256_file(out),
            "energy_prop": ENERGY_PROP,
            "weight_prop": WEIGHT_PROP,
            "read_with": "rdconfvae.data.read_built_ensembles(path)",
        },
        "counts": {
            "molecules_done": state["done"],
            "molecules_ok": ok,
            "molecules_failed": state["failed"],
            "conformers": stats,
            "mean_conformers_per_molecule": round(stats["kept"] / ok, 2) if ok else None,
        },
        "failures": {"file": str(errors), "by_kind": state["failures_by_kind"]},
        "time": {
            "wall_s": round(state["wall_s"], 2),
            "cpu_s": round(state["cpu_s"], 2),
            "cpu_s_per_molecule": round(state["cpu_s"] / state["done"], 3)
            if state["done"]
            else None,
            "sittings": state["sittings"],
            "workers_last_sitting": workers,
        },
        "software": {
            "rdkit": rdBase.rdkitVersion,
            "numpy": np.__version__,
            "python": platform.python_version(),
            "tblite": _dist_version("tblite") if options.xtb else None,
        },
    }


def _dist_version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def read_built_ensembles(path: str | Path, **kwargs: Any) -> list[MolRecord]:
    """Read a :func:`build_file` output: one record per molecule, energies and weights set.

    :func:`~rdconfvae.data.readers.read_sdf_ensembles` with ``energy_prop=ENERGY_PROP`` and
    ``weight_prop=WEIGHT_PROP``; other keyword arguments (``group_by``,
    ``allowed_elements``, ``skipped``) pass through.
    """
    kwargs.setdefault("energy_prop", ENERGY_PROP)
    kwargs.setdefault("weight_prop", WEIGHT_PROP)
    return read_sdf_ensembles(path, **kwargs)
