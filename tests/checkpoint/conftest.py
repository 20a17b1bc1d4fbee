import pytest


@pytest.fixture(autouse=True)
def _isolated_sha_cache(tmp_path, monkeypatch):
    """Keep the sha256 memo of each test in its own folder."""
    monkeypatch.setenv("BIOMEDCLIP_CACHE", str(tmp_path / "biomedclip-cache"))
