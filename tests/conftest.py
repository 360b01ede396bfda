"""Shared test set-up: nothing a test runs may write into the user's home folder."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _cache_in_temp(tmp_path_factory):
    """Point gentools' cache (the digits classifier) at a temp folder, kernels included."""
    mp = pytest.MonkeyPatch()
    mp.setenv("GENTOOLS_CACHE", str(tmp_path_factory.mktemp("gentools-cache")))
    yield
    mp.undo()


@pytest.fixture
def one_thread():
    """Tiny models run many times faster on one thread than on two next to a busy process."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
