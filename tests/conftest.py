"""Shared test set-up: nothing a test runs may write into the user's home folder; the suite
runs on several cores with pytest-xdist (`-n auto --dist loadscope`, see pyproject.toml).

Under xdist each worker is a pytest session of its own, and `--dist loadscope` hands out work
units that each run whole in one worker, to whichever worker is free: a test class, or else a
test module. So a module-scoped fixture (a JupyterLab server, a Dask cluster, a trained model)
is set up once, and tests/test_notebooks.py gives each notebook a class of its own. The units
marked `long` (a minute or more) start first, then those with slow tests, then the rest, each
group in collection order (`--no-loadscope-reorder` keeps it), so the short units fill in at
the end. `-n 0` runs all in one process, in that order. (`--dist loadgroup` with
`xdist_group` marks would say the same, but pytest-xdist 3.8 tags node ids through an attribute
that pytest 9.2 no longer reads, so it spreads a group over all workers.)
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


def work_unit(item: pytest.Item) -> str:
    """What `--dist loadscope` runs whole in one worker: the test's class, or else its module."""
    module = item.nodeid.split("::")[0]
    return f"{module}::{item.cls.__name__}" if item.cls else module


def start_rank(item: pytest.Item) -> int:
    """0 for a test marked long, 1 for another slow one, 2 for the rest."""
    if item.get_closest_marker("long"):
        return 0
    return 1 if item.get_closest_marker("slow") else 2


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    """Order the work units (each kept whole, in collection order) by their smallest
    start_rank; xdist hands them out in this order (--no-loadscope-reorder)."""
    rank, members = {}, {}
    for item in items:
        unit = work_unit(item)
        rank[unit] = min(rank.get(unit, 2), start_rank(item))
        members.setdefault(unit, []).append(item)
    ordered = sorted(members, key=lambda unit: rank[unit])  # stable: collection order within
    items[:] = [item for unit in ordered for item in members[unit]]
