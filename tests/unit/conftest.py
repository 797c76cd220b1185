"""Fixtures shared by the unit tests."""

import pytest

from tests.support.model_server import ModelServer


@pytest.fixture
def server(tmp_path):
    """A real HTTP server on loopback serving tmp_path/srv (models, with faults on demand)."""
    files = tmp_path / "srv"
    files.mkdir()
    with ModelServer(files) as srv:
        yield srv
