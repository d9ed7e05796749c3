"""With mail configured, reviewers also get an email (through the outbox) when a request waits."""

import pytest
from sqlalchemy import select

from webapp.extensions import db
from webapp.models import OutboxMessage


@pytest.fixture
def app_config(app_config):
    return {**app_config, "MAIL_SERVER": "smtp.invalid"}


def test_reviewers_get_an_email_when_a_request_waits(to_production, make, project, reviewer):
    flag = make.feature(project, "checkout")
    request = to_production(flag)
    [message] = db.session.scalars(select(OutboxMessage).where(
        OutboxMessage.idempotency_key.like("email:change-request:%"))).all()
    assert message.payload["to"] == "reviewer@example.com"
    assert f"Change request #{request.id} waits for your review" in message.payload["subject"]
    assert f"/projects/{project.id}/change-requests/{request.id}" in message.payload["body"]
