import pytest


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Downscaled copies go to a per-test folder, never to the user's cache."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("COMPGS_CACHE_DIR", str(cache))
    return cache
