"""The admin REST API: authentication, the isolation matrix, every resource, audit."""

import pytest
from sqlalchemy import select

from webapp.extensions import db
from webapp.models import ApiKey, AuditEntry, PipelineRun, ReleasePipeline
from webapp.services.actors import SYSTEM
from webapp.services.platform import api_keys

from .conftest import api, token_for


@pytest.mark.parametrize("header", [None, "Api-Key nope", "Token nope", "Bearer x", "Api-Key "])
def test_unauthenticated_is_401_json(client, project, header):
    headers = {"Authorization": header} if header else {}
    response = client.get("/api/v1/projects/", headers=headers)
    assert response.status_code == 401 and response.get_json()["detail"]


def test_revoked_key_and_token_kind_mismatch(client, project, org_key):
    row = db.session.scalar(select(ApiKey).where(ApiKey.kind == "organisation"))
    assert api(client, "GET", "projects/", token=org_key).status_code == 401  # wrong scheme
    api_keys.revoke(row, SYSTEM)
    assert api(client, "GET", "projects/", key=org_key).status_code == 401


def test_last_used_at_is_noted(client, project, org_key):
    api(client, "GET", "projects/", key=org_key)
    db.session.rollback()
    assert db.session.scalar(select(ApiKey.last_used_at)) is not None


def test_org_key_sees_only_its_organisation(client, project, platform, org_key, foreign_org_key):
    names = [p["name"] for p in api(client, "GET", "projects/", key=org_key).get_json()["results"]]
    assert names == ["Acme"]
    elsewhere = api(client, "GET", "projects/", key=foreign_org_key).get_json()["results"]
    assert [p["name"] for p in elsewhere] == ["Elsewhere"]
    paths = [f"projects/{project.id}/", f"projects/{project.id}/features/",
             f"projects/{project.id}/segments/", f"environments/?project={project.id}",
             f"environments/{platform.development.client_key}/",
             f"environments/{platform.development.client_key}/featurestates/",
             f"environments/{platform.development.client_key}/segment-overrides/",
             f"projects/{project.id}/features/{platform.checkout.id}/",
             f"projects/{project.id}/segments/{platform.pro.id}/"]
    for path in paths:
        assert api(client, "GET", path, key=org_key).status_code == 200, path
        assert api(client, "GET", path, key=foreign_org_key).status_code == 404, path
    patch = api(client, "PATCH", f"environments/{platform.development.client_key}/",
                key=foreign_org_key, json={"name": "Hijacked"})
    assert patch.status_code == 404


def test_token_acts_with_the_users_roles(client, make, project, platform, viewer, editor):
    outsider = make.user(email="outsider@example.com")
    env = platform.development.client_key
    state_id = _state_id(client, platform, editor)
    # Viewer: reads, cannot change.
    vt = token_for(viewer)
    assert api(client, "GET", f"projects/{project.id}/features/", token=vt).status_code == 200
    assert api(client, "PATCH", f"environments/{env}/featurestates/{state_id}/", token=vt,
               json={"enabled": True}).status_code == 403
    # Editor: changes flags, not environment settings.
    et = token_for(editor)
    assert api(client, "PATCH", f"environments/{env}/featurestates/{state_id}/", token=et,
               json={"enabled": True}).status_code == 200
    assert api(client, "PATCH", f"environments/{env}/", token=et,
               json={"minimum_change_request_approvals": 2}).status_code == 403
    # Not a member: 404 everywhere, and no project listed.
    ot = token_for(outsider)
    assert api(client, "GET", "projects/", token=ot).get_json()["results"] == []
    assert api(client, "GET", f"projects/{project.id}/", token=ot).status_code == 404
    assert api(client, "GET", f"environments/{env}/featurestates/", token=ot).status_code == 404


def _state_id(client, platform, user):
    rows = api(client, "GET", f"environments/{platform.development.client_key}/featurestates/"
               f"?feature={platform.checkout.id}", token=token_for(user)).get_json()["results"]
    return rows[0]["id"]


def test_projects_and_environments(client, project, org_key):
    created = api(client, "POST", "projects/", key=org_key, json={"name": "Mobile"})
    assert created.status_code == 201
    project_id = created.get_json()["id"]
    envs = api(client, "GET", f"environments/?project={project_id}", key=org_key).get_json()
    assert envs["count"] == 3 and [e["name"] for e in envs["results"]] == [
        "Development", "Staging", "Production"]
    new = api(client, "POST", "environments/", key=org_key,
              json={"name": "QA", "project": project_id})
    assert new.status_code == 201
    key = new.get_json()["api_key"]
    updated = api(client, "PATCH", f"environments/{key}/", key=org_key,
                  json={"name": "Quality", "minimum_change_request_approvals": 2})
    assert updated.get_json()["name"] == "Quality"
    assert updated.get_json()["minimum_change_request_approvals"] == 2
    assert api(client, "GET", f"environments/{key}/", key=org_key).get_json()["name"] == "Quality"
    duplicate = api(client, "PATCH", f"environments/{key}/", key=org_key, json={"name": "Staging"})
    assert duplicate.status_code == 422 and duplicate.get_json()["name"]
    assert api(client, "GET", "environments/", key=org_key).status_code == 422


def test_pagination(client, make, project, org_key):
    for n in range(5):
        make.feature(project, f"f{n}")
    page = api(client, "GET", f"projects/{project.id}/features/?page_size=2",
               key=org_key).get_json()
    assert page["count"] == 5 and len(page["results"]) == 2 and page["previous"] is None
    assert "page=2" in page["next"]
    last = api(client, "GET", f"projects/{project.id}/features/?page_size=2&page=3",
               key=org_key).get_json()
    assert last["next"] is None and "page=2" in last["previous"]
    assert [f["name"] for f in last["results"]] == ["f4"]
    bad = api(client, "GET", f"projects/{project.id}/features/?page=0", key=org_key)
    assert bad.status_code == 422


def test_features_and_segments(client, project, org_key):
    created = api(client, "POST", f"projects/{project.id}/features/", key=org_key,
                  json={"name": "dark_mode", "initial_value": 3, "default_enabled": True})
    assert created.status_code == 201
    feature = created.get_json()
    assert feature["value_type"] == "integer" and feature["initial_value"] == 3
    assert api(client, "GET", f"projects/{project.id}/features/{feature['id']}/",
               key=org_key).get_json()["name"] == "dark_mode"
    taken = api(client, "POST", f"projects/{project.id}/features/", key=org_key,
                json={"name": "dark_mode"})
    assert taken.status_code == 422 and taken.get_json()["name"]
    rules = [{"type": "ALL", "rules": [{"type": "ANY", "rules": [], "conditions": [
        {"property": "country", "operator": "IN", "value": "FR,DE"}]}], "conditions": []}]
    segment = api(client, "POST", f"projects/{project.id}/segments/", key=org_key,
                  json={"name": "Europe", "rules": rules})
    assert segment.status_code == 201 and segment.get_json()["rules"][0]["rules"][0][
        "conditions"][0]["property"] == "country"
    bad = api(client, "POST", f"projects/{project.id}/segments/", key=org_key,
              json={"name": "Bad", "rules": [{"type": "SOME", "conditions": [
                  {"property": "x", "operator": "LIKE"}]}]})
    assert bad.status_code == 422 and bad.get_json()["rules"]


def test_feature_state_patch_is_audited_and_seen_by_sdk(client, project, platform, org_key):
    env = platform.development
    state_id = api(
        client, "GET", f"environments/{env.client_key}/featurestates/?feature={platform.limit.id}",
        key=org_key).get_json()["results"][0]["id"]
    response = api(client, "PATCH", f"environments/{env.client_key}/featurestates/{state_id}/",
                   key=org_key, json={"enabled": False, "feature_state_value": 42})
    assert response.status_code == 200
    assert response.get_json()["feature_state_value"] == 42
    assert response.get_json()["enabled"] is False
    flag = client.get("/api/v1/flags/?feature=upload_limit",
                      headers={"X-Environment-Key": env.client_key}).get_json()
    assert (flag["enabled"], flag["feature_state_value"]) == (False, 42)
    entry = db.session.scalars(select(AuditEntry).where(
        AuditEntry.event_type == "FEATURE_STATE_UPDATED")).all()[-1]
    assert entry.actor_type == "api_key" and entry.actor_label == "API key CI"
    assert org_key not in str(entry.before) + str(entry.after) + entry.message
    wrong = api(client, "PATCH", f"environments/{env.client_key}/featurestates/{state_id}/",
                key=org_key, json={"feature_state_value": "lots"})
    assert wrong.status_code == 422 and wrong.get_json()["feature_state_value"]
    assert api(client, "PATCH", f"environments/{env.client_key}/featurestates/{state_id}/",
               key=org_key, data="nope").status_code == 400
    other_env = api(client, "GET", f"environments/{platform.production.client_key}/featurestates/"
                    f"{state_id}/", key=org_key)
    assert other_env.status_code == 404


def test_changes_refused_while_the_flag_is_in_a_pipeline(client, project, platform, org_key):
    pipeline = ReleasePipeline(project_id=project.id, name="Rollout", status="published")
    db.session.add(pipeline)
    db.session.flush()
    db.session.add(PipelineRun(project_id=project.id, pipeline_id=pipeline.id,
                               feature_id=platform.checkout.id,
                               status="waiting"))
    db.session.commit()
    env = platform.development.client_key
    states = api(client, "GET", f"environments/{env}/featurestates/?feature={platform.checkout.id}",
                 key=org_key).get_json()["results"]
    refused = api(client, "PATCH", f"environments/{env}/featurestates/{states[0]['id']}/",
                  key=org_key, json={"enabled": True})
    assert refused.status_code == 409 and "Rollout" in refused.get_json()["detail"]
    overrides = api(client, "GET", f"environments/{env}/segment-overrides/?feature="
                    f"{platform.checkout.id}", key=org_key).get_json()["results"]
    assert api(client, "DELETE", f"environments/{env}/segment-overrides/{overrides[0]['id']}/",
               key=org_key).status_code == 409


def test_segment_overrides(client, make, project, platform, org_key):
    env = platform.production.client_key
    created = api(client, "POST", f"environments/{env}/segment-overrides/", key=org_key,
                  json={"feature": platform.banner.id, "segment": platform.pro.id,
                        "enabled": True, "feature_state_value": "pro banner"})
    assert created.status_code == 201
    override = created.get_json()
    again = api(client, "POST", f"environments/{env}/segment-overrides/", key=org_key,
                json={"feature": platform.banner.id, "segment": platform.pro.id})
    assert again.status_code == 422 and again.get_json()["segment"]
    identity = client.post("/api/v1/identities/", headers={"X-Environment-Key": env}, json={
        "identifier": "ada", "traits": [{"trait_key": "plan", "trait_value": "pro"}]}).get_json()
    banner = next(f for f in identity["flags"] if f["feature"]["name"] == "banner_text")
    assert banner["feature_state_value"] == "pro banner"
    changed = api(client, "PATCH", f"environments/{env}/segment-overrides/{override['id']}/",
                  key=org_key, json={"feature_state_value": "changed", "priority": 5})
    assert changed.get_json()["feature_state_value"] == "changed"
    assert changed.get_json()["priority"] == 5
    assert api(client, "DELETE", f"environments/{env}/segment-overrides/{override['id']}/",
               key=org_key).status_code == 204
    assert api(client, "GET", f"environments/{env}/segment-overrides/", key=org_key).get_json()[
        "count"] == 0
    other = make.project("Other")
    foreign = make.segment(other, "Foreign")
    foreign_override = api(client, "POST", f"environments/{env}/segment-overrides/", key=org_key,
                           json={"feature": platform.banner.id, "segment": foreign.id})
    assert foreign_override.status_code == 422 and foreign_override.get_json()["segment"]
    events = db.session.scalars(select(AuditEntry.event_type).where(
        AuditEntry.actor_type == "api_key")).all()
    assert {"SEGMENT_OVERRIDE_CREATED", "SEGMENT_OVERRIDE_UPDATED",
            "SEGMENT_OVERRIDE_DELETED"} <= set(events)


def test_feature_and_segment_edit_and_delete(client, make, project, platform, org_key):
    feature = make.feature(project, "old_flag")
    path = f"projects/{project.id}/features/{feature.id}/"
    edited = api(client, "PATCH", path, key=org_key,
                 json={"description": "Remove after launch", "tags": ["cleanup"]})
    assert edited.status_code == 200 and edited.get_json()["tags"] == ["cleanup"]
    assert api(client, "DELETE", path, key=org_key).status_code == 204
    assert api(client, "GET", path, key=org_key).status_code == 404
    seg_path = f"projects/{project.id}/segments/{platform.pro.id}/"
    renamed = api(client, "PATCH", seg_path, key=org_key, json={"name": "Pro plan"})
    assert renamed.get_json()["name"] == "Pro plan"
    assert renamed.get_json()["rules"][0]["conditions"][0]["value"] == "pro"
    assert api(client, "DELETE", seg_path, key=org_key).status_code == 204
    assert api(client, "GET", seg_path, key=org_key).status_code == 404
    identity = client.post("/api/v1/identities/", json={"identifier": "ada", "traits": [
        {"trait_key": "plan", "trait_value": "pro"}]},
        headers={"X-Environment-Key": platform.development.client_key}).get_json()
    checkout = next(f for f in identity["flags"] if f["feature"]["name"] == "new_checkout")
    assert checkout["enabled"] is False  # the override went with the segment
