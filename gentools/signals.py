"""Signal handlers for the length of a block: how a notebook run (``jobs``) and training
(``train.fit``) turn SIGINT and SIGTERM into a clean stop with a checkpoint."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator

STOP = (signal.SIGINT, signal.SIGTERM)  # a kernel interrupt, and a scheduler's notice


@contextlib.contextmanager
def handled(handler: Callable, signals: tuple[int, ...] = STOP) -> Iterator[None]:
    """Call ``handler(signum, frame)`` on ``signals`` inside the block and restore the previous
    handlers after it. Handlers can only be set in the main thread: elsewhere (a Dask
    worker, a thread) the block runs with the signals as they are."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
