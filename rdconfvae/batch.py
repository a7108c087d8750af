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

import gzip
import json
import logging
import multiprocessing
import os
import re
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import IO, Any

from rdconfvae.errors import EmbeddingFailedError, InvalidInputError
from rdconfvae.inputs import InputRecord, count_records, read_molecules
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

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------- parallel map


def _init_worker(parent: int, capture: bool = False) -> None:
    """Worker start-up: one torch thread (the processes are the parallelism), model loaded
    once; the worker ends when ``parent`` does (see :func:`rdconfvae.workers.exit_with_parent`).
    ``capture``: :func:`collect_logs` in the worker."""
    import torch

    from rdconfvae.workers import exit_with_parent

    exit_with_parent(parent)

    torch.set_num_threads(1)
    if capture:
        collect_logs()
    from rdconfvae.modelstore import load_model

    load_model()


class _Collector(logging.Handler):
    """Keeps the messages logged while one molecule is embedded."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage().strip()
        if record.name == "py.warnings":
            # "path:line: Category: message\n  source line" -> "Category: message"
            first = text.splitlines()[0] if text else ""
            parts = first.split(": ", 1)
            text = parts[1] if len(parts) == 2 else first
        else:
            text = "RDKit: " + " ".join(_RDKIT_TIME.sub("", text).split())
        if not self.lines or self.lines[-1] != text[:500]:  # RDKit often says it twice
            self.lines.append(text[:500])


_collector: _Collector | None = None
_RDKIT_TIME = re.compile(r"^\[\d\d:\d\d:\d\d\] ")


def collect_logs() -> Callable[[], None]:
    """Keep RDKit's log and Python warnings of this process with each :func:`_work` result.

    RDKit logs to Python's ``logging`` (``rdBase.LogToPythonLogger``) and warnings go to
    logging (``logging.captureWarnings``); both are kept per molecule in
    :attr:`EmbedResult.messages` instead of being printed as they come, so lines from
    worker processes neither interleave with the caller's nor lose their molecule.

    Returns:
        A function undoing it: warnings printed again, the ``rdkit`` logger's handlers back
        (RDKit keeps logging through Python, to stderr as RDKit does in Jupyter).
    """
    global _collector
    from rdkit import rdBase

    if _collector is not None:
        return lambda: None
    rdBase.LogToPythonLogger()
    logging.captureWarnings(True)
    collector = _collector = _Collector()
    saved = []
    for name in ("rdkit", "py.warnings"):
        logger = logging.getLogger(name)
        saved.append((logger, list(logger.handlers), logger.level, logger.propagate))
        for handler in list(logger.handlers):  # rdkit's own handler prints to stderr
            logger.removeHandler(handler)
        logger.addHandler(collector)
        logger.setLevel(logging.INFO)
        logger.propagate = False

    def restore() -> None:
        global _collector
        logging.captureWarnings(False)
        for logger, handlers, level, propagate in saved:
            logger.removeHandler(collector)
            for handler in handlers:
                logger.addHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate
        _collector = None

    return restore


def _work(record: InputRecord, options: EmbedOptions) -> EmbedResult:
    """:func:`embed_one` for a record; a failure's reason names where the record is (and
    RDKit's first message about it); the lines logged meanwhile are kept with the result."""
    if record.item is None:
        problem = f"InvalidInputError: {record.problem}"
        return EmbedResult(record.index, record.name, "failed", problem)
    if _collector is not None:
        _collector.lines = []
    result = embed_one(record.item, record.name, record.index, options)
    messages = tuple(_collector.lines) if _collector is not None else ()
    if not result.ok:
        where = [record.where] if record.where else []
        where += [m for m in messages if m.startswith("RDKit: ")][:1]
        if where:
            result = replace(result, error=f"{result.error} ({'; '.join(where)})")
    if messages:
        result = replace(result, messages=messages)
    return result


def _crashed(record: InputRecord) -> EmbedResult:
    """The result of a record whose worker process died while embedding it (twice)."""
    where = f" ({record.where})" if record.where else ""
    return EmbedResult(
        record.index,
        record.name,
        "failed",
        "EmbeddingFailedError: the worker process embedding this molecule died (killed by a "
        f"signal or crashed in native code), also when retried alone{where}",
    )


def ordered_map(
    fn: Callable[..., Any],
    items: Iterable[Any],
    workers: int,
    *args: Any,
    window: int | None = None,
    initializer: Callable[..., None] | None = None,
    initargs: tuple[Any, ...] = (),
    on_crash: Callable[[Any], Any] | None = None,
) -> Iterator[Any]:
    """``fn(item, *args)`` for every item, in input order, on ``workers`` processes.

    At most ``window`` (default ``4 x workers``) items are in flight, so memory does
    not grow with the input. ``workers <= 1`` runs in this process. Worker processes
    are started with the ``spawn`` method (no inherited threads or locks) and run
    ``initializer(*initargs)`` first (default: one torch thread, model loaded once, exit
    with this process).

    A worker that dies (killed by a signal, a crash in native code) takes the pool with
    it. With ``on_crash`` a new pool is started and the item being waited for is run
    there alone: if it kills that pool too, ``on_crash(item)`` stands for its result;
    the other items in flight are run again (``fn`` must be deterministic for the output
    not to depend on the crash). Three items in a row that kill their pool mean the
    workers cannot work at all (a failing ``initializer``): ``BrokenProcessPool`` is
    raised. Without ``on_crash`` the first crash raises it.
    """
    if workers <= 1:
        for item in items:
            yield fn(item, *args)
        return
    window = window or 4 * workers
    if initializer is None:
        initializer, initargs = _init_worker, (os.getpid(),)
    ctx = multiprocessing.get_context("spawn")

    def start() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            workers, mp_context=ctx, initializer=initializer, initargs=initargs
        )

    pool = start()
    pending: deque[tuple[Any, Future[Any]]] = deque()
    crashes = 0  # items in a row that killed their pool

    def take() -> Any:
        nonlocal pool, crashes
        item, future = pending.popleft()
        try:
            return future.result()
        except BrokenProcessPool:
            if on_crash is None:
                raise
        pool.shutdown(wait=False, cancel_futures=True)
        pool = start()
        try:
            result = pool.submit(fn, item, *args).result()
            crashes = 0
        except BrokenProcessPool:
            crashes += 1
            if crashes >= 3:
                raise
            pool.shutdown(wait=False, cancel_futures=True)
            pool = start()
            result = on_crash(item)
        rest = [it for it, _ in pending]
        pending.clear()
        pending.extend((it, pool.submit(fn, it, *args)) for it in rest)
        return result

    try:
        for item in items:
            pending.append((item, pool.submit(fn, item, *args)))
            if len(pending) >= window:
                yield take()
        while pending:
            yield take()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# -------------------------------------------------------------------- resumable output


class ResumableOutput:
    """SDF output + error TSV that can be cut back to the last checkpoint and appended to.

    Used by the embedding CLI, the ensemble builder and the Dask writer. A ``.gz`` output gets
    one gzip member per checkpoint interval (closed by :meth:`checkpoint`), so a checkpoint is
    always at a member boundary; multi-member gzip is standard gzip. A file shorter than
    its checkpoint (changed after the interrupted run) raises ``error`` (default
    :class:`InvalidInputError`). With ``lazy_errors`` the error file is created only when the
    first error is written (an old one is removed when the run starts from an empty error file).
    """

    def __init__(
        self,
        out: Path,
        errors: Path,
        out_offset: int = 0,
        err_offset: int = 0,
        *,
        error: type[Exception] = InvalidInputError,
        lazy_errors: bool = False,
    ) -> None:
        self.out_path, self.err_path = out, errors
        self.gz = out.name.lower().endswith(".gz")
        self._error = error
        self._out = self._open_at(out, out_offset)
        self._err: IO[bytes] | None = None
        try:
            if lazy_errors and err_offset == 0:
                errors.unlink(missing_ok=True)
            else:
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
        if self._err is None:
            self._err = open(self.err_path, "wb")
        line = f"{' '.join(name.split())}\t{' '.join(error.split())}\n"
        self._err.write(line.encode("utf-8", "replace"))

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
            if fh is not None:
                fh.flush()
                os.fsync(fh.fileno())
        return self._out.tell(), self._err.tell() if self._err is not None else 0

    def close(self) -> tuple[int, int]:
        """:meth:`checkpoint`, then close both files (also when the checkpoint fails)."""
        try:
            return self.checkpoint()
        finally:
            self._out.close()
            if self._err is not None:
                self._err.close()

    @property
    def has_errors(self) -> bool:
        """Whether the error file exists (it holds at least one line, or an earlier run's)."""
        return self._err is not None


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
    messages: int = 0  # lines logged about molecules in this sitting (see collect_logs)
    molecules_with_messages: int = 0

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
    input_format: str | None = None,
    capture_logs: bool = False,
) -> BatchSummary:
    """Embed every molecule of ``input_path`` into the SDF ``output_path``.

    Failed molecules go to ``errors_path`` (default ``OUTPUT.errors.tsv``: name, reason),
    created only when one fails, and the run goes on. The checkpoint
    ``OUTPUT.progress.json`` exists while the run does and is removed when it completes.
    See the module docstring for ``resume``.

    Args:
        workers: worker processes (``0``: one per CPU core).
        progress: show a progress bar (rate, ETA); ``None``: only on a terminal.
        input_format: ``"smi"``, ``"csv"`` or ``"sdf"``; ``None``: from the file name
            (see :data:`rdconfvae.inputs.INPUT_FORMATS`).
        capture_logs: route RDKit's log and warnings (in this process and the workers)
            through :func:`collect_logs`: each line is logged once, after its molecule, on
            the ``rdconfvae.batch`` logger as ``name: line`` (warnings at WARNING, RDKit's
            lines at INFO) and counted in the summary.

    Raises:
        InvalidInputError: unusable input file, an output name not ending in ``.sdf`` or
            ``.sdf.gz``, or a resume whose options or input differ or that has no checkpoint
            although the output exists.
        WeightsError: the model cannot be loaded (raised before any file is written).
        OSError: files cannot be read or written; a failure to write the output names the
            checkpoint that ``resume=True`` continues from.
    """
    from tqdm import tqdm

    from rdconfvae.inputs import input_format as _format

    src, out = Path(input_path), Path(output_path)
    errors = Path(errors_path) if errors_path else out.with_name(out.name + ".errors.tsv")
    if not out.name.lower().endswith((".sdf", ".sdf.gz")):
        raise InvalidInputError(
            f"output {out}: the output is SDF; name it .sdf or .sdf.gz "
            "(convert it afterwards for other formats, e.g. with Open Babel)"
        )
    if not src.is_file():
        raise InvalidInputError(f"input file {src} does not exist")
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise InvalidInputError(f"output {out}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise InvalidInputError(f"output {out}: the folder {folder} is not writable")
    fmt = _format(src, input_format)
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
    elif resume and out.exists():
        raise InvalidInputError(
            f"cannot resume: {out} exists but has no checkpoint ({prog_path.name}): the run "
            "that wrote it finished (the checkpoint is removed at the end); rerun without "
            "--resume to overwrite it"
        )
    elif resume:
        print(
            f"rdconfvae: no checkpoint at {prog_path}: starting from the beginning", file=sys.stderr
        )
    already = state["done"]

    total = None
    show = sys.stderr.isatty() if progress is None else progress
    if show:
        total = count_records(src, fmt)
    sink = ResumableOutput(out, errors, state["out_offset"], state["err_offset"], lazy_errors=True)
    t0 = time.perf_counter()
    last = time.monotonic()

    def save(complete: bool) -> None:
        write_json_atomic(prog_path, {**identity, **state, "complete": complete})

    records = (r for r in read_molecules(src, fmt) if r.index >= already)
    bar = tqdm(total=total, initial=already, unit="mol", disable=not show, dynamic_ncols=True)
    consistent = True  # False while a result is half written
    n_messages = n_with = 0
    restore: Callable[[], None] = lambda: None  # noqa: E731
    try:
        save(False)  # a checkpoint from the start: a kill at any point can be resumed
        if capture_logs and workers <= 1:
            restore = collect_logs()
        init_args = (os.getpid(), capture_logs)
        results = ordered_map(
            _work,
            records,
            workers,
            options,
            initializer=_init_worker,
            initargs=init_args,
            on_crash=_crashed,
        )
        for result in results:
            for line in result.messages:
                level = logging.INFO if line.startswith("RDKit: ") else logging.WARNING
                log.log(level, "%s: %s", result.name, line)
            n_messages += len(result.messages)
            n_with += bool(result.messages)
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
        state["out_offset"], state["err_offset"] = sink.close()
    except BaseException as exc:
        # keep every fully written molecule; after a half-written one (or when the disk
        # refuses the flush) the last checkpoint stands: resume cuts the files back to it
        try:
            offsets = sink.close()
            if consistent:
                state["out_offset"], state["err_offset"] = offsets
                save(False)
        except OSError:
            pass
        if isinstance(exc, BrokenProcessPool) and prog_path.exists():
            done = json.loads(prog_path.read_text())["done"]
            raise EmbeddingFailedError(
                "worker processes died on 3 molecules in a row: they cannot run (see their "
                f"messages above); the checkpoint {prog_path} holds the first {done} "
                "molecules: fix the cause and rerun the same command with --resume"
            ) from exc
        if isinstance(exc, OSError) and prog_path.exists():
            done = json.loads(prog_path.read_text())["done"]
            raise OSError(
                exc.errno,
                f"{exc.strerror or exc} while embedding {src.name} into {out}; the checkpoint "
                f"{prog_path} holds the first {done} molecules: fix the cause and rerun the "
                "same command with --resume",
            ) from exc
        raise
    finally:
        bar.close()
        restore()
    prog_path.unlink()
    if state["done"] == 0:
        log.warning("%s holds no molecules", src)
    return BatchSummary(
        state["done"],
        state["ok"],
        state["failed"],
        time.perf_counter() - t0,
        already,
        str(out),
        str(errors) if sink.has_errors else "",
        state["conformers"],
        n_messages,
        n_with,
    )
