"""The release-pipeline admin API: pipelines defined whole, read back, replaced while drafts,
published, unpublished, cloned, deleted, and audited with who did it."""

import pytest
from sqlalchemy import func, select

from webapp.extensions import db
from webapp.models import AuditEntry, PipelineStage, ReleasePipeline

from .release_pipeline_support import (
    call,
    create,
    pipelines_path,
    published,
    stage,
    toggle,
    token_for,
    two_stages,
)


def every_action(platform):
    """One stage per kind of action, the way a client would write them."""
    env, pro = platform.development, platform.pro.id
    return [
        {"action_type": "TOGGLE_FEATURE", "action_body": {"enabled": True}},
        {"action_type": "UPDATE_FEATURE_VALUE", "action_body": {"value": "42"}},
        {"action_type": "TOGGLE_FEATURE_FOR_SEGMENT",
         "action_body": {"enabled": False, "segment_id": pro}},
        {"action_type": "UPDATE_FEATURE_VALUE_FOR_SEGMENT",
         "action_body": {"value": 7, "segment_id": pro}},
        {"action_type": "PHASED_ROLLOUT",
         "action_body": {"enabled": True, "initial_percentage": 10, "increase_percentage": 30,
                         "increase_every": "1:30:00"}},
    ], env


def test_create_answers_the_pipeline_as_it_reads_back(client, project, platform, org_key):
    actions, env = every_action(platform)
    body = {"name": "Everything", "description": "All kinds", "stages": [
        stage(env, "Dev", actions=actions),
        stage(platform.production, "Prod", wait="2 00:00:00"),
    ]}
    created = create(client, project, org_key, body)
    assert created["status"] == "draft" and created["published_at"] is None
    assert created["version"] == 1 and created["stages_count"] == 2
    dev, prod = created["stages"]
    assert (dev["name"], dev["environment"], dev["order"]) == ("Dev", env.id, 0)
    assert dev["trigger"] == {"trigger_type": "ON_ENTER", "trigger_body": None}
    assert [(a["action_type"], a["action_body"]) for a in dev["actions"]] == [
        ("TOGGLE_FEATURE", {"enabled": True}),
        ("UPDATE_FEATURE_VALUE", {"value": "42"}),  # text stays text
        ("TOGGLE_FEATURE_FOR_SEGMENT", {"enabled": False, "segment_id": platform.pro.id}),
        ("UPDATE_FEATURE_VALUE_FOR_SEGMENT", {"value": 7, "segment_id": platform.pro.id}),
        ("PHASED_ROLLOUT", {"enabled": True, "initial_percentage": 10,
                            "increase_percentage": 30, "increase_every": "01:30:00"}),
    ]
    assert prod["trigger"] == {"trigger_type": "WAIT_FOR",
                               "trigger_body": {"wait_for": "2 00:00:00"}}
    assert prod["features"] == [] and prod["features_count"] == 0
    read = call(client, "GET", pipelines_path(project, created["id"]), key=org_key)
    assert read.status_code == 200 and read.get_json() == created
    listed = call(client, "GET", pipelines_path(project), key=org_key).get_json()
    assert listed["count"] == 1 and listed["next"] is None
    assert listed["results"][0] == {
        "id": created["id"], "name": "Everything", "description": "All kinds",
        "project": project.id, "status": "draft", "version": 1, "published_at": None,
        "stages_count": 2, "flags_in_flight": 0}


def test_stages_take_their_place_from_order(client, project, platform, org_key):
    body = {"name": "Reordered", "stages": [
        stage(platform.production, "Prod", order=5),
        stage(platform.development, "Dev", order=1),
    ]}
    created = create(client, project, org_key, body)
    assert [(s["name"], s["order"]) for s in created["stages"]] == [("Dev", 0), ("Prod", 1)]


@pytest.mark.parametrize("wait_for, shown", [
    ("1:00:00", "01:00:00"), ("01:00:00", "01:00:00"), ("0:05:00", "00:05:00"),
    ("3 02:00:00", "3 02:00:00"), ("1 day, 2:00:00", "1 02:00:00"), ("48:00:00", "2 00:00:00"),
    # Any whole number of seconds, as Flagsmith's wait_for duration allows.
    ("0:00:01", "00:00:01"), ("0:00:30", "00:00:30"), ("0:01:30", "00:01:30"),
    ("1 00:00:07", "1 00:00:07"),
])
def test_waits_are_read_in_djangos_duration_forms(client, project, platform, org_key, wait_for,
                                                  shown):
    created = create(client, project, org_key, {"name": "Wait", "stages": [
        stage(platform.development, wait=wait_for)]})
    assert created["stages"][0]["trigger"]["trigger_body"] == {"wait_for": shown}


def _bad_stage(platform, **changes):
    spec = stage(platform.development, "Dev")
    spec.update(changes)
    return spec


# (stages or body changes, path of the message, words in it)
BAD_INPUT = [
    ({"name": None}, "name", "Field may not be null"),
    ({"name": "   "}, "name", "A name is required"),
    ({"description": 5}, "description", "Not a valid string"),
    ({"stages": "all of them"}, "stages", "Not a valid list"),
    ({"stages": [{"name": "Dev"}]}, "stages[0].environment", "Missing data"),
    ({"stages": ["Dev"]}, "stages[0]", "Invalid input type"),
    ("foreign_environment", "stages[0].environment", "this project's environments"),
    ("bad_wait_format", "stages[0].trigger.trigger_body.wait_for", "H:MM:SS"),
    ("rollout_in_seconds", "stages[0].actions[0].action_body.increase_every", "whole minutes"),
    ("wait_missing", "stages[0].trigger.trigger_body.wait_for", "how many seconds to wait"),
    ("wait_too_long", "stages[0].trigger.trigger_body.wait_for", "at most 365 days"),
    ("wait_zero", "stages[0].trigger.trigger_body.wait_for", "more than 0"),
    ("unknown_trigger", "stages[0].trigger.trigger_type", "Must be one of"),
    ("unknown_action", "stages[0].actions[0].action_type", "Must be one of"),
    ("toggle_without_enabled", "stages[0].actions[0].action_body.enabled",
     "Choose enable or disable"),
    ("segment_missing", "stages[1].actions[0].action_body.segment_id", "Choose a segment"),
    ("segment_foreign", "stages[1].actions[0].action_body.segment_id",
     "this project's segments"),
    ("segment_not_a_number", "stages[1].actions[0].action_body.segment_id",
     "Not a valid integer"),
    ("value_float", "stages[0].actions[0].action_body.value", "whole number"),
    ("rollout_zero", "stages[0].actions[0].action_body.initial_percentage", "more than 0 %"),
    ("rollout_step_too_big", "stages[0].actions[0].action_body.increase_percentage",
     "at most 100 %"),
    ("rollout_without_interval", "stages[0].actions[0].action_body.increase_every",
     "how many minutes to wait between steps"),
    ("two_rollouts", "stages[0].actions[1].action_type", "at most one per stage"),
    ("same_order", "stages[1].order", "Stage 0 has this order too"),
    ("bad_stage_listed_second_placed_first", "stages[1].environment",
     "this project's environments"),
    ("too_many_stages", "stages", "Longer than maximum length 30"),
]

ROLLOUT = {"action_type": "PHASED_ROLLOUT",
           "action_body": {"initial_percentage": 10, "increase_percentage": 10,
                           "increase_every": "1:00:00"}}


def _bad_body(case, platform, make, project):
    dev, prod = platform.development, platform.production
    good = [stage(dev, "Dev"), stage(prod, "Prod")]
    if isinstance(case, dict):
        return {"name": "Broken", "stages": good, **case}

    def with_first(**changes):
        return [{**good[0], **changes}, good[1]]

    def with_trigger(body):
        return with_first(trigger={"trigger_type": "WAIT_FOR", "trigger_body": body})

    def with_action(action, index=0):
        stages = [dict(s) for s in good]
        stages[index]["actions"] = [action]
        return stages

    def segment_action(segment_id):
        return with_action({"action_type": "TOGGLE_FEATURE_FOR_SEGMENT",
                            "action_body": {"enabled": True, "segment_id": segment_id}}, 1)

    def rollout(**body):
        return with_action({**ROLLOUT, "action_body": {**ROLLOUT["action_body"], **body}})

    other = make.project("Other")
    stages = {
        "foreign_environment": lambda: with_first(environment=make.environments(other)[0].id),
        "bad_wait_format": lambda: with_trigger({"wait_for": "soon"}),
        "rollout_in_seconds": lambda: rollout(increase_every="0:00:30"),
        "wait_missing": lambda: with_trigger(None),
        "wait_too_long": lambda: with_trigger({"wait_for": "366 00:00:00"}),
        "wait_zero": lambda: with_trigger({"wait_for": "0:00:00"}),
        "unknown_trigger": lambda: with_first(trigger={"trigger_type": "LATER"}),
        "unknown_action": lambda: with_action({"action_type": "DELETE_FEATURE"}),
        "toggle_without_enabled": lambda: with_action({"action_type": "TOGGLE_FEATURE"}),
        "segment_missing": lambda: segment_action(None),
        "segment_foreign": lambda: segment_action(make.segment(other, "Theirs").id),
        "segment_not_a_number": lambda: segment_action("pro"),
        "value_float": lambda: with_action({"action_type": "UPDATE_FEATURE_VALUE",
                                            "action_body": {"value": 1.5}}),
        "rollout_zero": lambda: rollout(initial_percentage=0),
        "rollout_step_too_big": lambda: rollout(increase_percentage=101),
        "rollout_without_interval": lambda: rollout(increase_every=None),
        "two_rollouts": lambda: with_first(actions=[ROLLOUT, ROLLOUT]),
        "same_order": lambda: [{**good[0], "order": 0}, {**good[1], "order": 0}],
        "bad_stage_listed_second_placed_first": lambda: [
            {**good[0], "order": 1},
            {**good[1], "order": 0, "environment": make.environments(other)[0].id}],
        "too_many_stages": lambda: [stage(dev, f"S{n}") for n in range(31)],
    }[case]()
    return {"name": "Broken", "stages": stages}


@pytest.mark.parametrize("case, path, words", BAD_INPUT,
                         ids=[c if isinstance(c, str) else p for c, p, _w in BAD_INPUT])
def test_bad_input_is_422_by_path_and_creates_nothing(client, make, project, platform, org_key,
                                                      case, path, words):
    body = _bad_body(case, platform, make, project)
    response = call(client, "POST", pipelines_path(project), key=org_key, json=body)
    assert response.status_code == 422, response.get_json()
    answer = response.get_json()
    assert answer["detail"] and path in answer, answer
    assert any(words in message for message in answer[path]), answer[path]
    assert db.session.scalar(select(func.count()).select_from(ReleasePipeline)) == 0
    assert db.session.scalar(select(func.count()).select_from(PipelineStage)) == 0
    assert db.session.scalar(select(func.count()).select_from(AuditEntry).where(
        AuditEntry.object_type == "release_pipeline")) == 0


def test_every_problem_is_listed_at_once(client, make, project, platform, org_key):
    body = {"name": "Broken", "stages": [
        stage(platform.development, "  ", actions=[{"action_type": "TOGGLE_FEATURE"}]),
        stage(platform.production, wait="0:00:00", actions=[
            {"action_type": "TOGGLE_FEATURE_FOR_SEGMENT", "action_body": {"enabled": True}}]),
    ]}
    answer = call(client, "POST", pipelines_path(project), key=org_key, json=body).get_json()
    assert {"stages[0].name", "stages[0].actions[0].action_body.enabled",
            "stages[1].trigger.trigger_body.wait_for",
            "stages[1].actions[0].action_body.segment_id"} <= set(answer)


@pytest.mark.parametrize("payload, status", [
    ("not json", 400), ("[1, 2]", 400), ('{"name": 5}', 422)])
def test_a_body_that_is_not_an_object_is_400(client, project, org_key, payload, status):
    response = call(client, "POST", pipelines_path(project), key=org_key, data=payload,
                    content_type="application/json")
    assert response.status_code == status and response.get_json()["detail"]


def test_put_replaces_a_drafts_stages_keeping_ids_by_position(client, project, platform,
                                                                org_key):
    created = create(client, project, org_key, two_stages(platform))
    dev_id = created["stages"][0]["id"]
    body = {"name": "Renamed", "description": "", "version": created["version"], "stages": [
        stage(platform.development, "Dev", actions=[toggle(False)]),
    ]}
    replaced = call(client, "PUT", pipelines_path(project, created["id"]), key=org_key, json=body)
    assert replaced.status_code == 200, replaced.get_json()
    answer = replaced.get_json()
    assert answer["name"] == "Renamed" and answer["version"] == created["version"] + 1
    assert [s["id"] for s in answer["stages"]] == [dev_id]
    assert answer["stages"][0]["actions"][0]["action_body"] == {"enabled": False}
    stale = call(client, "PUT", pipelines_path(project, created["id"]), key=org_key, json=body)
    assert stale.status_code == 409 and "Someone else changed" in stale.get_json()["detail"]
    # without a version the change is made against the current one; the same again is a no-op
    del body["version"]
    again = call(client, "PUT", pipelines_path(project, created["id"]), key=org_key, json=body)
    assert again.status_code == 200 and again.get_json()["version"] == answer["version"]


def test_patch_renames_or_replaces_stages(client, project, platform, org_key):
    created = create(client, project, org_key, two_stages(platform))
    path = pipelines_path(project, created["id"])
    renamed = call(client, "PATCH", path, key=org_key, json={"name": "Mobile release"})
    assert renamed.status_code == 200
    assert renamed.get_json()["name"] == "Mobile release"
    assert renamed.get_json()["description"] == "Dev, then prod"
    assert len(renamed.get_json()["stages"]) == 2
    longer = call(client, "PATCH", path, key=org_key, json={"stages": [
        *two_stages(platform)["stages"], stage(platform.production, "Prod again")]})
    assert [s["name"] for s in longer.get_json()["stages"]] == ["Dev", "Prod", "Prod again"]
    assert longer.get_json()["name"] == "Mobile release"
    bad = call(client, "PATCH", path, key=org_key, json={"stages": [
        stage(platform.development, "Dev", actions=[{"action_type": "TOGGLE_FEATURE"}])]})
    assert bad.status_code == 422 and "stages[0].actions[0].action_body.enabled" in bad.get_json()
    unchanged = call(client, "GET", path, key=org_key).get_json()
    assert unchanged == longer.get_json()


@pytest.mark.parametrize("method, body", [
    ("PUT", {"name": "New", "stages": []}),
    ("PUT", {"name": "", "stages": "nonsense"}),
    ("PATCH", {"name": "New"}),
    ("PATCH", {"stages": []}),
])
def test_a_published_pipeline_cannot_be_edited(client, project, platform, org_key, method, body):
    pipeline = published(client, project, org_key, two_stages(platform))
    response = call(client, method, pipelines_path(project, pipeline["id"]), key=org_key,
                    json=body)
    assert response.status_code == 409
    assert "published and cannot be changed" in response.get_json()["detail"]
    assert call(client, "GET", pipelines_path(project, pipeline["id"]),
                key=org_key).get_json() == pipeline


def test_publish_lists_every_problem(client, project, platform, org_key):
    empty = create(client, project, org_key, {"name": "Empty"})
    response = call(client, "POST", pipelines_path(project, empty["id"], "publish-pipeline/"),
                    key=org_key, json={})
    assert response.status_code == 422
    assert response.get_json()["problems"] == ["Add at least one stage before publishing."]
    no_actions = create(client, project, org_key, {"name": "Idle", "stages": [
        stage(platform.development, "Dev", actions=[]),
        stage(platform.production, "Prod", actions=[])]})
    response = call(client, "POST",
                    pipelines_path(project, no_actions["id"], "publish-pipeline/"), key=org_key)
    assert response.status_code == 422
    assert response.get_json()["problems"] == ["Stage 1 (Dev): add at least one action.",
                                               "Stage 2 (Prod): add at least one action."]
    stale = call(client, "POST", pipelines_path(project, no_actions["id"], "publish-pipeline/"),
                 key=org_key, json={"version": 7})
    assert stale.status_code == 409


def test_publish_unpublish_and_clone(client, project, platform, org_key):
    draft = create(client, project, org_key, two_stages(platform))
    base = pipelines_path(project, draft["id"])
    done = call(client, "POST", f"{base}publish-pipeline/", key=org_key,
                json={"version": draft["version"]})
    assert done.status_code == 200 and done.get_json()["status"] == "published"
    assert done.get_json()["published_at"].startswith("20")
    assert call(client, "POST", f"{base}publish-pipeline/", key=org_key).status_code == 409
    copy = call(client, "POST", f"{base}clone/", key=org_key)
    assert copy.status_code == 201
    assert copy.get_json()["name"] == "Web release (copy)"
    assert copy.get_json()["status"] == "draft" and copy.get_json()["id"] != draft["id"]
    strip = ("id", "features")
    assert [{k: v for k, v in s.items() if k not in strip} | {"actions": len(s["actions"])}
            for s in copy.get_json()["stages"]] == [
        {k: v for k, v in s.items() if k not in strip} | {"actions": len(s["actions"])}
        for s in done.get_json()["stages"]]
    named = call(client, "POST", f"{base}clone/", key=org_key, json={"name": "Mobile"})
    assert named.status_code == 201 and named.get_json()["name"] == "Mobile"
    assert call(client, "POST", f"{base}clone/", key=org_key,
                json={"name": "x" * 256}).status_code == 422
    back = call(client, "POST", f"{base}unpublish-pipeline/", key=org_key)
    assert back.status_code == 200 and back.get_json()["status"] == "draft"
    again = call(client, "POST", f"{base}unpublish-pipeline/", key=org_key)
    assert again.status_code == 409 and "already a draft" in again.get_json()["detail"]


def test_delete(client, project, platform, org_key):
    pipeline = create(client, project, org_key, two_stages(platform))
    path = pipelines_path(project, pipeline["id"])
    assert call(client, "DELETE", path, key=org_key).status_code == 204
    assert call(client, "GET", path, key=org_key).status_code == 404
    assert call(client, "DELETE", path, key=org_key).status_code == 404
    assert call(client, "GET", pipelines_path(project), key=org_key).get_json()["count"] == 0


def test_every_change_is_audited_with_the_key_or_user(client, project, platform, org_key, editor):
    created = create(client, project, org_key, two_stages(platform))
    entry = db.session.scalar(select(AuditEntry).where(
        AuditEntry.event_type == "RELEASE_PIPELINE_CREATED"))
    assert (entry.actor_type, entry.actor_label) == ("api_key", "API key CI")
    assert entry.pipeline_id == created["id"] and entry.actor_api_key_id is not None
    assert [s["name"] for s in entry.after["stages"]] == ["Dev", "Prod"]
    token = token_for(editor)
    path = pipelines_path(project, created["id"])
    call(client, "PUT", path, token=token, json={**two_stages(platform), "name": "By token"})
    call(client, "POST", f"{path}publish-pipeline/", token=token)
    call(client, "POST", f"{path}clone/", token=token)
    events = db.session.execute(
        select(AuditEntry.event_type, AuditEntry.actor_user_id, AuditEntry.actor_label)
        .where(AuditEntry.object_type == "release_pipeline", AuditEntry.id > entry.id)
        .order_by(AuditEntry.id)).all()
    assert [e.event_type for e in events] == ["RELEASE_PIPELINE_UPDATED",
                                             "RELEASE_PIPELINE_PUBLISHED",
                                             "RELEASE_PIPELINE_CLONED"]
    assert {(e.actor_user_id, e.actor_label.split(" ")[0]) for e in events} == {
        (editor.id, "editor@example.com")}
    updated = db.session.scalar(select(AuditEntry).where(
        AuditEntry.event_type == "RELEASE_PIPELINE_UPDATED"))
    assert updated.before["name"] == "Web release" and updated.after["name"] == "By token"


def test_the_builder_keeps_a_wait_of_seconds_set_through_the_api(client, make, project,
                                                                 platform, org_key, login):
    draft = create(client, project, org_key, {"name": "Quick", "stages": [
        stage(platform.development, wait="0:00:45")]})
    editor = make.user(project=project, role="editor")
    page = login(client, editor).get(f"/projects/{project.id}/pipelines/{draft['id']}")
    html = page.get_data(as_text=True)
    assert '<option value="seconds" selected>seconds</option>' in html
    assert 'value="45"' in html
    # A wait of whole minutes offers the usual units only.
    other = create(client, project, org_key, {"name": "Slow", "stages": [
        stage(platform.development, wait="0:05:00")]})
    html = client.get(f"/projects/{project.id}/pipelines/{other['id']}").get_data(as_text=True)
    assert 'value="seconds"' not in html and '<option value="minutes" selected>' in html
