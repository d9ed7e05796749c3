"""Chaos runs use real processes against a file database and their OWN embedded Redis (they
FLUSHALL it), never the test run's shared one."""

import pytest

from webapp.redis_conn import redis_url_of, start_embedded


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
