"""Property-based run of the OpenAPI document against the app (schemathesis): no 5xx, and
every answer matches the documented status codes, content type and schema."""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


def _real_objects(platform, make):
    """One real object for every id a path can name, so that handlers run past their 404s:
    a draft pipeline, an open change request (Production needs an approval), a feature state
    and a segment override."""
    from sqlalchemy import select

    from webapp.extensions import db
    from webapp.models import FeatureState, SegmentOverride
    from webapp.services.actors import SYSTEM, Actor
    from webapp.services.change_requests import opening
    from webapp.services.pipelines import builder

    pipeline = builder.create_pipeline(platform.project, "Fuzzed", SYSTEM)
    builder.add_stage(pipeline, pipeline.version, SYSTEM, name="Dev",
                        environment_id=platform.development.id)
    platform.production.minimum_change_request_approvals = 1
    db.session.commit()
    editor = make.user(project=platform.project, role="editor")
    request = opening.set_state(platform.banner, platform.production.id,
                                        Actor.for_user(editor), enabled=False)
    state = db.session.scalar(select(FeatureState.id).where(
        FeatureState.environment_id == platform.development.id))
    override = db.session.scalar(select(SegmentOverride.id).where(
        SegmentOverride.environment_id == platform.development.id))
    from datetime import timedelta

    from webapp.clock import now
    from webapp.services.runs import calendar

    freeze, _ = calendar.create_freeze(
        SYSTEM, organisation_id=platform.project.organisation_id, project_id=platform.project.id,
        starts_at=now() + timedelta(days=30), ends_at=now() + timedelta(days=31),
        reason="Fuzzed freeze")
    return {"api_key": platform.development.client_key, "project_id": platform.project.id,
            "organisation_id": platform.project.organisation_id, "freeze_id": freeze.id,
            "pipeline_id": pipeline.id, "request_id": request.id,
            "feature_id": platform.checkout.id, "segment_id": platform.pro.id,
            "state_id": state, "override_id": override,
            # The same objects as query parameters and body fields name them.
            "project": platform.project.id, "feature": platform.checkout.id,
            "segment": platform.pro.id}


def _aim(values, real):
    """Point the ids a generated case names (path, query or body) at real objects."""
    if isinstance(values, dict):
        for name in values:
            if name in real:
                values[name] = real[name]


@pytest.mark.slow
def test_api_conforms_to_its_openapi_document(app, platform, org_key, make):
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    headers = {"Authorization": f"Api-Key {org_key}",
               "X-Environment-Key": platform.development.server_key}
    real = _real_objects(platform, make)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 40
    # Deletions last, so that every other operation still finds the objects.
    operations.sort(key=lambda operation: operation.method.upper() == "DELETE")

    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=5, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case):
            _aim(case.path_parameters, real)
            _aim(case.query, real)
            _aim(case.body, real)
            case.call_and_validate(headers=headers, checks=CHECKS)

        check()


def test_openapi_document_lists_every_api_route(client, app):
    document = client.get("/api/v1/openapi.json").get_json()
    assert document["openapi"].startswith("3.")
    documented = {(method.upper(), path) for path, ops in document["paths"].items()
                  for method in ops}
    routes = {(method, rule.rule.replace("<int:", "{").replace("<", "{").replace(">", "}"))
              for rule in app.url_map.iter_rules() if rule.endpoint.startswith("api.")
              and rule.endpoint not in ("api.openapi_json", "api.docs")
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert routes == documented


def test_docs_page_lists_the_operations(client):
    page = client.get("/api/v1/docs/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "/api/v1/flags/" in html and "/api/v1/environments/{api_key}/featurestates/" in html
    assert "<script" not in html.split("</head>")[1]
