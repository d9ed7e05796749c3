"""Text with NUL characters is refused up front (PostgreSQL cannot store it), on every path."""

import json

import pytest

from webapp import input_guard


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


@pytest.mark.parametrize("body", [
    b'{"identifier": "ada", "traits": [{"trait_key": "plan", "trait_value": "pro"}]}',
    '{"identifier": "ad\u00e9"}'.encode(),  # é as text: nothing to walk
    b'{"identifier": "ad\\u00e9"}',  # an escape: walked, fine
    b'{"identifier": "a\\u0000b"}',
    b'{"identifier": "a\\ud800b"}',
    b'{"identifier": "a\\uDFFFb"}',
    b'{"identifier": "a\xed\xa0\x80b"}',  # a lone surrogate in "UTF-8" (json.loads takes it)
    '{"identifier": "a\\u0000b"}'.encode("utf-16"),  # no b"\\u" in these bytes
    '{"identifier": "a\\ud800b"}'.encode("utf-32-le"),
    '{"identifier": "ada"}'.encode("utf-16"),
    b'{"a": ' + b"[" * 511 + b"]" * 511 + b"}",  # 512 deep: taken
    b'{"a": ' + b"[" * 512 + b"]" * 512 + b"}",  # 513 deep: refused
    b'{"a": "' + b"[" * 600 + b'"}',  # brackets in a string: walked, fine
])
def test_a_json_body_read_off_its_bytes_is_refused_as_when_walked(body):
    payload = json.loads(body)
    assert input_guard.json_body_refusal(body, payload) == input_guard.json_refusal(payload)


def test_ordinary_text_passes(client):
    assert client.get("/api/v1/flags/?feature=ab").status_code == 401  # on to the key check


@pytest.fixture
def board_pipeline(project):
    from webapp.extensions import db
    from webapp.models import ReleasePipeline

    pipeline = ReleasePipeline(project_id=project.id, name="Release", status="published")
    db.session.add(pipeline)
    db.session.commit()
    return pipeline


@pytest.mark.parametrize("query", ["run=%C2%B2", "s0=%C2%B2", "launched=%D9%A1", "run=-1",
                                   "s1=" + "9" * 30])
def test_board_numbers_not_in_ascii_digits_are_a_clear_400(client, login, viewer, project,
                                                            board_pipeline, query):
    login(client, viewer)
    response = client.get(f"/projects/{project.id}/pipelines/{board_pipeline.id}/board",
                          query_string=query)
    assert response.status_code == 400
    assert "takes a whole number in digits 0-9" in response.get_data(as_text=True)


def test_board_numbers_in_digits_are_taken(client, login, viewer, project, board_pipeline):
    login(client, viewer)
    response = client.get(f"/projects/{project.id}/pipelines/{board_pipeline.id}/board",
                          query_string="run=12&s0=50&q=")
    assert response.status_code == 200


def test_segment_rules_nested_200_deep_in_the_form_are_a_422(hx, login, editor, project):
    from sqlalchemy import func, select

    from webapp.extensions import db
    from webapp.models import Segment

    fields = {"name": "Deep"}
    for depth in range(1, 201):
        path = ".".join(["r0"] * depth)
        fields.update({f"{path}.type": "ALL", f"{path}.c0.property": "plan",
                       f"{path}.c0.operator": "EQUAL", f"{path}.c0.value": "pro"})
    login(hx, editor)
    response = hx.post(f"/projects/{project.id}/segments/new", data=fields)
    assert response.status_code == 422
    assert "Rules nest at most 4 levels deep." in response.get_data(as_text=True)
    assert db.session.scalar(select(func.count(Segment.id))) == 0


@pytest.mark.parametrize("depth", [900, 100_000])
def test_deeply_nested_json_to_a_dashboard_form_is_a_clear_400(client, login, editor, project,
                                                                 depth):
    login(client, editor)
    response = client.post(f"/projects/{project.id}/flags", data="[" * depth + "]" * depth,
                           content_type="application/json")
    assert response.status_code == 400
    assert "nests deeper than 512 levels" in response.get_data(as_text=True)


@pytest.mark.parametrize("path", ["/projects/99999999999999999999",
                                  "/projects/{project}/flags/9223372036854775808"])
def test_ids_too_large_for_a_column_are_404(client, login, viewer, project, path):
    login(client, viewer)
    assert client.get(path.format(project=project.id)).status_code == 404
