"""Health checks in the builder: added, edited and removed like actions on a draft; 422 beside
the field; published pipelines and viewers refused; publish lists a bad check."""

import pytest
from sqlalchemy import select

from webapp.extensions import db
from webapp.models import AuditEntry, PipelineStage, StageHealthCheck
from webapp.services.actors import SYSTEM
from webapp.services.pipelines import health_checks

PROM = {"kind": "PROMETHEUS", "name": "errors", "query": 'errors{flag="{{ flag }}"}',
        "comparison": "<", "threshold": "0.05", "interval_seconds": "15",
        "failures_to_trip": "2"}


def url(project, pipeline, tail=""):
    return f"/projects/{project.id}/pipelines/{pipeline.id}{tail}"


def checks():
    db.session.expire_all()
    return db.session.scalars(select(StageHealthCheck).order_by(StageHealthCheck.id)).all()


def test_add_edit_remove_a_check_and_choose_what_unhealthy_does(hx, login, editor, project,
                                                                build):
    pipeline = build.three_stages(project)
    stage = pipeline.stages[1]
    version = pipeline.version
    login(hx, editor)
    page = hx.get(url(project, pipeline, f"?open=new-check-{stage.id}")).get_data(as_text=True)
    assert "New health check for stage 2" in page
    added = hx.post(url(project, pipeline, f"/stages/{stage.id}/checks"),
                    data={**PROM, "version": version})
    assert added.status_code == 200 and b"<html" not in added.data
    (check,) = checks()
    assert (check.kind, check.threshold, check.interval_seconds, check.failures_to_trip) == (
        "PROMETHEUS", 0.05, 15, 2)
    html = added.get_data(as_text=True)
    assert "the wait is the bake" in html and "When unhealthy" in html
    version += 1
    changed = hx.post(url(project, pipeline, f"/checks/{check.id}"), data={
        "kind": "ALERT", "selector": "severity=page, team=web", "interval_seconds": "5",
        "failures_to_trip": "1", "version": version})
    assert changed.status_code == 200
    (check,) = checks()
    assert (check.kind, check.selector, check.query) == (
        "ALERT", {"severity": "page", "team": "web"}, None)
    version += 1
    assert hx.post(url(project, pipeline, f"/stages/{stage.id}/on-unhealthy"),
                   data={"on_unhealthy": "ROLL_BACK", "version": version}).status_code == 200
    assert db.session.get(PipelineStage, stage.id).on_unhealthy == "ROLL_BACK"
    version += 1
    assert hx.post(url(project, pipeline, f"/checks/{check.id}/delete"),
                   data={"version": version}).status_code == 200
    assert checks() == []
    entries = db.session.scalars(select(AuditEntry.message).where(
        AuditEntry.event_type == "RELEASE_PIPELINE_UPDATED")).all()
    assert any("health check 1 (Prometheus query) added" in m for m in entries)
    assert any("health check 1 removed" in m for m in entries)


@pytest.mark.parametrize("data, field, message", [
    ({**PROM, "query": ""}, "query", "Enter a PromQL query."),
    ({**PROM, "threshold": "lots"}, "threshold", "Enter a number."),
    ({**PROM, "interval_seconds": "0"}, "interval_seconds", "Between 1 and 3600."),
    ({"kind": "ALERT", "selector": "severity"}, "selector", "name=value"),
])
def test_bad_check_is_422_beside_the_field(hx, login, editor, project, build, data, field,
                                           message):
    pipeline = build.three_stages(project)
    stage = pipeline.stages[0]
    login(hx, editor)
    response = hx.post(url(project, pipeline, f"/stages/{stage.id}/checks"),
                       data={**data, "version": pipeline.version})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert f'id="new-check-{stage.id}-{field}"' in html and message in html
    assert 'aria-invalid="true"' in html
    assert checks() == []


def test_viewers_and_published_pipelines_are_refused(client, hx, login, viewer, editor, project,
                                                     build):
    draft = build.three_stages(project)
    login(client, viewer)
    assert client.post(url(project, draft, f"/stages/{draft.stages[0].id}/checks"),
                       data={**PROM, "version": draft.version}).status_code == 403
    published = build.three_stages(project, publish=True)
    login(hx, editor)
    refused = hx.post(url(project, published, f"/stages/{published.stages[0].id}/checks"),
                      data={**PROM, "version": published.version})
    assert refused.status_code == 409
    assert checks() == []


def test_publish_lists_a_bad_stored_check(project, build):
    pipeline = build.three_stages(project)
    check = health_checks.add_check(pipeline, pipeline.version, pipeline.stages[0].id, PROM,
                                    SYSTEM)
    db.session.execute(db.update(StageHealthCheck).where(StageHealthCheck.id == check.id)
                       .values(comparison="~"))
    db.session.commit()
    from webapp.services.pipelines import catalog, readiness

    problems = readiness.publish_problems(catalog.get_pipeline(project.id, pipeline.id))
    assert problems == ["Stage 1 (Development), health check 1: Choose one of <, <=, >, >=, "
                        "==, !=."]
