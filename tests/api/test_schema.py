"""Property-based run of the OpenAPI document against the app (schemathesis): no 5xx, and
every answer matches the documented status codes, content type and schema."""

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


def test_api_conforms_to_its_openapi_document(app, platform, org_key):
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    headers = {"Authorization": f"Api-Key {org_key}",
               "X-Environment-Key": platform.development.server_key}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20

    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=5, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case):
            # Aim cases at objects that exist, so that handlers run past their 404s.
            if "api_key" in (case.path_parameters or {}):
                case.path_parameters["api_key"] = platform.development.client_key
            if "project_id" in (case.path_parameters or {}):
                case.path_parameters["project_id"] = platform.project.id
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
