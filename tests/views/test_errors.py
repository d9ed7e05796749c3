"""Error answers keep what the HTTP error says about itself."""


def test_method_not_allowed_names_the_allowed_methods(client):
    api = client.delete("/api/v1/flags/")
    assert api.status_code == 405
    assert "GET" in api.headers["Allow"]
    assert api.get_json()["detail"]

    page = client.put("/login")
    assert page.status_code == 405
    assert set(page.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
    assert "text/html" in page.headers["Content-Type"]
