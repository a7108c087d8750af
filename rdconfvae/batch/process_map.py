"""An ordered map over worker processes: the parallelism of the batch surfaces.

:func:`ordered_map` runs ``fn(item, *args)`` on ``spawn``-ed worker processes and yields the
results in input order, with a bounded window of items in flight (memory constant on any
input length) and recovery from a worker that dies. Its default worker start-up,
:func:`init_worker`, prepares a process for :func:`rdconfvae.batch.unit.embed_record`: one
torch thread, the model loaded once, the worker ended with its parent. Used by
:func:`rdconfvae.batch.stream.embed_file` and the ensemble builder (:mod:`rdconfvae.data.job`).
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from rdconfvae.batch.unit import collect_logs
from rdconfvae.embedding.workers import exit_with_parent

__all__ = ["ordered_map", "init_worker"]


def init_worker(parent: int, capture: bool = False) -> None:
    """Worker start-up: one torch thread (the processes are the parallelism), model loaded
    once; the worker ends when ``parent`` does
    (see :func:`rdconfvae.embedding.workers.exit_with_parent`).
    ``capture``: :func:`collect_logs` in the worker."""
    import torch

    exit_with_parent(parent)

    torch.set_num_threads(1)
    if capture:
        collect_logs()
    from rdconfvae.model.store import load_model

    load_model()


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
        initializer, initargs = init_worker, (os.getpid(),)
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
