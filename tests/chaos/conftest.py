"""Chaos runs use real processes against a file database and their OWN embedded Redis (they
FLUSHALL it), never the test run's shared one. The processes are forked from a server that
imported the code once (tests/support/forkserver.py)."""

from pathlib import Path

import pytest

from tests.support.forkserver import ForkServer
from webapp.redis_conn import redis_url_of, start_embedded

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def fork_server():
    """Starts `flask --app wsgi worker` and `sweeper` processes: fork_server.spawn(kind, env)
    answers the pid of one in a session of its own; fork_server.kill(pid) SIGKILLs and reaps."""
    server = ForkServer(ROOT)
    yield server
    server.close()


@pytest.fixture
def private_redis(tmp_path):
    folder = tmp_path / "chaos-redis"
    folder.mkdir()
    server = start_embedded(folder)
    yield redis_url_of(server)
    server.shutdown()


@pytest.fixture
def app_config(app_config, private_redis):
    return {**app_config, "REDIS_URL": private_redis}
