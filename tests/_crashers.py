"""Worker functions that kill their own process, for the batch crash test (test_cli.py).

A module of their own with no heavy imports: spawned worker processes import it to unpickle
the function, and a restarted pool should not pay for importing the test module.
"""

import os
import signal


def die_on_three(item: int) -> int:
    if item == 3:
        os.kill(os.getpid(), signal.SIGKILL)  # as the out-of-memory killer or a segfault would
    return item * 10


def die_always(item: int) -> int:
    os._exit(1)
