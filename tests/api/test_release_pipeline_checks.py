"""Health checks in the release-pipeline admin API: written and read with their stage, under the
draft rules (422 by path, nothing saved; published pipelines refuse), cloned, audited."""

import pytest
from sqlalchemy import select

from webapp.extensions import db
from webapp.models import StageHealthCheck

from .release_pipeline_support import call, create, pipelines_path, published, stage, toggle

PROM = {"kind": "PROMETHEUS", "name": "errors", "query": 'rate(errors{flag="{{ flag }}"}[1m])',
        "comparison": "<", "threshold": 0.05, "interval_seconds": 10, "failures_to_trip": 3}
AT_LEAST_1 = "greater than or equal to 1"
ALERT = {"kind": "ALERT", "name": "pages", "selector": {"severity": "page"}}


def guarded(platform, checks=(PROM, ALERT), on_unhealthy="ROLL_BACK"):
    return {"name": "Guarded", "stages": [
        {**stage(platform.development, "Dev", actions=[toggle(True)]),
         "health_checks": list(checks), "on_unhealthy": on_unhealthy}]}


def test_checks_are_written_and_read_with_the_stage(client, project, platform, org_key):
    created = create(client, project, org_key, guarded(platform))
    (dev,) = created["stages"]
    assert dev["on_unhealthy"] == "ROLL_BACK"
    assert dev["health_checks"] == [
        {**PROM}, {"kind": "ALERT", "name": "pages", "selector": {"severity": "page"},
                   "interval_seconds": 30, "failures_to_trip": 1}]
    read = call(client, "GET", pipelines_path(project, created["id"]), key=org_key).get_json()
    assert read == created
    replaced = call(client, "PUT", pipelines_path(project, created["id"]), key=org_key,
                    json={**guarded(platform, checks=[ALERT], on_unhealthy="HOLD"),
                          "version": created["version"]})
    assert replaced.status_code == 200, replaced.get_json()
    (dev,) = replaced.get_json()["stages"]
    assert dev["on_unhealthy"] == "HOLD" and [c["kind"] for c in dev["health_checks"]] == [
        "ALERT"]
    assert db.session.scalar(select(db.func.count()).select_from(StageHealthCheck)) == 1


def test_a_stage_without_checks_reads_empty(client, project, platform, org_key):
    created = create(client, project, org_key, {"name": "Plain", "stages": [
        stage(platform.development, "Dev", actions=[toggle(True)])]})
    assert created["stages"][0]["health_checks"] == []
    assert created["stages"][0]["on_unhealthy"] == "HOLD"


@pytest.mark.parametrize("check, path, message", [
    ({"kind": "NOPE"}, "stages[0].health_checks[0].kind", "Must be one of"),
    ({"kind": "PROMETHEUS", "comparison": "<", "threshold": 1},
     "stages[0].health_checks[0].query", "PromQL"),
    ({**PROM, "comparison": "~"}, "stages[0].health_checks[0].comparison", "Must be one of"),
    ({**PROM, "threshold": None}, "stages[0].health_checks[0].threshold", "number"),
    ({**PROM, "interval_seconds": 0}, "stages[0].health_checks[0].interval_seconds", AT_LEAST_1),
    ({**PROM, "failures_to_trip": 0}, "stages[0].health_checks[0].failures_to_trip", AT_LEAST_1),
    ({**ALERT, "selector": {"bad name": "x"}}, "stages[0].health_checks[0].selector",
     "label name"),
])
def test_bad_checks_are_422_by_path_and_save_nothing(client, project, platform, org_key, check,
                                                     path, message):
    response = call(client, "POST", pipelines_path(project), key=org_key,
                    json=guarded(platform, checks=[check]))
    assert response.status_code == 422, response.get_json()
    errors = response.get_json()["errors"] if "errors" in response.get_json() \
        else response.get_json()
    found = {k: v for k, v in errors.items() if k == path}
    assert found and message.lower() in " ".join(found[path]).lower(), errors
    assert db.session.scalar(select(db.func.count()).select_from(StageHealthCheck)) == 0


def test_published_pipeline_keeps_its_checks_and_clones_them(client, project, platform,
                                                            org_key):
    pipeline = published(client, project, org_key, guarded(platform))
    refused = call(client, "PATCH", pipelines_path(project, pipeline["id"]), key=org_key,
                   json={"stages": guarded(platform, checks=[])["stages"]})
    assert refused.status_code == 409
    clone = call(client, "POST", pipelines_path(project, pipeline["id"], "clone/"),
                 key=org_key, json={"name": "Copy"})
    assert clone.status_code in (200, 201), clone.get_json()
    copy = call(client, "GET", pipelines_path(project, clone.get_json()["id"]),
                key=org_key).get_json()
    assert copy["stages"][0]["health_checks"] == pipeline["stages"][0]["health_checks"]
    assert copy["stages"][0]["on_unhealthy"] == "ROLL_BACK"
