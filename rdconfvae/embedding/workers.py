"""Worker processes behind ``num_threads > 1``: one molecule's samples (and then
its polish) in parallel.

Sampling is many small torch operations and a Python-level L-BFGS per chunk of
samples; threads serialise on the GIL there (measured: 0.90x with 2 threads).
So ``num_threads = k`` sends the chunks of a molecule to a persistent pool of
``k`` worker processes instead. The chunks and their random numbers are fixed by
the seed and the number of conformers alone, and every chunk runs the same code
on one torch thread wherever it runs, so the coordinates are identical for any
``num_threads``. The polish (:func:`polish_task`) treats each conformer on its own
and receives the coordinates as float64 arrays, so it too gives the same
coordinates however the conformers are split.

The pool is created on first use and kept for the life of the process (one per
``num_threads`` value and model file). On Linux workers are forked: they start in
milliseconds with the parent's loaded model, and scripts need no
``if __name__ == "__main__"`` guard. Elsewhere they are spawned: the first call
pays the start-up (imports and model load, a few seconds) and, as with any
``multiprocessing`` use there, a script must guard its entry point. A pool that is
replaced is stopped together with its manager thread before the new one forks, so no
thread of ours runs in the parent at a fork. A daemonic
process (a ``multiprocessing.Pool`` worker) cannot have children: there
``num_threads`` falls back to the caller's process.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rdkit import Chem

from rdconfvae.deadline import Deadline

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from rdconfvae.embedding.sampling import Geometry
    from rdconfvae.model.featurize import MolGraph

__all__ = [
    "get_pool",
    "shutdown",
    "sample_chunk_task",
    "polish_task",
    "exit_with_parent",
    "run_sample_chunks",
    "polish_in_pool",
]

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_pool_key: tuple[int, str] | None = None


def _start_method() -> str:
    return "fork" if sys.platform.startswith("linux") else "spawn"


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(1)


def exit_with_parent(parent: int) -> None:
    """In a worker process: end it within about a second of its parent's death.

    A parent killed by SIGKILL cannot shut its pool down, and the workers would
    otherwise wait on the task queue forever. Call from a pool initializer with the
    parent's ``os.getpid()``.
    """
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def _init_worker(weights: str, parent: int) -> None:
    import torch

    from rdconfvae.model import store as modelstore

    exit_with_parent(parent)
    modelstore.reset_lock_after_fork()
    torch.set_num_threads(1)
    modelstore.load_model(Path(weights))


#: Seconds the workers get to finish their current chunk when the pool stops;
#: then they are terminated (a chunk is at most 16 samples: well under a second).
SHUTDOWN_GRACE_S = 5.0


def get_pool(workers: int, weights: Path) -> ProcessPoolExecutor | None:
    """The shared pool of ``workers`` processes serving the model in ``weights``.

    Returns None where child processes cannot be started (daemonic process). A pool
    broken by the death of a worker is replaced by a new one.
    """
    global _pool, _pool_key
    if multiprocessing.current_process().daemon:
        return None
    key = (int(workers), str(Path(weights).resolve()))
    with _lock:
        # a pool whose worker died (killed, out of memory) refuses all work: replace it
        broken = _pool is not None and bool(getattr(_pool, "_broken", False))
        if _pool is not None and _pool_key == key and not broken:
            return _pool
        if _pool is not None:
            _stop(_pool)
        ctx = multiprocessing.get_context(_start_method())
        _pool = ProcessPoolExecutor(
            key[0], mp_context=ctx, initializer=_init_worker, initargs=(key[1], os.getpid())
        )
        _pool_key = key
        # registered after multiprocessing's own exit handler (atexit runs last-in,
        # first-out), so the pool is stopped before multiprocessing joins its children
        atexit.unregister(shutdown)
        atexit.register(shutdown)
        return _pool


def _stop(pool: ProcessPoolExecutor) -> None:
    """Stop ``pool`` without waiting forever: pending chunks are cancelled, running
    ones get ``SHUTDOWN_GRACE_S``, then any worker still alive is terminated.

    Waiting forever is what ``shutdown(wait=True)`` does when a worker never takes
    its stop signal (observed: a worker blocked on the task queue's lock at
    interpreter exit held the test run for 14+ minutes).
    """
    procs = list((getattr(pool, "_processes", None) or {}).values())
    manager = getattr(pool, "_executor_manager_thread", None)
    pool.shutdown(wait=False, cancel_futures=True)
    deadline = time.monotonic() + SHUTDOWN_GRACE_S
    for proc in procs:
        proc.join(max(0.0, deadline - time.monotonic()))
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
            proc.join(1.0)
            if proc.is_alive():
                proc.kill()
                proc.join(1.0)
    # The executor's manager thread outlives its workers briefly. The next pool forks its
    # workers from this process, and a fork while another thread runs can hand a child a
    # lock held forever (measured: that thread was still alive at 9 of 30 pool
    # replacements), so wait for it too, bounded like the workers.
    if manager is not None and manager is not threading.current_thread():
        manager.join(max(1.0, deadline - time.monotonic()))


def shutdown() -> None:
    """Stop the worker processes (also done at interpreter exit, bounded in time)."""
    global _pool, _pool_key
    with _lock:
        if _pool is not None:
            _stop(_pool)
        _pool, _pool_key = None, None


atexit.register(shutdown)


def sample_chunk_task(
    weights: str,
    graph: dict[str, np.ndarray],
    geom: dict[str, np.ndarray],
    eps: np.ndarray,
    temperature: float,
    steps: int,
    enforce: bool,
    stress_iters: int,
    deadline: float,
    free_signs: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Run :func:`rdconfvae.embedding.sampling.sample_chunk` in a worker; arrays in, arrays out.

    ``deadline`` is a ``time.monotonic()`` value (a system-wide clock); a chunk that
    starts after it raises :class:`EmbeddingTimeoutError` without working.
    """
    import torch

    from rdconfvae.embedding.sampling import Geometry, sample_chunk
    from rdconfvae.errors import EmbeddingTimeoutError
    from rdconfvae.model.featurize import MolGraph
    from rdconfvae.model.store import load_model

    if time.monotonic() > deadline:
        raise EmbeddingTimeoutError("timeout reached during sampling")
    model = load_model(Path(weights))
    g = MolGraph(**{k: torch.from_numpy(v) for k, v in graph.items()})
    geo = Geometry(**{k: torch.from_numpy(v) for k, v in geom.items()})
    signs = None if free_signs is None else torch.from_numpy(free_signs)
    x, ok = sample_chunk(
        model, g, geo, torch.from_numpy(eps), temperature, steps, enforce, stress_iters, signs
    )
    return x.numpy(), ok.numpy()


def polish_task(mol_binary: bytes, coords: np.ndarray, max_iters: int) -> tuple[np.ndarray, bool]:
    """Run :func:`rdconfvae.forcefield.mmff.mmff_polish` in a worker.

    ``mol_binary`` is the molecule (explicit H, no conformer needed) as an RDKit
    binary; ``coords`` (k, N, 3) float64 the conformers to polish (sent as arrays:
    RDKit's binary stores coordinates in single precision, and the result must equal
    the in-process polish bit for bit). Returns the polished coordinates (k, N, 3) and
    whether MMFF could type the molecule.
    """
    from rdconfvae.forcefield.mmff import mmff_polish

    mol = Chem.Mol(mol_binary)  # type: ignore[call-overload]  # rdkit stubs lack Mol(bytes)
    mol.RemoveAllConformers()
    for x in coords:
        conf = Chem.Conformer(mol.GetNumAtoms())
        conf.SetPositions(np.ascontiguousarray(x, dtype=float))
        mol.AddConformer(conf, assignId=True)
    typed = mmff_polish(mol, max_iters)
    return np.stack([c.GetPositions() for c in mol.GetConformers()]), typed


def to_arrays(obj: Any) -> dict[str, np.ndarray]:
    """A dataclass of tensors as a dict of numpy arrays (cheap to pickle)."""
    return {k: v.numpy() for k, v in vars(obj).items()}


def run_sample_chunks(
    pool: ProcessPoolExecutor,
    chunks: list[torch.Tensor],
    signs: list[torch.Tensor | None],
    weights: Path,
    graph: MolGraph,
    geom: Geometry,
    temperature: float,
    steps: int,
    enforce: bool,
    stress_iters: int,
    deadline: Deadline,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """:func:`sample_chunk_task` on every chunk of latents, spread over ``pool``; results in
    chunk order. Raises :class:`EmbeddingTimeoutError` when the deadline passes."""
    import torch

    from rdconfvae.errors import EmbeddingTimeoutError

    graph_np, geom_np = to_arrays(graph), to_arrays(geom)
    futures = [
        pool.submit(
            sample_chunk_task,
            str(weights),
            graph_np,
            geom_np,
            c.numpy(),
            temperature,
            steps,
            enforce,
            stress_iters,
            deadline.at,
            None if sign is None else sign.numpy(),
        )
        for c, sign in zip(chunks, signs, strict=True)
    ]
    results = []
    try:
        for fut in futures:
            x_np, ok_np = fut.result(timeout=deadline.remaining())
            results.append((torch.from_numpy(x_np), torch.from_numpy(ok_np)))
    except FuturesTimeout:
        raise EmbeddingTimeoutError(
            f"timeout of {deadline.timeout} s reached during sampling"
        ) from None
    finally:
        for fut in futures:
            fut.cancel()
    return results


def polish_in_pool(
    full: Chem.Mol, iters: int, pool: ProcessPoolExecutor, threads: int, deadline: Deadline
) -> bool:
    """:func:`rdconfvae.forcefield.mmff.mmff_polish` on every conformer of ``full``, split over the
    ``threads`` workers of ``pool`` (each conformer is polished on its own, so the
    coordinates do not depend on the split). Returns False when MMFF cannot type the
    molecule (nothing changed then)."""
    from rdconfvae.errors import EmbeddingTimeoutError

    confs = list(full.GetConformers())
    groups = np.array_split(np.arange(len(confs)), min(len(confs), threads))
    binary = Chem.Mol(full, confId=confs[0].GetId()).ToBinary()
    xyz_all = np.stack([c.GetPositions() for c in confs])
    futures = [pool.submit(polish_task, binary, xyz_all[g], iters) for g in groups]
    try:
        results = [fut.result(timeout=deadline.remaining()) for fut in futures]
    except FuturesTimeout:
        raise EmbeddingTimeoutError(
            f"timeout of {deadline.timeout} s reached during the polish"
        ) from None
    finally:
        for fut in futures:
            fut.cancel()
    if not all(typed for _, typed in results):
        return False
    for group, (xyz, _) in zip(groups, results, strict=True):
        for i, x in zip(group, xyz, strict=True):
            confs[i].SetPositions(x)
    return True
