"""gentools.signals: handlers for the length of a block, restored after it."""

from __future__ import annotations

import os
import signal
import threading

from gentools import signals


def test_handlers_are_set_inside_the_block_and_restored_after() -> None:
    seen: list[int] = []
    before = {s: signal.getsignal(s) for s in signals.STOP}
    with signals.handled(lambda signum, frame: seen.append(signum)):
        os.kill(os.getpid(), signal.SIGTERM)  # delivered to this (main) thread at once
        os.kill(os.getpid(), signal.SIGINT)
    assert seen == [signal.SIGTERM, signal.SIGINT]
    assert {s: signal.getsignal(s) for s in signals.STOP} == before


def test_outside_the_main_thread_the_block_runs_with_signals_as_they_are() -> None:
    before = signal.getsignal(signal.SIGTERM)
    inside: list[object] = []

    def work() -> None:
        with signals.handled(lambda signum, frame: None):
            inside.append(signal.getsignal(signal.SIGTERM))

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert inside == [before]
