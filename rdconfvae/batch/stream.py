"""Streaming batch embedding: input file -> worker processes -> SDF, resumable.

``rdconfvae embed`` is a thin shell over :func:`embed_file`. Data flows one way:

    read_molecules (streaming) -> ordered_map (bounded window of in-flight
    molecules, worker processes) -> embed_one -> ResumableOutput (SDF + errors,
    checkpointed)

Memory stays constant on any input length: at most ``4 x workers`` molecules
are in flight and results are written in input order as soon as they are next.

This module runs the file: it checks the paths, keeps the checkpoint and sums up the run.
The parts live by job and are re-exported here: the reader in :mod:`rdconfvae.batch.inputs`,
the ordered map in :mod:`rdconfvae.batch.process_map`, the unit of work
(:func:`~rdconfvae.batch.unit.embed_record`) in :mod:`rdconfvae.batch.unit`, the output in
:mod:`rdconfvae.batch.resumable_output`.

Resume: every checkpoint (every 100 molecules or 10 s) records, in
``OUTPUT.progress.json`` (written atomically), how many input records are done
and the byte length of the output and error files at that point. ``resume=True``
truncates both files to those lengths (dropping anything written after the last
checkpoint), skips the done records and appends: no molecule is lost or written
twice. A gzip output is closed as one gzip member per checkpoint (a multi-member
gzip file, which every gzip reader accepts), so it can be cut at a member boundary.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from pathlib import Path

from rdconfvae.batch.inputs import InputRecord, count_records, read_molecules
from rdconfvae.batch.process_map import init_worker, ordered_map
from rdconfvae.batch.resumable_output import ResumableOutput, write_json_atomic
from rdconfvae.batch.unit import (
    EmbedOptions,
    EmbedResult,
    collect_logs,
    crashed_result,
    embed_one,
    embed_record,
)
from rdconfvae.errors import EmbeddingFailedError, InvalidInputError

__all__ = [
    "InputRecord",
    "read_molecules",
    "count_records",
    "ordered_map",
    "embed_file",
    "BatchSummary",
    "write_json_atomic",
    # re-exported from where they live now (the names this module has always offered)
    "ResumableOutput",
    "collect_logs",
    "EmbedOptions",
    "EmbedResult",
    "embed_one",
]

#: Checkpoint cadence of the resumable output.
_CHECKPOINT_EVERY = 100
_CHECKPOINT_SECONDS = 10.0
_PROGRESS_FORMAT = 1

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, then deliver them to the old handlers.

    Wraps the writing of one result, so that Ctrl-C or a batch system's SIGTERM never lands in
    the middle of a record (which would leave only the previous checkpoint to resume from).
    Python runs signal handlers only in the main thread; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    held = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        old = signal.getsignal(sig)
        if old is not None:  # None: a handler not set from Python, which cannot be restored
            held[sig] = signal.signal(sig, lambda signum, _frame: caught.append(signum))
    try:
        yield
    finally:
        for sig, old in held.items():
            signal.signal(sig, old)
        if caught:
            signal.raise_signal(caught[0])  # the old handler runs now, between two records


def _progress_path(out: Path) -> Path:
    return out.with_name(out.name + ".progress.json")


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
            (see :data:`rdconfvae.batch.inputs.INPUT_FORMATS`).
        capture_logs: route RDKit's log and warnings (in this process and the workers)
            through :func:`collect_logs`: each line is logged once, after its molecule, on
            the ``rdconfvae.batch.stream`` logger as ``name: line`` (warnings at WARNING, RDKit's
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

    from rdconfvae.batch.inputs import input_format as _format

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
    from rdconfvae.model.store import load_model

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
            embed_record,
            records,
            workers,
            options,
            initializer=init_worker,
            initargs=init_args,
            on_crash=crashed_result,
        )
        for result in results:
            for line in result.messages:
                level = logging.INFO if line.startswith("RDKit: ") else logging.WARNING
                log.log(level, "%s: %s", result.name, line)
            n_messages += len(result.messages)
            n_with += bool(result.messages)
            with _signals_held():
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
