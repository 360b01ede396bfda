"""An isolated JupyterLab server and the page helpers the browser tests drive it with.

`Lab(folder)` keeps everything the server, its kernels and Chromium write inside `folder`:
HOME, the Jupyter config, data and runtime folders, IPython's folder, the workspaces and
the user settings. It listens on 127.0.0.1 on a free port with a random token.
`Lab.stop()` asks the server to shut down (which stops its kernels), then ends its
process group; `descendants(pid)` lets the tests check that nothing is left behind.

The page helpers read the DOM that JupyterLab 4 and ipywidgets 8 render: code cells are
`.jp-CodeCell`, prompts `.jp-InputPrompt`, widgets carry `widget-*` classes, plotly
figures are `.js-plotly-plot` elements whose `data` holds the drawn traces.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SETTINGS = {  # user settings: no news popup; the notebook's kernel starts without asking;
    #          every cell stays in the DOM (no windowing)
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {
        "autoStartDefaultKernel": True, "windowingMode": "none"},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid: int) -> list[int]:
    """Live processes below `pid` (children, grandchildren, ...), read from /proc."""
    parent = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()  # state, ppid, ...
            if fields[0] != "Z":
                parent[int(entry.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        found += kids
        frontier += kids
    return found


def alive(pids) -> list[int]:
    """The pids in `pids` that still run (zombies count as gone)."""
    left = []
    for p in pids:
        try:
            state = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            left.append(p)
    return left


def wait_gone(pids, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := alive(pids)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


class PortTaken(RuntimeError):
    """The server stopped at start because another process listens on its port."""


class Lab:
    """One JupyterLab server whose every file lives under `folder`; `root` is what it serves."""

    def __init__(self, folder: Path, env: dict[str, str] | None = None):
        self.folder = folder
        self.root = folder / "root"
        self.home = folder / "home"
        self.token = secrets.token_hex(16)
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.pids: list[int] = []  # the server and every process it started, seen while running
        dirs = {name: folder / "jupyter" / name for name in
                ("config", "data", "runtime", "ipython", "workspaces", "settings")}
        for d in [self.root, self.home, *dirs.values()]:
            d.mkdir(parents=True, exist_ok=True)
        self.dirs = dirs
        for name, value in SETTINGS.items():
            path = dirs["settings"] / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(value))
        self.env = {
            **os.environ, **(env or {}),
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "XDG_CACHE_HOME": str(self.home / ".cache"),
            "XDG_DATA_HOME": str(self.home / ".local" / "share"),
            "JUPYTER_CONFIG_DIR": str(dirs["config"]),
            "JUPYTER_DATA_DIR": str(dirs["data"]),
            "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]),
            "IPYTHONDIR": str(dirs["ipython"]),
        }

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, method: str, path: str, timeout: float = 10.0):
        req = urllib.request.Request(
            f"{self.url}{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def start(self, timeout: float = 90.0, tries: int = 3) -> None:
        """Start the server on a free port; again on another one if a process that started
        meanwhile (a kernel, a Dask worker of a parallel test) took that port first."""
        for attempt in range(1, tries + 1):
            try:
                return self._start(timeout)
            except PortTaken:
                if attempt == tries:
                    raise

    def _start(self, timeout: float) -> None:
        self.port = free_port()
        cmd = [
            sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
            f"--port={self.port}", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
            f"--LabApp.workspaces_dir={self.dirs['workspaces']}",
            f"--LabApp.user_settings_dir={self.dirs['settings']}",
        ]
        if os.geteuid() == 0:
            cmd.append("--allow-root")
        self.log = self.folder / "server.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                cmd, cwd=self.root, env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.pids = [self.proc.pid]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                error = PortTaken if "already in use" in self.tail() else RuntimeError
                raise error(f"JupyterLab exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                self.api("GET", "/api/status", timeout=2)
                return
            except (OSError, urllib.error.URLError):
                time.sleep(0.3)
        raise TimeoutError(f"JupyterLab did not answer in {timeout:.0f} s:\n{self.tail()}")

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def note_processes(self) -> None:
        """Remember the server's process tree (its kernels), to check later they are gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.pids = sorted(set(self.pids) | set(descendants(self.proc.pid)))

    def shutdown_kernel_of(self, path: str) -> None:
        """Stop the kernel of the session open on `path` (a notebook page that is done)."""
        self.note_processes()
        for session in self.api("GET", "/api/sessions"):
            if session["path"] == path:
                self.api("DELETE", f"/api/kernels/{session['kernel']['id']}", timeout=30)

    def stop(self) -> None:
        """POST /api/shutdown, then TERM and KILL to the server's process group if needed."""
        if self.proc is None:
            return
        self.note_processes()
        try:
            self.api("POST", "/api/shutdown", timeout=10)
        except (OSError, urllib.error.URLError):
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                continue
        self.proc.wait(timeout=10)
        for pid in alive(self.pids):  # a kernel in a session of its own, if any survived
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


# --- page helpers ---------------------------------------------------------------------

_RUN_STATE = """() => {
  const prompts = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')]
    .map(e => e.textContent.trim());
  const indicator = document.querySelector('.jp-Notebook-ExecutionIndicator');
  return {prompts, status: indicator ? indicator.dataset.status : null};
}"""

IMAGE_PIXELS = """imgs => imgs.map(img => {
  if (!img.complete) return null;  // still loading
  if (!img.naturalWidth) return '';  // empty: an Image widget with no value yet
  const c = document.createElement('canvas');
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  c.getContext('2d').drawImage(img, 0, 0);
  return c.toDataURL();
})"""

PLOT_DATA = """plots => plots.map(el => JSON.stringify((el.data || []).map(
  t => [t.type, t.x, t.y, t.z])))"""

PLOT_DRAWN = """plots => plots.map(el => ({
  traces: (el._fullData || []).length,
  points: (el._fullData || []).reduce(
    (n, t) => n + Math.max((t.x || []).length, (t.y || []).length, (t.z || []).length), 0),
  svg: el.querySelectorAll('.main-svg').length,
}))"""


def open_notebook(context, lab: Lab, path: str, timeout_ms: float):
    """A new page showing `path` in JupyterLab, its kernel idle."""
    page = context.new_page()
    page.set_default_timeout(timeout_ms)
    page.goto(f"{lab.url}/lab/tree/{path}?reset&token={lab.token}")
    page.wait_for_selector(".jp-Notebook .jp-Cell", state="attached")
    return page


def wait_kernel_idle(page, timeout_ms: float) -> None:
    """Wait until the notebook's kernel runs and is idle; fail on any dialog in the way."""
    page.wait_for_function(
        """() => document.querySelector('.jp-Dialog') ||
           (document.querySelector(".jp-Notebook-ExecutionIndicator[data-status='idle']") &&
            /\\| Idle/.test(document.getElementById('jp-main-statusbar')?.textContent))""",
        timeout=timeout_ms,
    )
    dialogs = page.locator(".jp-Dialog").all_inner_texts()
    assert not dialogs, f"a dialog is in the way: {dialogs}"


def run_all(page, timeout_s: float, during=None) -> list[str]:
    """Run -> Run All Cells; wait until no cell is queued or running and the kernel is idle.
    `during(page)`, if given, is called at every poll until it returns True (a click while
    the cells run, say).

    Returns the code cells' prompts ("[7]:" when executed, "[ ]:" when not).
    """
    stored = page.evaluate(_RUN_STATE)["prompts"]
    page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-item[data-command='runmenu:run-all']").click()
    clock = time.monotonic()
    settled = 0
    while time.monotonic() < clock + timeout_s:
        if during is not None and during(page):
            during = None
        state = page.evaluate(_RUN_STATE)
        prompts = state["prompts"]
        started = prompts != stored
        if not started and time.monotonic() > clock + 60:
            raise TimeoutError(f"Run All started no cell in 60 s: {prompts}")
        quiet = not any("*" in p for p in prompts) and state["status"] == "idle"
        settled = settled + 1 if started and quiet else 0
        if settled >= 3:  # idle in three polls in a row
            return prompts
        time.sleep(0.5)
    raise TimeoutError(f"Run All did not finish in {timeout_s:.0f} s: {prompts}")


def error_texts(page) -> list[str]:
    """Error and stderr outputs, and widget rendering errors, as the page shows them."""
    found = page.locator(
        ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
    ).all_inner_texts()
    body = page.locator("body").inner_text()
    for phrase in ("Error displaying widget", "model not found"):
        if phrase.lower() in body.lower():
            found.append(f"the page shows {phrase!r}")
    return found
