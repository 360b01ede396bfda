"""Widget events during a running cell: the one place the core leans on another package's
private internals (ipykernel's), behind a version check with a fallback that degrades instead
of breaking.

`process_ui_events` lets a widget click (the monitor's Stop button) reach a cell that is still
running, by reading ipykernel 7's shell-channel queue. Checked against ipykernel 7.x; on any
other version, or if those internals are not as expected, it does nothing (and says so once):
the click then arrives when the cell ends, and Kernel > Interrupt stops training cleanly
instead.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import warnings
from importlib import metadata

from IPython import get_ipython

SUPPORTED_IPYKERNEL = (7,)  # the major versions whose internals process_ui_events knows
_COMM_MSG_TYPES = frozenset({"comm_open", "comm_msg", "comm_close"})
_broken: list[str] = []  # why process_ui_events gave up, once it has


def _ipykernel_major() -> int | None:
    try:
        return int(metadata.version("ipykernel").split(".")[0])
    except (metadata.PackageNotFoundError, ValueError):
        return None


def process_ui_events() -> int:
    """Handle the widget messages that wait while this cell runs; return how many.

    ipykernel 7 receives shell messages on its shell-channel thread and forwards the main
    shell's ones through an inproc ZMQ pair to the main thread, whose event loop is blocked
    while a cell runs. Here we drain that pair without blocking: comm messages (widget clicks
    and value changes) go straight to the comm manager, under their own parent header as
    ipykernel does for comms that arrive during an async cell; every other message
    (execute_request, kernel_info_request, ...) is scheduled, in arrival order, as a task on
    the kernel's loop, where it waits for the running cell like it would have anyway. No
    busy/idle status is published for the comms, so the frontend keeps showing "busy".

    Returns 0 and reads nothing without an ipykernel 7 kernel (plain python, a terminal
    IPython, another ipykernel), or off the thread that runs the cell. If ipykernel's internals
    are not what this expects, it warns once and stays off for the rest of the session.
    """
    if _broken:
        return 0
    kernel = getattr(get_ipython(), "kernel", None)
    channel = getattr(kernel, "shell_channel_thread", None)  # ipykernel >= 7 only
    if channel is None:
        return 0
    if _ipykernel_major() not in SUPPORTED_IPYKERNEL:
        return _give_up(f"ipykernel {metadata.version('ipykernel')} is not a tested version")
    try:
        return _drain(kernel, channel)
    except (AttributeError, KeyError, TypeError) as exc:  # internals moved
        return _give_up(f"ipykernel's internals changed ({type(exc).__name__}: {exc})")


def _give_up(why: str) -> int:
    _broken.append(why)
    warnings.warn(f"the Stop button takes effect only after the cell ends: {why}. Use "
                  "Kernel > Interrupt to stop training now (it keeps a checkpoint).", stacklevel=3)
    return 0


def _drain(kernel, channel) -> int:
    """Read every waiting shell message; handle the comm ones now, queue the others."""
    try:
        loop = asyncio.get_running_loop()  # the kernel's loop: we run inside its cell task
        subshell_id = channel.manager.subshell_id_from_thread_id(threading.get_ident())
    except RuntimeError:  # no running loop, or not a shell thread
        return 0
    import zmq

    sock = channel.manager.get_shell_channel_to_subshell_pair(subshell_id).to_socket
    session = kernel.session
    cell_parent, cell_ident = kernel.get_parent("shell"), kernel._parent_ident["shell"]
    handled = 0
    while True:  # drain until EAGAIN, so the loop's edge-triggered stream sees new arrivals
        try:
            frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return handled
        msg_type = None
        if len(frames) > 1:  # a one-frame b"stop aborting" marker is not a message
            idents, rest = session.feed_identities(frames, copy=False)
            msg_type = session.deserialize(rest, content=False, copy=False)["header"]["msg_type"]
        if msg_type not in _COMM_MSG_TYPES:
            coro = kernel.shell_main(subshell_id, frames)
            loop.create_task(_task_in_task(coro, contextvars.copy_context()))
            continue
        msg = session.deserialize(rest, content=True, copy=False)
        kernel.set_parent(idents, msg, channel="shell")
        try:
            kernel.shell_handlers[msg_type](None, idents, msg)  # the comm manager; logs errors
        finally:
            kernel.set_parent(cell_ident, cell_parent, channel="shell")
        handled += 1


async def _task_in_task(coro, context: contextvars.Context):
    """Run coro in a task started by a task, the way ipykernel runs each message it reads.

    A message ipykernel read before this cell waits as a task that has yet to start its
    inner task. Giving ours the same two steps keeps them behind it in the shell lock's queue,
    so Run All's queued cells still run in order (one step fewer let them overtake it).
    """
    return await asyncio.create_task(coro, context=context)
