"""The change-request endpoints of the admin API, and flag changes through the API in an
environment that needs approvals: they open a change request (202) instead of applying."""

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select, update

from webapp import redis_conn
from webapp.extensions import db
from webapp.models import (
    ApiKey,
    AuditEntry,
    ChangeRequest,
    ChangeRequestReview,
    Environment,
    FeatureState,
    PipelineRun,
    PipelineStage,
    ReleasePipeline,
    SegmentOverride,
    StageAction,
)
from webapp.services.actors import Actor
from webapp.services.change_requests import workflow
from webapp.services.runs import controls, sweep

from .conftest import api, set_override, set_state, token_for

CR = "features/workflows/change-requests"


@pytest.fixture
def gated(platform):
    """Production needs two approvals; `limit` has an override for Pro users there."""
    set_override(platform.production, platform.limit, platform.pro, True, 5)
    db.session.execute(update(Environment).where(Environment.id == platform.production.id)
                       .values(minimum_change_request_approvals=2))
    db.session.commit()
    return platform.production


@pytest.fixture
def tokens(make, project, editor, admin, viewer):
    """Personal tokens: the requester (an editor), two other reviewers, a viewer."""
    reviewer = make.user(project=project, role="editor", email="reviewer@example.com")
    return {"requester": token_for(editor), "reviewer": token_for(reviewer),
            "admin": token_for(admin), "viewer": token_for(viewer)}


def state_id(feature, env):
    return db.session.scalar(select(FeatureState.id).where(
        FeatureState.feature_id == feature.id, FeatureState.environment_id == env.id))


def state_of(feature, env):
    row = db.session.get(FeatureState, state_id(feature, env))
    return row.enabled, row.value


def override_of(feature, env, segment):
    return db.session.scalar(select(SegmentOverride).where(
        SegmentOverride.feature_id == feature.id, SegmentOverride.environment_id == env.id,
        SegmentOverride.segment_id == segment.id))


def override_state(feature, env, segment):
    """(enabled, value) of the override, or None without one."""
    override = override_of(feature, env, segment)
    return None if override is None else (override.enabled, override.value)


def open_toggle(client, platform, token):
    """Turn `checkout` on in Production through the API: the change request it opened."""
    answer = api(client, "PATCH", f"environments/{platform.production.client_key}/featurestates/"
                 f"{state_id(platform.checkout, platform.production)}/", token=token,
                 json={"enabled": True})
    assert answer.status_code == 202, answer.get_json()
    return answer.get_json()["change_request"]


def act(client, cr_id, action, **kwargs):
    return api(client, "POST", f"{CR}/{cr_id}/{action}/", **kwargs)


def audit_count():
    return db.session.scalar(select(func.count()).select_from(AuditEntry))


# --- The governance hole: API changes in a gated environment --------------------------------------


def test_a_patch_in_a_gated_environment_waits_for_two_approvals_then_commits(
        client, platform, gated, tokens, editor):
    key = gated.client_key
    answer = api(client, "PATCH", f"environments/{key}/featurestates/"
                 f"{state_id(platform.checkout, gated)}/", token=tokens["requester"],
                 json={"enabled": True})

    assert answer.status_code == 202
    opened = answer.get_json()
    cr = opened["change_request"]
    assert f"change request #{cr['id']} opened" in opened["detail"]
    assert cr["status"] == "open" and cr["title"] == "new_checkout: enabled in Production"
    assert cr["environment"] == {"id": gated.id, "name": "Production", "api_key": key}
    assert cr["feature"] == {"id": platform.checkout.id, "name": "new_checkout"}
    assert cr["changes"] == [{"kind": "state", "segment": None, "segment_name": None,
                              "action_type": None, "before": {"enabled": False, "value": None},
                              "after": {"enabled": True, "value": None}}]
    assert (cr["approval_count"], cr["approvals_needed"], cr["created_by"]) == (0, 2, editor.id)
    assert state_of(platform.checkout, gated) == (False, None)
    sdk = client.get("/api/v1/flags/?feature=new_checkout", headers={"X-Environment-Key": key})
    assert sdk.get_json()["enabled"] is False

    first = act(client, cr["id"], "approve", token=tokens["reviewer"], json={"comment": "ok"})
    assert first.status_code == 200 and first.get_json()["approval_count"] == 1
    too_early = act(client, cr["id"], "commit", token=tokens["reviewer"])
    assert too_early.status_code == 409 and "1 of the 2 approvals" in too_early.get_json()["detail"]
    second = act(client, cr["id"], "approve", token=tokens["admin"])  # no body at all
    assert second.status_code == 200
    approvals = second.get_json()["approvals"]
    assert [(a["user"]["email"], a["comment"], a["current"]) for a in approvals] == [
        ("reviewer@example.com", "ok", True), ("admin@example.com", "", True)]
    assert all(a["approved_at"] for a in approvals)
    assert state_of(platform.checkout, gated) == (False, None)

    committed = act(client, cr["id"], "commit", token=tokens["requester"])

    assert committed.status_code == 200
    done = committed.get_json()
    assert done["status"] == "committed" and done["committed_at"]
    assert done["committed_by"]["email"] == "editor@example.com"
    assert state_of(platform.checkout, gated) == (True, None)
    sdk = client.get("/api/v1/flags/?feature=new_checkout", headers={"X-Environment-Key": key})
    assert sdk.get_json()["enabled"] is True


OVERRIDE_CHANGES = [
    # (method, which override, body, change kind, (enabled, value) after commit, or None: gone)
    ("POST", None, {"feature": "banner", "segment": "pro", "feature_state_value": "pro!"},
     "override", (True, "pro!")),
    ("PATCH", "limit", {"feature_state_value": 50}, "override", (True, 50)),
    ("DELETE", "limit", None, "remove_override", None),
]


@pytest.mark.parametrize("method, target, payload, kind, after", OVERRIDE_CHANGES)
def test_override_changes_in_a_gated_environment_open_requests(
        method, target, payload, kind, after, client, platform, gated, tokens):
    key = gated.client_key
    feature = platform.banner if target is None else platform.limit
    before = override_state(feature, gated, platform.pro)
    path = f"environments/{key}/segment-overrides/"
    if target is not None:
        path += f"{override_of(feature, gated, platform.pro).id}/"
    names = {"banner": platform.banner.id, "pro": platform.pro.id}
    body = {k: names.get(v, v) if k in ("feature", "segment") else v
            for k, v in (payload or {}).items()}

    answer = api(client, method, path, token=tokens["requester"],
                 **({"json": body} if payload is not None else {}))

    assert answer.status_code == 202, answer.get_json()
    cr = answer.get_json()["change_request"]
    assert [(c["kind"], c["segment"], c["segment_name"]) for c in cr["changes"]] == [
        (kind, platform.pro.id, "Pro users")]
    assert override_state(feature, gated, platform.pro) == before  # nothing applied yet
    for who in ("reviewer", "admin"):
        assert act(client, cr["id"], "approve", token=tokens[who]).status_code == 200
    assert act(client, cr["id"], "commit", token=tokens["admin"]).status_code == 200
    assert override_state(feature, gated, platform.pro) == after


GATED_CHANGES = [
    ("PATCH", "featurestate", {"enabled": True}),
    ("POST", "overrides", {"feature": "banner", "segment": "pro"}),
    ("PATCH", "override", {"enabled": False}),
    ("DELETE", "override", None),
]


@pytest.mark.parametrize("method, target, payload", GATED_CHANGES)
def test_an_organisation_key_cannot_change_a_gated_environment(
        method, target, payload, client, platform, gated, org_key):
    key = gated.client_key
    override = override_of(platform.limit, gated, platform.pro)
    path = {"featurestate": f"featurestates/{state_id(platform.checkout, gated)}/",
            "overrides": "segment-overrides/",
            "override": f"segment-overrides/{override.id}/"}[target]
    names = {"banner": platform.banner.id, "pro": platform.pro.id}
    body = {k: names.get(v, v) for k, v in (payload or {}).items()}
    before = (audit_count(), state_of(platform.checkout, gated), override.value)

    answer = api(client, method, f"environments/{key}/{path}", key=org_key,
                 **({"json": body} if payload is not None else {}))

    assert answer.status_code == 403
    assert "personal token" in answer.get_json()["detail"]
    override = override_of(platform.limit, gated, platform.pro)
    assert (audit_count(), state_of(platform.checkout, gated), override.value) == before
    assert db.session.scalar(select(func.count()).select_from(ChangeRequest)) == 0


@pytest.mark.parametrize("flag, payload, field, says", [
    ("limit", {"feature_state_value": "lots"}, "feature_state_value", "whole number"),
    ("limit", {}, "form", "already like this"),  # nothing would change
    ("limit", {"enabled": "maybe"}, "enabled", "Not a valid boolean."),
])
def test_bad_changes_in_a_gated_environment_open_nothing(flag, payload, field, says, client,
                                                         platform, gated, tokens):
    feature = getattr(platform, flag)
    before = (audit_count(), state_of(feature, gated))
    answer = api(client, "PATCH", f"environments/{gated.client_key}/featurestates/"
                 f"{state_id(feature, gated)}/", token=tokens["requester"], json=payload)
    assert answer.status_code == 422 and says in answer.get_json()[field][0]
    assert db.session.scalar(select(func.count()).select_from(ChangeRequest)) == 0
    assert (audit_count(), state_of(feature, gated)) == before


def refused_for_nul(answer):
    """NUL characters (which PostgreSQL cannot store) are refused as bad input: by the
    endpoint's validation (422 on the field) or a guard in front of every request (400)."""
    return answer.status_code in (400, 422) and "NUL" in answer.get_data(as_text=True)


@pytest.mark.parametrize("path, payload", [
    ("featurestates/{state}/", {"feature_state_value": "a\x00b"}),
    ("segment-overrides/", {"feature": "{banner}", "segment": "{pro}",
                            "feature_state_value": "\x00"}),
    ("segment-overrides/{override}/", {"feature_state_value": "x\x00"}),
])
@pytest.mark.parametrize("environment", ["development", "production"])
def test_nul_characters_in_values_are_refused_everywhere(path, payload, environment, client,
                                                         platform, gated, tokens):
    env = getattr(platform, environment)
    names = {"state": state_id(platform.banner, env), "banner": platform.banner.id,
             "pro": platform.pro.id, "override": override_of(platform.limit, env, platform.pro).id}
    body = {k: int(v.format(**names)) if k in ("feature", "segment") else v
            for k, v in payload.items()}
    before = audit_count()
    answer = api(client, "PATCH" if "{" in path else "POST",
                 f"environments/{env.client_key}/{path.format(**names)}",
                 token=tokens["requester"], json=body)
    assert refused_for_nul(answer)
    assert audit_count() == before


@pytest.mark.parametrize("action", ["approve", "reject"])
def test_nul_characters_in_a_review_comment_are_refused(action, client, platform, gated, tokens):
    cr = open_toggle(client, platform, tokens["requester"])
    before = (audit_count(), db.session.get(ChangeRequest, cr["id"]).version)
    answer = act(client, cr["id"], action, token=tokens["reviewer"], json={"comment": "ok\x00"})
    assert refused_for_nul(answer)
    assert (audit_count(), db.session.get(ChangeRequest, cr["id"]).version) == before


# --- Listing and reading --------------------------------------------------------------------------


def test_the_list_filters_by_status_and_flag_and_pages(client, project, platform, gated, tokens,
                                                       editor):
    key = gated.client_key
    toggled = open_toggle(client, platform, tokens["requester"])
    valued = api(client, "PATCH", f"environments/{key}/featurestates/"
                 f"{state_id(platform.banner, gated)}/", token=tokens["requester"],
                 json={"feature_state_value": "bye"}).get_json()["change_request"]
    removed = api(client, "DELETE", f"environments/{key}/segment-overrides/"
                  f"{override_of(platform.limit, gated, platform.pro).id}/",
                  token=tokens["requester"]).get_json()["change_request"]
    assert act(client, valued["id"], "reject", token=tokens["reviewer"],
               json={"comment": "Not this week"}).status_code == 200
    workflow.close(project.id, removed["id"], Actor.for_user(editor))

    def ids(query=""):
        page = api(client, "GET", f"environments/{key}/list-change-requests/{query}",
                   token=tokens["viewer"])
        assert page.status_code == 200, page.get_json()
        return page.get_json()["count"], [r["id"] for r in page.get_json()["results"]]

    assert ids() == (1, [toggled["id"]])
    assert ids("?status=rejected") == (2, [removed["id"], valued["id"]])
    assert ids("?status=closed") == (1, [removed["id"]])
    assert ids("?status=committed") == (0, [])
    assert ids(f"?status=rejected&feature={platform.banner.id}") == (1, [valued["id"]])
    assert ids(f"?feature={platform.banner.id}") == (0, [])
    assert ids("?status=rejected&page_size=1&page=5") == (2, [])
    assert api(client, "GET", f"environments/{platform.development.client_key}/"
               "list-change-requests/", token=tokens["viewer"]).get_json()["count"] == 0

    first = api(client, "GET", f"environments/{key}/list-change-requests/?status=rejected"
                "&page_size=1", token=tokens["viewer"]).get_json()
    assert [r["id"] for r in first["results"]] == [removed["id"]] and first["previous"] is None
    second = api(client, "GET", first["next"].split("/api/v1/", 1)[1],
                 token=tokens["viewer"]).get_json()
    assert [r["id"] for r in second["results"]] == [valued["id"]] and second["next"] is None
    assert "page=1" in second["previous"] and "status=rejected" in second["previous"]
    row = second["results"][0]
    assert row["status"] == "rejected" and row["requested_by"] == "editor@example.com"
    assert (row["approval_count"], row["approvals_needed"]) == (0, 2)


@pytest.mark.parametrize("query, field, says", [
    ("?status=bogus", "status", "One of open, committed, rejected, closed."),
    ("?status=OPEN", "status", "One of open"),
    ("?feature=x", "feature", "A whole number."),
    ("?feature=0", "feature", "Between 1 and"),
    ("?page=0", "page", "Between 1 and"),
    ("?page_size=501", "page_size", "Between 1 and 500"),
])
def test_bad_list_filters_answer_422(query, field, says, client, platform, gated, tokens):
    answer = api(client, "GET", f"environments/{gated.client_key}/list-change-requests/{query}",
                 token=tokens["viewer"])
    assert answer.status_code == 422
    assert says in answer.get_json()[field][0]


def test_a_viewer_reads_a_request_with_its_reviews(client, platform, gated, tokens):
    cr = open_toggle(client, platform, tokens["requester"])
    act(client, cr["id"], "reject", token=tokens["reviewer"], json={"comment": "Wait"})

    read = api(client, "GET", f"{CR}/{cr['id']}/", token=tokens["viewer"])

    assert read.status_code == 200
    body = read.get_json()
    assert body["status"] == "rejected" and body["pipeline"] is None
    assert body["approvals"] == [] and body["committed_by"] is None
    [review] = body["reviews"]
    assert (review["user"]["email"], review["decision"], review["comment"], review["current"]) == (
        "reviewer@example.com", "rejected", "Wait", True)
    assert len(body["changes_hash"]) == 64
    assert api(client, "GET", f"{CR}/{cr['id'] + 1}/", token=tokens["viewer"]).status_code == 404


# --- A release pipeline's request -----------------------------------------------------------------


START = datetime(2030, 1, 6, 9, 0, tzinfo=UTC)


def three_stage_pipeline(project, creator, envs):
    """Development, then Production (approvals), then Staging: each turns the flag on."""
    pipeline = ReleasePipeline(project_id=project.id, name="Release", status="published",
                               created_by_id=creator.id)
    for position, (name, env) in enumerate(
            [("Dev", envs[0]), ("Prod", envs[2]), ("Stage", envs[1])]):
        stage = PipelineStage(position=position, name=name, environment_id=env.id,
                              trigger_type="ON_ENTER")
        stage.actions.append(StageAction(position=0, action_type="TOGGLE_FEATURE", enabled=True))
        pipeline.stages.append(stage)
    db.session.add(pipeline)
    db.session.commit()
    return pipeline


def test_a_pipeline_request_names_its_stage_and_its_commit_rings_the_engine(
        client, time_machine, make, project, platform, gated, tokens, editor):
    time_machine.move_to(START, tick=False)
    pipeline = three_stage_pipeline(project, editor, make.environments(project))
    flag = make.feature(project, "search")
    bells = controls.add_flags(project, pipeline.id, [flag.id], Actor.for_user(editor))
    sweep.advance_many([(b.run_id, b.version) for b in bells])
    db.session.rollback()
    cr_id = db.session.scalar(select(ChangeRequest.id).where(ChangeRequest.feature_id == flag.id))

    read = api(client, "GET", f"{CR}/{cr_id}/", token=tokens["viewer"]).get_json()

    run = db.session.scalar(select(PipelineRun).where(PipelineRun.feature_id == flag.id))
    prod = next(s for s in pipeline.stages if s.name == "Prod")
    assert read["pipeline"] == {"id": pipeline.id, "name": "Release",
                                "stage": {"id": prod.id, "name": "Prod"},
                                "run": {"id": run.id, "status": "awaiting_approval"}}
    assert read["requested_by"] == "Release pipeline Release (flag added by editor@example.com)"
    assert read["changes"][0]["action_type"] == "TOGGLE_FEATURE"
    own = act(client, cr_id, "approve", token=tokens["requester"])  # who added the flag
    assert own.status_code == 403 and "someone else" in own.get_json()["detail"]
    for who in ("reviewer", "admin"):
        assert act(client, cr_id, "approve", token=tokens[who]).status_code == 200
    redis_conn.queue().empty()

    committed = act(client, cr_id, "commit", token=tokens["reviewer"])

    assert committed.status_code == 200, committed.get_json()
    assert committed.get_json()["pipeline"]["run"]["status"] != "awaiting_approval"
    assert state_of(flag, gated) == (True, None)
    db.session.refresh(run)
    assert redis_conn.queue().job_ids == [f"advance-{run.id}-v{run.version}"]


# --- Refusals -------------------------------------------------------------------------------------


@pytest.mark.parametrize("who, action, setup, status, says", [
    ("viewer", "approve", None, 403, "Only editors and admins review"),
    ("viewer", "reject", None, 403, "Only editors and admins review"),
    ("viewer", "commit", None, 403, "Only editors and admins commit"),
    ("requester", "approve", None, 403, "someone else has to review"),
    ("requester", "reject", None, 403, "someone else has to review"),
    ("org_key", "approve", None, 403, "personal token"),
    ("org_key", "reject", None, 403, "personal token"),
    ("org_key", "commit", "approved_twice", 403, "personal token"),
    ("reviewer", "approve", "approved", 409, "already approved"),
    ("reviewer", "reject", "approved", 409, "already approved"),
    ("reviewer", "commit", None, 409, "0 of the 2 approvals"),
    ("reviewer", "commit", "approved", 409, "1 of the 2 approvals"),
    ("admin", "approve", "rejected", 409, "is rejected"),
    ("admin", "commit", "rejected", 409, "is rejected"),
    ("reviewer", "commit", "flag_changed", 409, "changed since"),
])
def test_refused_actions_say_why_and_change_nothing(who, action, setup, status, says, client,
                                                    platform, gated, tokens, org_key):
    cr = open_toggle(client, platform, tokens["requester"])
    if setup in ("approved", "approved_twice", "flag_changed"):
        act(client, cr["id"], "approve", token=tokens["reviewer"])
    if setup in ("approved_twice", "flag_changed"):
        act(client, cr["id"], "approve", token=tokens["admin"])
    if setup == "rejected":
        act(client, cr["id"], "reject", token=tokens["reviewer"])
    if setup == "flag_changed":
        set_state(gated, platform.checkout, value="changed meanwhile")
    credentials = {"key": org_key} if who == "org_key" else {"token": tokens[who]}
    before = (audit_count(), db.session.get(ChangeRequest, cr["id"]).version,
              db.session.scalar(select(func.count()).select_from(ChangeRequestReview)),
              state_of(platform.checkout, gated))

    answer = act(client, cr["id"], action, **credentials)

    assert answer.status_code == status
    assert says in answer.get_json()["detail"]
    after = (audit_count(), db.session.get(ChangeRequest, cr["id"]).version,
             db.session.scalar(select(func.count()).select_from(ChangeRequestReview)),
             state_of(platform.checkout, gated))
    if setup == "flag_changed":  # the diff is recomputed (audited): earlier approvals void
        read = api(client, "GET", f"{CR}/{cr['id']}/", token=tokens["viewer"]).get_json()
        assert read["approval_count"] == 0 and not any(a["current"] for a in read["approvals"])
        assert read["changes"][0]["before"]["value"] == "changed meanwhile"
        assert after[3] == before[3] and read["status"] == "open"
    else:
        assert after == before


@pytest.mark.parametrize("kwargs, status, field, says", [
    ({"data": "nope", "content_type": "text/plain"}, 400, "detail", "JSON object"),
    ({"json": ["approve"]}, 400, "detail", "JSON object"),
    ({"json": {"comment": 5}}, 422, "comment", "Not a valid string."),
    ({"json": {"comment": "x" * 2001}}, 422, "comment", "2000"),
    ({"json": {"changes_hash": 12}}, 422, "changes_hash", "Not a valid string."),
    ({"json": {"changes_hash": "0" * 64}}, 409, "detail", "review them again"),
])
@pytest.mark.parametrize("action", ["approve", "reject"])
def test_bad_review_bodies_are_refused(action, kwargs, status, field, says, client, platform,
                                       gated, tokens):
    cr = open_toggle(client, platform, tokens["requester"])
    before = (audit_count(), db.session.get(ChangeRequest, cr["id"]).version)

    answer = act(client, cr["id"], action, token=tokens["reviewer"], **kwargs)

    assert answer.status_code == status
    message = answer.get_json()[field]
    assert says in (message if isinstance(message, str) else message[0])
    assert (audit_count(), db.session.get(ChangeRequest, cr["id"]).version) == before


def test_the_changes_hash_seen_is_accepted(client, platform, gated, tokens):
    cr = open_toggle(client, platform, tokens["requester"])
    answer = act(client, cr["id"], "approve", token=tokens["reviewer"],
                 json={"changes_hash": cr["changes_hash"], "comment": "  looks right "})
    assert answer.status_code == 200
    assert answer.get_json()["approvals"][0]["comment"] == "looks right"


# --- Isolation ------------------------------------------------------------------------------------


def test_other_organisations_and_non_members_get_404_everywhere(client, make, platform, gated,
                                                                tokens, foreign_org_key, org_key):
    cr = open_toggle(client, platform, tokens["requester"])
    stranger = make.user(project=make.project("Other"), role="admin")
    outsiders = [{"key": foreign_org_key}, {"token": token_for(stranger)}]
    calls = [("GET", f"environments/{gated.client_key}/list-change-requests/"),
             ("GET", f"{CR}/{cr['id']}/"), ("POST", f"{CR}/{cr['id']}/approve/"),
             ("POST", f"{CR}/{cr['id']}/reject/"), ("POST", f"{CR}/{cr['id']}/commit/")]
    before = (audit_count(), db.session.get(ChangeRequest, cr["id"]).version)
    for method, path in calls:
        for credentials in outsiders:
            answer = api(client, method, path, json={}, **credentials)
            assert answer.status_code == 404, (method, path, credentials)
    assert (audit_count(), db.session.get(ChangeRequest, cr["id"]).version) == before
    # The organisation's own key reads them.
    for method, path in calls[:2]:
        assert api(client, method, path, key=org_key).status_code == 200


# --- Who did it: the audit log --------------------------------------------------------------------


def test_every_mutation_is_audited_with_the_token_that_made_it(client, editor, make, project,
                                                               platform, gated, tokens):
    key = gated.client_key
    override = override_of(platform.limit, gated, platform.pro)
    requester = tokens["requester"]
    opened = [
        open_toggle(client, platform, requester),
        api(client, "POST", f"environments/{key}/segment-overrides/", token=requester,
            json={"feature": platform.banner.id, "segment": platform.pro.id}),
        api(client, "PATCH", f"environments/{key}/segment-overrides/{override.id}/",
            token=requester, json={"priority": 3}),
        api(client, "DELETE", f"environments/{key}/segment-overrides/{override.id}/",
            token=requester),
    ]
    ids = [opened[0]["id"]] + [answer.get_json()["change_request"]["id"] for answer in opened[1:]]
    act(client, ids[0], "approve", token=tokens["reviewer"])
    act(client, ids[0], "approve", token=tokens["admin"])
    act(client, ids[0], "commit", token=tokens["admin"])
    act(client, ids[1], "reject", token=tokens["reviewer"], json={"comment": "No"})

    def actor_of(event_type, cr_id):
        entry = db.session.scalar(select(AuditEntry).where(
            AuditEntry.event_type == event_type, AuditEntry.change_request_id == cr_id)
            .order_by(AuditEntry.id))  # the first of them (two approvals)
        token = db.session.get(ApiKey, entry.actor_api_key_id)
        return entry.actor_type, token.user.email, entry.actor_user_id == token.user_id

    for cr_id in ids:
        assert actor_of("CHANGE_REQUEST_OPENED", cr_id) == (
            "api_key", "editor@example.com", True)
    assert actor_of("CHANGE_REQUEST_APPROVED", ids[0])[1] == "reviewer@example.com"
    assert actor_of("CHANGE_REQUEST_COMMITTED", ids[0]) == ("api_key", "admin@example.com", True)
    assert actor_of("FEATURE_STATE_UPDATED", ids[0]) == ("api_key", "admin@example.com", True)
    assert actor_of("CHANGE_REQUEST_REJECTED", ids[1]) == (
        "api_key", "reviewer@example.com", True)
