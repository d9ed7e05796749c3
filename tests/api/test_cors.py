"""Cross-origin reads: the SDK API answers any origin, the admin API only configured ones."""

import pytest

from webapp import create_app

ORIGIN = "http://shop.example"
SDK_PATHS = ["/api/v1/flags/", "/api/v1/identities/", "/api/v1/environment-document/"]


def _preflight(client, path, method="GET", headers="x-environment-key,flagsmith-sdk-user-agent"):
    return client.options(path, headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": headers})


@pytest.mark.parametrize("path", SDK_PATHS)
def test_sdk_preflight_allows_any_origin_and_the_sdk_headers(client, path):
    response = _preflight(client, path, method="POST" if "identities" in path else "GET")
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    allowed = {name.strip().lower()
               for name in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"x-environment-key", "flagsmith-sdk-user-agent", "content-type",
            "flagsmith-application-name"} <= allowed
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert int(response.headers["Access-Control-Max-Age"]) > 0


def test_sdk_answers_and_errors_carry_the_cors_header(client, platform):
    key = platform.development.client_key
    ok = client.get("/api/v1/flags/", headers={"Origin": ORIGIN, "X-Environment-Key": key})
    assert ok.status_code == 200 and ok.headers["Access-Control-Allow-Origin"] == "*"
    # The JS SDK reads the document's time to skip realtime events it already has.
    assert "X-Flagsmith-Document-Updated-At" in ok.headers["Access-Control-Expose-Headers"]
    assert float(ok.headers["X-Flagsmith-Document-Updated-At"]) > 1_600_000_000
    refused = client.get("/api/v1/flags/", headers={"Origin": ORIGIN, "X-Environment-Key": "x"})
    assert refused.status_code == 401 and refused.headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize("path", ["/api/v1/projects/", "/api/v1/auth/login/",
                                  "/api/v1/organisations/"])
def test_admin_api_stays_closed_to_other_origins(client, path):
    response = _preflight(client, path, headers="authorization")
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Headers" not in response.headers


def test_admin_api_opens_to_configured_origins(app_config):
    app = create_app({**app_config, "CORS_ADMIN_ORIGINS": f"{ORIGIN}, http://ops.example"})
    client = app.test_client()
    allowed = _preflight(client, "/api/v1/projects/", headers="authorization")
    assert allowed.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Authorization" in allowed.headers["Access-Control-Allow-Headers"]
    assert "Origin" in allowed.headers["Vary"]
    other = client.get("/api/v1/projects/", headers={"Origin": "http://evil.example"})
    assert other.status_code == 401 and "Access-Control-Allow-Origin" not in other.headers
