"""The kernel manager that `jobs` hands papermill, which leans on jupyter_client's traits.

`ipc_kernel_manager` makes a manager that talks to its kernel over IPC sockets in a private
folder instead of TCP ports (ipykernel 7 warns on every TCP start) and registers itself so a
signal can interrupt its kernel. It sets jupyter_client's `transport` and `ip` traits, checked
against jupyter_client 7 and 8; on any other version it is the plain manager, over TCP.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

SUPPORTED_JUPYTER_CLIENT = (7, 8)  # the major versions whose transport traits we set


def ipc_kernel_manager(managers: list):
    """A kernel manager class whose instances use IPC sockets in a private temporary folder
    (``.folder``, for the caller to remove) and append themselves to ``managers``."""
    import jupyter_client
    from jupyter_client.manager import AsyncKernelManager

    ipc = int(jupyter_client.__version__.split(".")[0]) in SUPPORTED_JUPYTER_CLIENT

    class IpcKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.folder = None
            if ipc:
                self.folder = tempfile.mkdtemp(prefix="gentools-kernel-")
                self.transport, self.ip = "ipc", str(Path(self.folder) / "kernel")
            managers.append(self)

    return IpcKernelManager
