"""Flags in release pipelines through the admin API: added (and the engine set going), shown in
their stage, paused, resumed, advanced, removed and rolled back."""

from datetime import timedelta

import pytest
from sqlalchemy import select

from webapp import redis_conn
from webapp.clock import now
from webapp.extensions import db
from webapp.models import AuditEntry, FeatureState, PipelineRun

from .release_pipeline_support import (
    call,
    create,
    pipelines_path,
    published,
    stage,
    token_for,
    two_stages,
)


def enabled(feature, env):
    return db.session.scalar(select(FeatureState.enabled).where(
        FeatureState.feature_id == feature.id, FeatureState.environment_id == env.id))


def flag_call(client, project, pipeline, what, feature, key=None, token=None):
    return call(client, "POST", pipelines_path(project, pipeline["id"], f"{what}-feature/"),
                key=key, token=token, json={"feature_id": feature.id})


def stages_of(client, project, pipeline, key):
    detail = call(client, "GET", pipelines_path(project, pipeline["id"]), key=key).get_json()
    return detail, {s["name"]: s for s in detail["stages"]}


@pytest.fixture
def rollout(client, project, platform, org_key, clock):
    """Development at once, then Production a day later; published."""
    return published(client, project, org_key, two_stages(platform))


def test_add_feature_starts_the_engine_and_the_flag_shows_in_its_stage(
        client, project, platform, org_key, rollout, work):
    start = now()
    added = flag_call(client, project, rollout, "add", platform.checkout, key=org_key)
    assert added.status_code == 200, added.get_json()
    run = added.get_json()
    assert (run["id"], run["name"], run["status"]) == (platform.checkout.id, "new_checkout",
                                                       "waiting")
    assert run["stage"] == rollout["stages"][0]["id"]
    assert run["next_transition_at"] == start.isoformat() and run["ended_at"] is None
    assert redis_conn.queue().job_ids == [f"advance-{run['run_id']}-v1"]

    detail, stages = stages_of(client, project, rollout, org_key)
    assert detail["flags_in_flight"] == 1
    assert [(f["id"], f["status"]) for f in stages["Dev"]["features"]] == [
        (platform.checkout.id, "waiting")]
    assert stages["Dev"]["features_count"] == 1 and stages["Prod"]["features"] == []

    work()  # the enqueued advance applies Dev and moves the flag on

    assert enabled(platform.checkout, platform.development) is True
    assert enabled(platform.checkout, platform.production) is False
    _detail, stages = stages_of(client, project, rollout, org_key)
    assert stages["Dev"]["features"] == []
    [waiting] = stages["Prod"]["features"]
    assert waiting["status"] == "waiting" and waiting["entered_at"] == start.isoformat()
    assert waiting["next_transition_at"] == (start + timedelta(days=1)).isoformat()


def test_pause_resume_advance_then_roll_back(client, project, platform, org_key, rollout,
                                             clock, work):
    flag = platform.checkout
    run_id = flag_call(client, project, rollout, "add", flag, key=org_key).get_json()["run_id"]
    work()
    clock.shift(3600)

    paused = flag_call(client, project, rollout, "pause", flag, key=org_key)
    assert paused.status_code == 200
    assert (paused.get_json()["status"], paused.get_json()["next_transition_at"]) == (
        "paused", None)
    again = flag_call(client, project, rollout, "pause", flag, key=org_key)
    assert again.status_code == 409 and "paused" in again.get_json()["detail"]

    clock.shift(7200)  # paused: the wait does not run down
    resumed = flag_call(client, project, rollout, "resume", flag, key=org_key).get_json()
    assert resumed["status"] == "waiting"
    assert resumed["next_transition_at"] == (now() + timedelta(hours=23)).isoformat()

    advanced = flag_call(client, project, rollout, "advance", flag, key=org_key).get_json()
    assert advanced["next_transition_at"] == now().isoformat()
    version = db.session.get(PipelineRun, run_id).version
    assert f"advance-{run_id}-v{version}" in redis_conn.queue().job_ids
    work()
    assert db.session.get(PipelineRun, run_id).status == "launched"
    assert enabled(flag, platform.production) is True

    rolled = flag_call(client, project, rollout, "rollback", flag, key=org_key)
    assert rolled.status_code == 200, rolled.get_json()
    assert rolled.get_json()["status"] == "rolled_back"
    assert rolled.get_json()["end_reason"] == "rolled_back"
    assert enabled(flag, platform.development) is False
    assert enabled(flag, platform.production) is False


def test_remove_ends_the_run_and_later_controls_are_409(client, project, platform, org_key,
                                                        rollout):
    flag_call(client, project, rollout, "add", platform.banner, key=org_key)
    removed = flag_call(client, project, rollout, "remove", platform.banner, key=org_key)
    assert removed.status_code == 200 and removed.get_json()["status"] == "removed"
    for what in ("pause", "resume", "advance", "remove", "rollback"):
        late = flag_call(client, project, rollout, what, platform.banner, key=org_key)
        assert late.status_code == 409, what
        assert "already ended" in late.get_json()["detail"]
    _detail, stages = stages_of(client, project, rollout, org_key)
    assert stages["Dev"]["features"] == []


@pytest.mark.parametrize("what", ["remove", "pause", "resume", "advance", "rollback"])
def test_controls_on_a_flag_never_in_the_pipeline_are_404(client, make, project, platform,
                                                          org_key, rollout, what):
    other = create(client, project, org_key, two_stages(platform, name="Other"))
    flag_call(client, project, rollout, "add", platform.checkout, key=org_key)
    stranger = make.feature(make.project("Elsewhere"), "theirs")
    for pipeline, feature in ((rollout, platform.limit), (rollout, stranger),
                              (other, platform.checkout)):
        response = flag_call(client, project, pipeline, what, feature, key=org_key)
        assert response.status_code == 404, (pipeline["name"], feature.name)
        assert response.get_json()["detail"] == "This flag is not in this pipeline."


def test_add_feature_refusals(client, make, project, platform, org_key, rollout):
    draft = create(client, project, org_key, two_stages(platform, name="Draft"))
    refused = flag_call(client, project, draft, "add", platform.checkout, key=org_key)
    assert refused.status_code == 409 and "draft" in refused.get_json()["detail"]
    flag_call(client, project, rollout, "add", platform.checkout, key=org_key)
    twice = flag_call(client, project, rollout, "add", platform.checkout, key=org_key)
    assert twice.status_code == 409 and "Already in a release pipeline" in twice.get_json()[
        "detail"]
    foreign = flag_call(client, project, rollout, "add",
                        make.feature(make.project("Elsewhere")), key=org_key)
    assert foreign.status_code == 422 and foreign.get_json()["feature_id"]
    path = pipelines_path(project, rollout["id"], "add-feature/")
    for body in ({}, {"feature_id": "checkout"}, {"feature_id": 0}):
        response = call(client, "POST", path, key=org_key, json=body)
        assert response.status_code == 422 and response.get_json()["feature_id"], body
    valued = published(client, project, org_key, {"name": "Numbers", "stages": [stage(
        platform.development, actions=[{"action_type": "UPDATE_FEATURE_VALUE",
                                        "action_body": {"value": 5}}])]})
    misfit = flag_call(client, project, valued, "add", platform.banner, key=org_key)
    assert misfit.status_code == 422
    assert "takes text values" in misfit.get_json()["feature_id"][0]


def test_flags_in_flight_hold_the_pipeline(client, project, platform, org_key, rollout,
                                           work):
    flag_call(client, project, rollout, "add", platform.checkout, key=org_key)
    path = pipelines_path(project, rollout["id"])
    for method, where in (("DELETE", ""), ("POST", "unpublish-pipeline/")):
        refused = call(client, method, f"{path}{where}", key=org_key)
        assert refused.status_code == 409 and "in flight" in refused.get_json()["detail"]
    work()  # through Dev into Prod: both stages have history now
    flag_call(client, project, rollout, "remove", platform.checkout, key=org_key)
    assert call(client, "POST", f"{path}unpublish-pipeline/", key=org_key).status_code == 200
    history = call(client, "PUT", path, key=org_key, json={"name": "Shorter", "stages": [
        stage(platform.development, "Dev")]})
    assert history.status_code == 409 and "release history" in history.get_json()["detail"]
    kept = call(client, "PUT", path, key=org_key, json={"name": "Same stages", "stages": [
        stage(platform.development, "Dev"), stage(platform.production, "Prod", wait="2:00:00")]})
    assert kept.status_code == 200
    assert [s["id"] for s in kept.get_json()["stages"]] == [s["id"] for s in rollout["stages"]]


def test_flag_changes_are_audited_with_the_key_or_user(client, project, platform, org_key,
                                                       editor, rollout):
    flag_call(client, project, rollout, "add", platform.checkout, token=token_for(editor))
    flag_call(client, project, rollout, "pause", platform.checkout, key=org_key)
    rows = db.session.execute(
        select(AuditEntry.event_type, AuditEntry.actor_type, AuditEntry.actor_user_id,
               AuditEntry.actor_label)
        .where(AuditEntry.feature_id == platform.checkout.id,
               AuditEntry.event_type.like("RELEASE_PIPELINE_FEATURE_%"))
        .order_by(AuditEntry.id)).all()
    assert [tuple(row) for row in rows] == [
        ("RELEASE_PIPELINE_FEATURE_ADDED", "api_key", editor.id,
         rows[0].actor_label),
        ("RELEASE_PIPELINE_FEATURE_PAUSED", "api_key", None, "API key CI"),
    ]
    assert rows[0].actor_label.startswith("editor@example.com (token ")


@pytest.mark.parametrize("wait_for, seconds, shown", [
    ("0:00:01", 1, "wait 1 second"), ("0:01:30", 90, "wait 1 minute 30 seconds")])
def test_a_wait_of_seconds_acts_on_time(client, make, project, platform, org_key, clock,
                                        work, login, wait_for, seconds, shown):
    pipeline = published(client, project, org_key, {"name": "Quick", "stages": [
        stage(platform.development, "Dev"),
        stage(platform.production, "Prod", wait=wait_for)]})
    start = now()
    flag_call(client, project, pipeline, "add", platform.checkout, key=org_key)
    work()
    _detail, stages = stages_of(client, project, pipeline, org_key)
    [waiting] = stages["Prod"]["features"]
    assert waiting["next_transition_at"] == (start + timedelta(seconds=seconds)).isoformat()
    clock.shift(seconds - 1)
    work()
    assert enabled(platform.checkout, platform.production) is False
    clock.shift(1)
    work()
    assert enabled(platform.checkout, platform.production) is True
    # The builder shows the wait as it is, not rounded to minutes.
    editor = make.user(project=project, role="editor")
    page = login(client, editor).get(f"/projects/{project.id}/pipelines/{pipeline['id']}")
    assert page.status_code == 200 and shown in page.get_data(as_text=True)
