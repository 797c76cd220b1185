"""Fixtures shared by the unit tests."""

# Importing pyinfra_cli runs gevent's monkey.patch_all(), as the pyinfra CLI does before anything else. Several test
# modules import it; done here first, it comes before any import of urllib3, whose `from ssl import SSLContext` taken
# before the patch makes every HTTPS connection fail with RecursionError (test_winrm_transport in a full run).
import pyinfra_cli  # noqa: F401, I001 - must stay the first import
import pytest

from tests.support.model_server import ModelServer


@pytest.fixture
def server(tmp_path):
    """A real HTTP server on loopback serving tmp_path/srv (models, with faults on demand)."""
    files = tmp_path / "srv"
    files.mkdir()
    with ModelServer(files) as srv:
        yield srv
