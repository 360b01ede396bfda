"""Shared test set-up: nothing a test runs may write into the user's home folder; the suite
runs on several cores with pytest-xdist (`-n auto --dist loadscope`, see pyproject.toml).

Under xdist each worker is a pytest session of its own, and `loadscope` hands out work units
that each run whole in one worker, to whichever worker is free. A unit is a test module, so a
module-scoped fixture (a JupyterLab server, a Dask cluster, a trained model) is set up once;
tests/test_notebooks.py is split into one unit per notebook (`xdist_scope`). The long units
start first (LONGEST, measured), then those with browser tests, then those with other slow
tests (in collection order), then the rest, so the short ones fill in at the end. `-n 0` runs
all in one process, in that order.
"""

import math
import os
from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _cache_in_temp(tmp_path_factory):
    """Point gentools' cache (the digits classifier), IPython's folder and Jupyter's runtime
    files at temp folders, kernels included.

    The xdist workers share one (the run's temp folder): the classifier is trained once, and
    its file is written atomically, so a worker never reads half of it.
    """
    if os.environ.get("PYTEST_XDIST_WORKER"):
        cache = tmp_path_factory.getbasetemp().parent / "gentools-cache"  # beside popen-gwN
        cache.mkdir(exist_ok=True)
    else:
        cache = tmp_path_factory.mktemp("gentools-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("GENTOOLS_CACHE", str(cache))
    # the kernels' IPython history and connection files, which default to the home folder
    mp.setenv("IPYTHONDIR", str(tmp_path_factory.mktemp("ipython")))
    mp.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path_factory.mktemp("jupyter-runtime")))
    yield
    mp.undo()


@pytest.fixture(autouse=True, scope="session")
def _torch_on_one_thread():
    """One torch thread in the test process, the gentools default that the kernels use too:
    two threads next to a busy process (a kernel, another xdist worker) crawl."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- running on several cores (pytest-xdist) -------------------------------------------------

MAX_WORKERS = 4  # -n auto: one worker per usable core, at most this many
LONGEST = (  # the work units of a minute or more, started first, longest first (measured
    "tests/test_browser.py",  # with the whole suite on 2 cores: 400, 380, 100, 55 and 55 s)
    "tests/test_notebooks.py[compare]",
    "tests/test_resume.py",
    "tests/test_sweep.py",
    "tests/test_compare.py",
)
SPLIT_BY_PARAMETER = {  # modules whose tests form one xdist unit per parameter, not one in all
    "tests/test_notebooks.py",  # per notebook: its nbval test and reproducibility test share
}  #                              one nbval run; the module has no other shared fixture


def usable_cores() -> int:
    """The cores this process may use: its CPU affinity, within a cgroup v2 CPU quota."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cores = min(cores or 1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    return max(1, cores or 1)


def pytest_xdist_auto_num_workers(config):
    """`-n auto`: a worker per usable core, at most MAX_WORKERS ($PYTEST_XDIST_AUTO_NUM_WORKERS
    wins). One test may keep several processes busy (a JupyterLab server, its kernel and
    Chromium beside a 2-worker sweep; three runs side by side), and the browser tests, which
    share one server, take about as long as the rest together on three cores."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # xdist's own hook reads it
    return min(usable_cores(), MAX_WORKERS)


def xdist_scope(nodeid: str) -> str:
    """The work unit of a test: its module, or module[parameter] in SPLIT_BY_PARAMETER."""
    module, _, name = nodeid.partition("::")
    if module in SPLIT_BY_PARAMETER and name.endswith("]"):
        return f"{module}[{name[name.index('[') + 1 : -1]}]"
    return module


@pytest.hookimpl(tryfirst=True)  # before xdist's own choice of scheduler
def pytest_xdist_make_scheduler(config, log):
    """--dist loadscope, with work units from `xdist_scope` (pytest-xdist's `loadgroup` and
    its xdist_group marks rewrite node ids, which pytest 9.2 no longer takes)."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByScope(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_scope(nodeid)

    return ByScope(config, log)


def start_rank(item: pytest.Item) -> int:
    """0 for a browser test, 1 for another slow one, 2 for the rest."""
    if item.get_closest_marker("browser"):
        return 0
    return 1 if item.get_closest_marker("slow") else 2


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    """Order the work units (each kept whole, in collection order): LONGEST first, then by
    their smallest start_rank; xdist hands them out in this order (--no-loadscope-reorder)."""
    rank, members = {}, {}
    for item in items:
        scope = xdist_scope(item.nodeid)
        first = LONGEST.index(scope) - len(LONGEST) if scope in LONGEST else 2
        rank[scope] = min(rank.get(scope, 2), first, start_rank(item))
        members.setdefault(scope, []).append(item)
    ordered = sorted(members, key=lambda scope: rank[scope])  # stable: collection order within
    items[:] = [item for scope in ordered for item in members[scope]]
