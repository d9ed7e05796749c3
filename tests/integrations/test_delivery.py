"""Webhooks deliver every event once, signed, to a real receiver; failures retry with backoff
and a receiver that keeps failing is disabled with a notification to the project's admins."""

import hashlib
import hmac
import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from webapp.clock import now as clock_now
from webapp.extensions import db
from webapp.models import (
    Environment,
    Notification,
    OutboxMessage,
    PipelineRun,
    Webhook,
    WebhookAttempt,
    WebhookDelivery,
)
from webapp.services.actors import SYSTEM, Actor
from webapp.services.change_requests import opening, workflow
from webapp.services.governance import webhook_delivery, webhook_events, webhooks
from webapp.services.platform import flags
from webapp.services.runs import controls, planning, sweep, transition


def verified(received, secret="s3cret") -> bool:
    expected = hmac.new(secret.encode(), received.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, received.headers["X-Flagsmith-Signature"])


def deliver_all() -> None:
    while webhook_delivery.deliver_due():
        pass
    db.session.expire_all()


@pytest.fixture
def pipeline(make_pipeline):
    return make_pipeline([
        {"env": "Development", "name": "Dev",
         "actions": [{"type": "TOGGLE_FEATURE", "enabled": True}]},
        {"env": "Staging", "name": "Soak", "trigger": "WAIT_FOR", "wait": 3600,
         "actions": [{"type": "TOGGLE_FEATURE", "enabled": True}]},
    ], name="Release")


def test_every_event_type_arrives_once_and_signed(clock, make, project, editor, admin, envs,
                                                  pipeline, receiver, hook):
    me = Actor.for_user(editor)
    reviewer = make.user(project=project, role="editor", email="reviewer@example.com")
    a, b, c, d = (make.feature(project, name) for name in ("alpha", "beta", "gamma", "delta"))
    seg = make.segment(project, "Pros")

    # A flag through the whole pipeline: added, entered, completed, held, launched, rolled back.
    controls.add_flag(project, pipeline.id, a.id, me)
    sweep.drain()
    run_a = db.session.scalar(select(PipelineRun).where(PipelineRun.feature_id == a.id))
    controls.pause(project, run_a.id, me)
    controls.resume(project, run_a.id, me)
    clock.shift(3600)
    sweep.drain()
    controls.rollback(project, run_a.id, me)
    # Removed; halted (the engine gives up after its attempts).
    controls.add_flag(project, pipeline.id, b.id, me)
    controls.remove(project, db.session.scalar(
        select(PipelineRun.id).where(PipelineRun.feature_id == b.id)), me)
    controls.add_flag(project, pipeline.id, c.id, me)
    run_c = db.session.scalar(select(PipelineRun).where(PipelineRun.feature_id == c.id))
    for _ in range(planning.MAX_ATTEMPTS):
        db.session.refresh(run_c)
        transition.record_failure(run_c.id, run_c.version, "boom", now=clock_now())
    # By hand: a state, an override set and removed; then change requests in Production.
    flags.set_state(d, envs["Development"].id, me, enabled=True)
    flags.save_override(d, envs["Development"].id, seg.id, me, enabled=True)
    flags.remove_override(d, envs["Development"].id, seg.id, me)
    db.session.execute(update(Environment).where(Environment.id == envs["Production"].id)
                       .values(minimum_change_request_approvals=1))
    db.session.commit()
    approved = opening.set_state(d, envs["Production"].id, me, enabled=True)
    workflow.approve(project.id, approved.id, Actor.for_user(reviewer))
    workflow.commit(project.id, approved.id, me)
    refused = opening.set_state(d, envs["Production"].id, me, enabled=False)
    workflow.reject(project.id, refused.id, Actor.for_user(reviewer))

    deliver_all()

    got = receiver.received
    assert all(verified(r) for r in got)
    keys = [r.headers["X-Railyard-Delivery"] for r in got]
    assert len(keys) == len(set(keys)), "an event arrived twice"
    types = {r.headers["X-Railyard-Event"] for r in got}
    assert types == set(webhook_events.EVENTS) | {"FLAG_DELETED"}
    assert {r.json()["event_type"] for r in got} == types
    # Once per event: the pipeline events of flag alpha, each exactly once.
    alpha = [r.json() for r in got if r.json().get("feature", {}).get("name") == "alpha"]
    assert sorted(e["event_type"] for e in alpha) == sorted([
        "pipeline.flag_added", "pipeline.stage_entered", "pipeline.stage_completed",
        "pipeline.stage_entered", "pipeline.flag_held", "pipeline.stage_completed",
        "pipeline.flag_launched", "pipeline.flag_rolled_back"])
    completed = [e for e in alpha if e["event_type"] == "pipeline.stage_completed"]
    assert [e["stage"]["name"] for e in completed] == ["Dev", "Soak"]
    assert completed[0]["links"]["board"] == (
        f"https://railyard.example/projects/{project.id}/pipelines/{pipeline.id}/board")
    assert completed[0]["actor"] == {"type": "pipeline", "label": "Release pipeline Release"}
    # Change requests carry the request, with a link to it.
    opened = [r.json() for r in receiver.of_type("change_request.opened")]
    assert [o["change_request"]["id"] for o in opened] == [approved.id, refused.id]
    assert opened[0]["links"]["change_request"].endswith(
        f"/projects/{project.id}/change-requests/{approved.id}")
    # FLAG_UPDATED for every change of a state in an environment, whoever made it.
    updates = [r.json()["data"] for r in receiver.of_type("FLAG_UPDATED")]
    by = {(u["new_state"]["feature"]["name"], u["new_state"]["environment"]["name"],
           u["changed_by"]) for u in updates}
    assert ("alpha", "Development", "Release pipeline Release") in by
    assert ("alpha", "Staging", "Release pipeline Release") in by
    assert ("alpha", "Staging", "editor@example.com") in by  # the rollback
    assert ("delta", "Development", "editor@example.com") in by
    assert ("delta", "Production", "editor@example.com") in by  # the committed request
    deleted = [r.json()["data"] for r in receiver.of_type("FLAG_DELETED")]
    assert deleted[0]["new_state"] is None
    assert deleted[0]["previous_state"]["feature_segment"]["segment"] == {"id": seg.id,
                                                                          "name": "Pros"}
    # Every delivery is recorded as delivered, with its one attempt.
    statuses = dict(db.session.execute(select(WebhookDelivery.status, func.count())
                                       .group_by(WebhookDelivery.status)).all())
    assert statuses == {"delivered": len(got)}
    assert db.session.scalar(select(func.count()).select_from(WebhookAttempt)) == len(got)


def test_only_the_events_a_webhook_wants_are_written_and_sent(clock, project, editor, envs,
                                                              receiver, make):
    webhooks.create_webhook(project, SYSTEM, url=receiver.url, events=["change_request.opened"])
    flag = make.feature(project, "quiet")
    flags.set_state(flag, envs["Development"].id, Actor.for_user(editor), enabled=True)
    assert db.session.scalar(select(func.count()).select_from(OutboxMessage)
                             .where(OutboxMessage.kind == "event")) == 0
    deliver_all()
    assert receiver.received == []


def test_no_receivers_means_no_outbox_rows(clock, project, editor, envs, make):
    flag = make.feature(project, "lonely")
    flags.set_state(flag, envs["Development"].id, Actor.for_user(editor), enabled=True)
    assert db.session.scalar(select(func.count()).select_from(OutboxMessage)) == 0


def test_a_receiver_outage_is_retried_with_backoff(clock, project, editor, envs, receiver,
                                                   hook, make):
    receiver.answers.extend([500, 503])
    flag = make.feature(project, "retry_me")
    flags.set_state(flag, envs["Development"].id, Actor.for_user(editor), enabled=True)

    deliver_all()
    delivery = db.session.scalar(select(WebhookDelivery))
    assert (delivery.status, delivery.attempts, len(receiver.received)) == ("pending", 1, 1)
    assert delivery.next_attempt_at == clock_now() + timedelta(seconds=30)
    clock.shift(29)
    deliver_all()
    assert len(receiver.received) == 1  # not due yet
    clock.shift(1)
    deliver_all()
    assert len(receiver.received) == 2
    assert db.session.get(WebhookDelivery, delivery.id).next_attempt_at == \
        clock_now() + timedelta(seconds=60)
    clock.shift(60)
    deliver_all()
    assert len(receiver.received) == 3
    delivery = db.session.get(WebhookDelivery, delivery.id)
    assert (delivery.status, delivery.attempts) == ("delivered", 3)
    attempts = db.session.scalars(select(WebhookAttempt).order_by(WebhookAttempt.id)).all()
    assert [(a.status_code, a.outcome) for a in attempts] == [
        (500, "retry"), (503, "retry"), (200, "delivered")]
    assert attempts[0].response_excerpt == "receiver is down"
    # Same bytes, same signature, same delivery id on every try.
    assert len({r.body for r in receiver.received}) == 1
    assert len({r.headers["X-Railyard-Delivery"] for r in receiver.received}) == 1


def test_a_client_error_is_not_retried(clock, project, editor, envs, receiver, hook, make):
    receiver.answers.append(410)
    flag = make.feature(project, "gone")
    flags.set_state(flag, envs["Development"].id, Actor.for_user(editor), enabled=True)
    deliver_all()
    clock.shift(7200)
    deliver_all()
    delivery = db.session.scalar(select(WebhookDelivery))
    assert (delivery.status, delivery.attempts, len(receiver.received)) == ("failed", 1, 1)


def test_a_receiver_failing_for_the_whole_span_is_disabled_and_admins_told(
        clock, project, editor, admin, envs, receiver, hook, make):
    receiver.server.shutdown()
    receiver.server.server_close()  # connection refused from now on
    flag = make.feature(project, "down")
    flags.set_state(flag, envs["Development"].id, Actor.for_user(editor), enabled=True)
    for _ in range(40):
        deliver_all()
        clock.shift(3600)
    delivery = db.session.scalar(select(WebhookDelivery))
    assert delivery.status == "gave_up"
    span = delivery.last_attempt_at - delivery.first_attempt_at
    assert timedelta(hours=5) < span <= timedelta(hours=6)
    hook = db.session.get(Webhook, hook.id)
    assert not hook.enabled and "failed for 6 h" in hook.disabled_reason
    notes = db.session.scalars(select(Notification).where(
        Notification.kind == "webhook_disabled")).all()
    assert [n.user_id for n in notes] == [admin.id]
    assert f"/settings/webhooks/{hook.id}/deliveries" in notes[0].link
    # Nothing more is tried while it is disabled.
    tried = db.session.scalar(select(func.count()).select_from(WebhookAttempt))
    flags.set_state(flag, envs["Development"].id, Actor.for_user(editor), enabled=False)
    deliver_all()
    assert db.session.scalar(select(func.count()).select_from(WebhookAttempt)) == tried


def test_an_interrupted_attempt_is_sent_again_after_its_lease(clock, project, editor, envs,
                                                               receiver, hook, make):
    flag = make.feature(project, "killed")
    flags.set_state(flag, envs["Development"].id, Actor.for_user(editor), enabled=True)
    webhook_delivery.expand()
    delivery = db.session.scalar(select(WebhookDelivery))
    # A worker claimed it and died before recording the answer.
    db.session.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery.id).values(
        attempts=1, next_attempt_at=clock_now() + timedelta(seconds=15),
        last_attempt_at=clock_now()))
    db.session.add(WebhookAttempt(delivery_id=delivery.id, outcome="sending"))
    db.session.commit()
    deliver_all()
    assert receiver.received == []  # the lease holds
    clock.shift(16)
    deliver_all()
    attempts = db.session.scalars(select(WebhookAttempt).order_by(WebhookAttempt.id)).all()
    assert [a.outcome for a in attempts] == ["interrupted", "delivered"]
    assert len(receiver.received) == 1


def test_expansion_happens_once_however_often_it_runs(clock, project, editor, envs, receiver,
                                                      hook, make):
    flag = make.feature(project, "once")
    flags.set_state(flag, envs["Development"].id, Actor.for_user(editor), enabled=True)
    assert webhook_delivery.expand() == 1
    assert webhook_delivery.expand() == 0
    message = db.session.scalar(select(OutboxMessage))
    message.sent_at = None  # as if a second expander read it before the first committed
    db.session.commit()
    assert webhook_delivery.expand() == 0  # the unique (event, receiver) key holds
    assert db.session.scalar(select(func.count()).select_from(WebhookDelivery)) == 1


def test_slack_gets_readable_text_for_what_needs_eyes(clock, make, project, editor, envs,
                                                      pipeline, receiver):
    webhooks.set_slack(project, receiver.url, SYSTEM)
    flag = make.feature(project, "shiny")
    controls.add_flag(project, pipeline.id, flag.id, Actor.for_user(editor))
    sweep.drain()
    deliver_all()
    assert [r.headers["X-Railyard-Event"] for r in receiver.received] == [
        "pipeline.stage_completed"]
    text = receiver.received[0].json()["text"]
    assert text == (":white_check_mark: shiny completed stage Dev (Development) of pipeline "
                    f"Release <https://railyard.example/projects/{project.id}/pipelines/"
                    f"{pipeline.id}/board|Open the board>")
    assert "X-Flagsmith-Signature" not in receiver.received[0].headers


def test_send_again_sends_a_delivered_event_once_more(clock, project, editor, envs, receiver,
                                                      hook, make):
    flag = make.feature(project, "again")
    flags.set_state(flag, envs["Development"].id, Actor.for_user(editor), enabled=True)
    deliver_all()
    delivery = db.session.scalar(select(WebhookDelivery))
    webhooks.send_again(hook, delivery.id, SYSTEM)
    deliver_all()
    assert len(receiver.received) == 2
    assert receiver.received[0].body == receiver.received[1].body
    assert db.session.get(WebhookDelivery, delivery.id).status == "delivered"


def test_flag_updated_body_is_flagsmiths_shape(clock, project, editor, envs, receiver, hook,
                                               make):
    flag = make.feature(project, "banner", value_type="string", default_value="hi")
    flags.set_state(flag, envs["Staging"].id, Actor.for_user(editor), enabled=True,
                    raw_value="hello")
    deliver_all()
    (received,) = receiver.received
    body = received.json()
    assert set(body) == {"data", "event_type"}
    assert received.body == json.dumps(body, sort_keys=True).encode()
    data = body["data"]
    assert set(data) == {"changed_by", "new_state", "previous_state", "timestamp"}
    state = data["new_state"]
    assert set(state) == {"enabled", "environment", "feature", "feature_segment",
                          "feature_state_value", "identity", "identity_identifier"}
    assert state["environment"] == {"id": envs["Staging"].id, "name": "Staging"}
    assert state["feature"]["name"] == "banner" and state["feature"]["type"] == "CONFIG"
    assert state["feature"]["project"] == {"id": project.id, "name": "Acme"}
    assert (state["enabled"], state["feature_state_value"]) == (True, "hello")
    assert data["previous_state"]["enabled"] is False
    assert data["timestamp"] == "2030-01-06T09:00:00Z"


def test_a_webhook_for_stage_entries_hears_the_first_stage_too(clock, make, project, editor,
                                                               envs, pipeline, receiver):
    webhooks.create_webhook(project, SYSTEM, url=receiver.url, events=["pipeline.stage_entered"])
    flag = make.feature(project, "first")
    controls.add_flag(project, pipeline.id, flag.id, Actor.for_user(editor))
    sweep.drain()
    deliver_all()
    entered = [r.json()["stage"]["name"] for r in receiver.received]
    assert entered == ["Dev", "Soak"]
    assert {r.headers["X-Railyard-Event"] for r in receiver.received} == {
        "pipeline.stage_entered"}
