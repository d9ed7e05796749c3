"""Project isolation over the whole admin API, read off the OpenAPI document: another
organisation's key and a non-member's token reach nothing (404) and change nothing, on every
documented operation that names a project or an object in one."""

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from webapp.clock import now as clock_now
from webapp.extensions import db
from webapp.models import AuditEntry, FeatureState, SegmentOverride
from webapp.services.actors import SYSTEM, Actor
from webapp.services.change_requests import opening
from webapp.services.governance import webhooks
from webapp.services.pipelines import builder
from webapp.services.platform import environments
from webapp.services.runs import calendar

from .conftest import api, token_for

# Fields a body may name objects by; every operation gets them all (extra ones are ignored).
BODY = {"name": "Hijacked", "enabled": True, "feature_state_value": "x", "comment": "x"}


def _operations(client):
    document = client.get("/api/v1/openapi.json").get_json()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if "SDK" in operation.get("tags", []) or path == "/api/v1/projects/" \
                    or operation.get("security") == []:
                continue  # environment keys, the list of one's own projects, and sign-in
            yield method.upper(), path.removeprefix("/api/v1/"), operation


@pytest.fixture
def objects(platform, make):
    pipeline = builder.create_pipeline(platform.project, "Ours", SYSTEM)
    platform.production.minimum_change_request_approvals = 1
    db.session.commit()
    editor = make.user(project=platform.project, role="editor")
    request = opening.set_state(platform.banner, platform.production.id,
                                        Actor.for_user(editor), enabled=False)
    hook = webhooks.create_webhook(platform.project, SYSTEM, url="https://93.184.215.14/hook",
                                   events=["FLAG_UPDATED"])
    soon = clock_now() + timedelta(days=1)
    freeze, _ = calendar.create_freeze(SYSTEM, organisation_id=platform.project.organisation_id,
                                       project_id=platform.project.id, starts_at=soon,
                                       ends_at=soon + timedelta(days=1), reason="Ours")
    return {
        "webhook_id": hook.id, "organisation_id": platform.project.organisation_id,
        "freeze_id": freeze.id,
        "project_id": platform.project.id, "api_key": platform.development.client_key,
        "pipeline_id": pipeline.id, "request_id": request.id,
        "feature_id": platform.checkout.id, "segment_id": platform.pro.id,
        "state_id": db.session.scalar(select(FeatureState.id).where(
            FeatureState.environment_id == platform.development.id)),
        "override_id": db.session.scalar(select(SegmentOverride.id).where(
            SegmentOverride.environment_id == platform.development.id)),
        "key_id": environments.create_server_key(platform.development, "deploy", SYSTEM)[0].id,
    }


def _audit_count():
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(AuditEntry))


@pytest.mark.parametrize("who", ["another organisation's key", "a non-member's token"])
def test_out_of_reach_everywhere(client, make, objects, foreign_org_key, who):
    credentials = ({"key": foreign_org_key} if who.startswith("another")
                   else {"token": token_for(make.user(project=make.project("Theirs")))})
    project = objects["project_id"]
    body = {**BODY, "project": project, "feature": objects["feature_id"],
            "feature_id": objects["feature_id"], "segment": objects["segment_id"]}
    before = _audit_count()
    checked = 0
    for method, path, operation in _operations(client):
        url = path.format(**objects)
        query_names = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
        kwargs = {"query_string": {"project": project} if "project" in query_names else None}
        if method in ("POST", "PUT", "PATCH"):
            kwargs["json"] = body
        answer = api(client, method, url, **credentials, **kwargs)
        if "{organisation_id}" in path and who == "a non-member's token":
            # A member of the same organisation (of another project) may read its calendar,
            # never change it, and never see a project's freezes through it.
            assert answer.status_code in ((200, 404) if method == "GET" else (403, 404)), (
                method, url, answer.get_json())
            assert "Ours" not in answer.text
            continue
        assert answer.status_code == 404, (method, url, answer.get_json())
        checked += 1
    assert checked >= 40
    assert _audit_count() == before
