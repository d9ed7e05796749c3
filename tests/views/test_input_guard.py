"""Text with NUL characters is refused up front (PostgreSQL cannot store it), on every path."""

import pytest


@pytest.mark.parametrize(("send", "is_api"), [
    (lambda c: c.get("/api/v1/flags/?feature=a%00b"), True),
    (lambda c: c.post("/api/v1/identities/", json={"identifier": "a\x00b"}), True),
    (lambda c: c.post("/api/v1/identities/", json={"traits": [{"trait_key": "k\x00"}]}), True),
    (lambda c: c.post("/login", data={"email": "x\x00@example.com", "password": "p"}), False),
])
def test_nul_is_a_clear_400(client, send, is_api):
    response = send(client)
    assert response.status_code == 400
    if is_api:
        assert "NUL" in response.get_json()["detail"]
    else:
        assert "NUL" in response.get_data(as_text=True)


def test_ordinary_text_passes(client):
    assert client.get("/api/v1/flags/?feature=ab").status_code == 401  # on to the key check
