"""Shared test set-up: nothing a test runs may write into the user's home folder."""

import pytest


@pytest.fixture(autouse=True, scope="session")
def _cache_in_temp(tmp_path_factory):
    """Point gentools' cache (the digits classifier) at a temp folder, kernels included."""
    mp = pytest.MonkeyPatch()
    mp.setenv("GENTOOLS_CACHE", str(tmp_path_factory.mktemp("gentools-cache")))
    yield
    mp.undo()
