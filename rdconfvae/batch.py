"""Streaming batch embedding: input file -> worker processes -> SDF, resumable.

``rdconfvae embed`` is a thin shell over :func:`embed_file`. Data flows one way:

    read_molecules (streaming) -> ordered_map (bounded window of in-flight
    molecules, worker processes) -> embed_one -> ResumableOutput (SDF + errors,
    checkpointed)

Memory stays constant on any input length: at most ``4 x workers`` molecules
are in flight and results are written in input order as soon as they are next.

Resume: every checkpoint (every 100 molecules or 10 s) records, in
``OUTPUT.progress.json`` (written atomically), how many input records are done
and the byte length of the output and error files at that point. ``resume=True``
truncates both files to those lengths (dropping anything written after the last
checkpoint), skips the done records and appends: no molecule is lost or written
twice. A gzip output is closed as one gzip member per checkpoint (a multi-member
gzip file, which every gzip reader accepts), so it can be cut at a member boundary.
"""

from __future__ import annotations

import csv
import gzip
import json
import multiprocessing
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from rdconfvae.errors import InvalidInputError
from rdconfvae.pipeline import EmbedOptions, EmbedResult, embed_one

__all__ = [
    "InputRecord",
    "read_molecules",
    "count_records",
    "ordered_map",
    "embed_file",
    "BatchSummary",
    "write_json_atomic",
]

#: Checkpoint cadence of the resumable output.
_CHECKPOINT_EVERY = 100
_CHECKPOINT_SECONDS = 10.0
_PROGRESS_FORMAT = 1


@dataclass(frozen=True)
class InputRecord:
    """One input record: its position, a name, and a SMILES / mol block / Mol (or a problem)."""

    index: int
    name: str
    item: Any  # SMILES string or Chem.Mol; None when unreadable
    problem: str = ""  # why ``item`` is None


def _sdf_opener(path: Path) -> IO[bytes]:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]  # GzipFile is an IO[bytes]
    return open(path, "rb")


def read_molecules(path: str | Path) -> Iterator[InputRecord]:
    """Stream records from ``.smi`` (``SMILES name`` per line), ``.csv`` (a ``smiles`` column,
    optional ``name``/``id``), ``.sdf`` or ``.sdf.gz``.

    Unreadable records are yielded with ``item=None`` and the reason, so they can be
    reported and counted in order. Blank lines and ``#`` comments in ``.smi`` are skipped.

    Raises:
        InvalidInputError: a CSV without a ``smiles`` column.
        OSError: the file cannot be opened.
    """
    from rdkit import Chem

    path = Path(path)
    lower = path.name.lower()
    index = 0
    if lower.endswith((".sdf", ".sdf.gz")):
        with _sdf_opener(path) as fh:
            for mol in Chem.ForwardSDMolSupplier(fh, removeHs=False):
                if mol is None:
                    yield InputRecord(index, f"record{index + 1}", None, "unreadable SDF record")
                else:
                    title = mol.GetProp("_Name").strip() if mol.HasProp("_Name") else ""
                    yield InputRecord(index, title or f"record{index + 1}", mol)
                index += 1
        return
    if lower.endswith(".csv"):
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            cols = {c.strip().lower(): c for c in reader.fieldnames or []}
            smi_col = cols.get("smiles")
            if smi_col is None:
                raise InvalidInputError(
                    f"{path}: no 'smiles' column (columns: {reader.fieldnames})"
                )
            name_col = cols.get("name") or cols.get("id")
            for row in reader:
                title = (row.get(name_col) or "").strip() if name_col else ""
                yield InputRecord(index, title or f"mol{index + 1}", (row[smi_col] or "").strip())
                index += 1
        return
    with open(path) as fh:
        for line in fh:
            parts = line.strip().split(maxsplit=1)
            if not parts or parts[0].startswith("#"):
                continue
            title = parts[1].strip() if len(parts) > 1 else ""
            yield InputRecord(index, title or f"mol{index + 1}", parts[0])
            index += 1


def count_records(path: str | Path) -> int:
    """Number of records :func:`read_molecules` will yield, by a fast text scan."""
    path = Path(path)
    lower = path.name.lower()
    if lower.endswith((".sdf", ".sdf.gz")):
        with _sdf_opener(path) as fh:
            return sum(1 for line in fh if line.startswith(b"$$$$"))
    with open(path, "rb") as fh:
        if lower.endswith(".csv"):
            return max(sum(1 for line in fh if line.strip()) - 1, 0)
        return sum(1 for line in fh if line.strip() and not line.lstrip().startswith(b"#"))


# ---------------------------------------------------------------------- parallel map


def _init_worker(parent: int) -> None:
    """Worker start-up: one torch thread (the processes are the parallelism), model loaded
    once; the worker ends when ``parent`` does (see :func:`rdconfvae.workers.exit_with_parent`)."""
    import torch

    from rdconfvae.workers import exit_with_parent

    exit_with_parent(parent)

    torch.set_num_threads(1)
    from rdconfvae.modelstore import load_model

    load_model()


def _work(record: InputRecord, options: EmbedOptions) -> EmbedResult:
    if record.item is None:
        return EmbedResult(record.index, record.name, "failed", record.problem)
    return embed_one(record.item, record.name, record.index, options)


def ordered_map(
    fn: Callable[..., Any],
    items: Iterable[Any],
    workers: int,
    *args: Any,
    window: int | None = None,
    initializer: Callable[..., None] | None = None,
    initargs: tuple[Any, ...] = (),
) -> Iterator[Any]:
    """``fn(item, *args)`` for every item, in input order, on ``workers`` processes.

    At most ``window`` (default ``4 x workers``) items are in flight, so memory does
    not grow with the input. ``workers <= 1`` runs in this process. Worker processes
    are started with the ``spawn`` method (no inherited threads or locks) and run
    ``initializer(*initargs)`` first (default: one torch thread, model loaded once, exit
    with this process).
    """
    if workers <= 1:
        for item in items:
            yield fn(item, *args)
        return
    window = window or 4 * workers
    if initializer is None:
        initializer, initargs = _init_worker, (os.getpid(),)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=initializer, initargs=initargs
    ) as pool:
        pending: deque[Future[Any]] = deque()
        for item in items:
            pending.append(pool.submit(fn, item, *args))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


# -------------------------------------------------------------------- resumable output


class ResumableOutput:
    """SDF output + error TSV that can be cut back to the last checkpoint and appended to.

    Used by the embedding CLI and the ensemble builder. A ``.gz`` output gets one gzip
    member per checkpoint interval (closed by :meth:`checkpoint`), so a checkpoint is
    always at a member boundary; multi-member gzip is standard gzip. A file shorter than
    its checkpoint (changed after the interrupted run) raises ``error`` (default
    :class:`InvalidInputError`).
    """

    def __init__(
        self,
        out: Path,
        errors: Path,
        out_offset: int = 0,
        err_offset: int = 0,
        *,
        error: type[Exception] = InvalidInputError,
    ) -> None:
        self.out_path, self.err_path = out, errors
        self.gz = out.name.lower().endswith(".gz")
        self._error = error
        self._out = self._open_at(out, out_offset)
        try:
            self._err = self._open_at(errors, err_offset)
        except Exception:
            self._out.close()
            raise
        self._segment: gzip.GzipFile | None = None

    def _open_at(self, path: Path, offset: int) -> IO[bytes]:
        if offset == 0:
            return open(path, "wb")
        fh = open(path, "r+b")
        size = fh.seek(0, os.SEEK_END)
        if size < offset:
            fh.close()
            raise self._error(
                f"cannot resume: {path} is shorter ({size} bytes) than its checkpoint "
                f"({offset} bytes); it was modified since the interrupted run"
            )
        fh.truncate(offset)  # drop whatever was written after the checkpoint
        fh.seek(offset)
        return fh

    def write_record(self, text: str) -> None:
        """Append SDF text (one or more complete records)."""
        data = text.encode("utf-8")
        if self.gz:
            if self._segment is None:
                self._segment = gzip.GzipFile(filename="", fileobj=self._out, mode="wb", mtime=0)
            self._segment.write(data)
        else:
            self._out.write(data)

    def write_error(self, name: str, error: str) -> None:
        """Append one ``name<TAB>error`` line (whitespace in either folded to spaces)."""
        self._err.write(f"{' '.join(name.split())}\t{' '.join(error.split())}\n".encode())

    def write(self, result: EmbedResult) -> None:
        if result.ok:
            self.write_record(result.sdf())
        else:
            self.write_error(result.name, result.error)

    def checkpoint(self) -> tuple[int, int]:
        """Flush everything to disk; return the byte lengths of the output and error files."""
        if self._segment is not None:
            self._segment.close()  # writes the member trailer, leaves the file open
            self._segment = None
        for fh in (self._out, self._err):
            fh.flush()
            os.fsync(fh.fileno())
        return self._out.tell(), self._err.tell()

    def close(self) -> tuple[int, int]:
        offsets = self.checkpoint()
        self._out.close()
        self._err.close()
        return offsets


def _progress_path(out: Path) -> Path:
    return out.with_name(out.name + ".progress.json")


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON to a temporary file, sync it, and rename it over ``path`` (never half written)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@dataclass(frozen=True)
class BatchSummary:
    """What a batch run did (this sitting plus earlier resumed ones)."""

    done: int  # input records handled (embedded or failed)
    ok: int  # input molecules embedded
    failed: int  # input records that failed (listed in ``errors``)
    seconds: float  # wall time of this sitting
    resumed_from: int  # input records already done before this sitting
    output: str
    errors: str
    conformers: int = 0  # conformer records written to ``output`` (one SDF record each)

    @property
    def rate(self) -> float:
        """Molecules per second in this sitting."""
        return (self.done - self.resumed_from) / self.seconds if self.seconds > 0 else 0.0


def embed_file(
    input_path: str | Path,
    output_path: str | Path,
    options: EmbedOptions,
    *,
    workers: int = 1,
    resume: bool = False,
    errors_path: str | Path | None = None,
    progress: bool | None = None,
) -> BatchSummary:
    """Embed every molecule of ``input_path`` into the SDF ``output_path``.

    Failed molecules go to ``errors_path`` (default ``OUTPUT.errors.tsv``: name, reason)
    and the run goes on. See the module docstring for ``resume``.

    Args:
        workers: worker processes (``0``: one per CPU core).
        progress: show a progress bar (rate, ETA); ``None``: only on a terminal.

    Raises:
        InvalidInputError: unusable input file, or a resume whose options or input differ.
        WeightsError: the model cannot be loaded (raised before any file is written).
        OSError: files cannot be read or written.
    """
    from tqdm import tqdm

    src, out = Path(input_path), Path(output_path)
    errors = Path(errors_path) if errors_path else out.with_name(out.name + ".errors.tsv")
    if not src.is_file():
        raise InvalidInputError(f"input file {src} does not exist")
    from rdconfvae.modelstore import load_model

    load_model()  # WeightsError here, before any output file exists
    workers = (os.cpu_count() or 1) if workers == 0 else max(int(workers), 1)
    prog_path = _progress_path(out)
    identity = {
        "format": _PROGRESS_FORMAT,
        "input": str(src.resolve()),
        "input_size": src.stat().st_size,
        "output": str(out.resolve()),
        "options": asdict(options),
    }
    state = {"done": 0, "ok": 0, "failed": 0, "conformers": 0, "out_offset": 0, "err_offset": 0}
    if resume and prog_path.exists():
        saved = json.loads(prog_path.read_text())
        for key, value in identity.items():
            if saved.get(key) != value:
                raise InvalidInputError(
                    f"cannot resume: {key} differs from the interrupted run "
                    f"({saved.get(key)!r} then, {value!r} now); rerun without --resume"
                )
        # "conformers" is absent from checkpoints written before it was counted
        state = {k: saved.get(k, 0) if k == "conformers" else saved[k] for k in state}
    elif resume:
        print(
            f"rdconfvae: no checkpoint at {prog_path}: starting from the beginning", file=sys.stderr
        )
    already = state["done"]

    def summary(seconds: float) -> BatchSummary:
        return BatchSummary(
            state["done"],
            state["ok"],
            state["failed"],
            seconds,
            already,
            str(out),
            str(errors),
            state["conformers"],
        )

    if resume and already and json.loads(prog_path.read_text()).get("complete"):
        return summary(0.0)

    total = None
    show = sys.stderr.isatty() if progress is None else progress
    if show:
        total = count_records(src)
    sink = ResumableOutput(out, errors, state["out_offset"], state["err_offset"])
    t0 = time.perf_counter()
    last = time.monotonic()

    def save(complete: bool) -> None:
        write_json_atomic(prog_path, {**identity, **state, "complete": complete})

    records = (r for r in read_molecules(src) if r.index >= already)
    bar = tqdm(total=total, initial=already, unit="mol", disable=not show, dynamic_ncols=True)
    consistent = True  # False while a result is half written
    try:
        for result in ordered_map(_work, records, workers, options):
            consistent = False
            sink.write(result)
            state["done"] += 1
            state["ok" if result.ok else "failed"] += 1
            state["conformers"] += result.n_conformers if result.ok else 0
            consistent = True
            bar.update(1)
            if (
                state["done"] % _CHECKPOINT_EVERY == 0
                or time.monotonic() - last > _CHECKPOINT_SECONDS
            ):
                state["out_offset"], state["err_offset"] = sink.checkpoint()
                save(False)
                last = time.monotonic()
    except BaseException:
        # keep every fully written molecule; after a half-written one the last
        # checkpoint stands (resume cuts the files back to it)
        offsets = sink.close()
        if consistent:
            state["out_offset"], state["err_offset"] = offsets
            save(False)
        raise
    finally:
        bar.close()
    state["out_offset"], state["err_offset"] = sink.close()
    save(True)
    return summary(time.perf_counter() - t0)
