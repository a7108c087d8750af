"""Stress the worker pool the way the test suite does, looking for a worker that
never picks up a task (seen once in a fresh-clone test run; see worker_stall.md).

Each iteration: a ``num_threads`` call that times out after 0.05 s (imatinib, 200
conformers), then trivial tasks and a short embedding on the same pool, each with
a 60 s bound. Every third iteration uses 3 workers instead of 2, so the pool is
stopped and a new one forked, as the tests do. On a stall every worker's Python
stack is dumped to stderr (faulthandler on SIGUSR1, inherited by forked workers)
and the script exits 1.

    python benchmarks/diagnostics/worker_stall.py --seconds 1500
"""

from __future__ import annotations

import argparse
import faulthandler
import os
import signal
import sys
import threading
import time

from rdkit import Chem

import rdconfvae
from rdconfvae.embedding import workers
from rdconfvae.errors import EmbeddingTimeoutError
from rdconfvae.model.store import load_model

IMATINIB = "Cc1ccc(NC(=O)c2ccc(CN3CCN(C)CC3)cc2)cc1Nc1nccc(-c2cccnc2)n1"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="how long to try")
    args = parser.parse_args()
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    weights = load_model().path.parent
    real_stop, alive_after_stop = workers._stop, []

    def stop_and_count(pool):  # which threads are left when a new pool is forked
        real_stop(pool)
        alive_after_stop.append(threading.active_count())
        others = sorted(t.name for t in threading.enumerate() if t is not threading.main_thread())
        if others:
            print("threads alive when the next pool is forked:", others, flush=True)

    workers._stop = stop_and_count
    t_end = time.monotonic() + args.seconds
    it = 0
    while time.monotonic() < t_end:
        it += 1
        threads = 3 if it % 3 == 0 else 2
        mol = Chem.AddHs(Chem.MolFromSmiles(IMATINIB))
        try:
            rdconfvae.embed(mol, n=200, seed=it, num_threads=threads, timeout=0.05)
        except EmbeddingTimeoutError:
            pass
        pool = workers.get_pool(threads, weights)
        t0 = time.monotonic()
        try:
            futures = [pool.submit(abs, -i) for i in range(2 * threads)]
            for fut in futures:
                fut.result(timeout=60)
            small = Chem.AddHs(Chem.MolFromSmiles("CC(=O)Nc1ccc(O)cc1"))
            rdconfvae.embed(small, n=40, seed=0, num_threads=threads, timeout=120)
        except Exception as exc:  # a stall shows as a timeout here
            print(
                f"iteration {it}: {type(exc).__name__}: {exc} after "
                f"{time.monotonic() - t0:.1f} s; worker stacks follow",
                flush=True,
            )
            for pid in list(pool._processes):
                os.kill(pid, signal.SIGUSR1)
            time.sleep(2)
            faulthandler.dump_traceback(all_threads=True)
            return 1
        if it % 100 == 0:
            print(f"iteration {it}: ok", flush=True)
    print(
        f"no stall in {it} iterations ({len(alive_after_stop)} pools replaced; threads "
        f"alive in this process when each new pool was forked: max "
        f"{max(alive_after_stop, default=1)})",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
