import sys
from pathlib import Path

import pytest

# addon.py and cache_models.py live at the repo root, as mitmdump -s expects.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.procs import Certs, Fake  # noqa: E402  (after the path is set)


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    """A throwaway CA and server certificate for the fake provider (tests/e2e, tests/agents)."""
    return Certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="session")
def fake(certs):
    """The fake provider, one per test session; tests keep apart by their prompts."""
    fake = Fake(certs)
    yield fake
    fake.stop()
