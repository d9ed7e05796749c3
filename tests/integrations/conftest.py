"""Webhook tests: a real receiver on a loopback port (so private addresses are allowed), the
engine's pipeline fixtures, and a frozen clock."""

import pytest

from tests.engine.conftest import START, clock, envs, make_pipeline, work  # noqa: F401
from tests.support import receiver as receivers
from webapp.services.actors import SYSTEM
from webapp.services.governance import webhooks


@pytest.fixture
def app_config(app_config):
    return {**app_config, "WEBHOOKS_ALLOW_PRIVATE": True, "BASE_URL": "https://railyard.example"}


@pytest.fixture
def receiver():
    server = receivers.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def hook(project, receiver):
    """A webhook of the project that wants every event, with a known secret."""
    from webapp.services.governance.webhook_events import EVENTS

    return webhooks.create_webhook(project, SYSTEM, url=receiver.url, events=list(EVENTS),
                                   secret="s3cret")
