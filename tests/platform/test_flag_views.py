"""The flags table and a flag's page, as a user meets them: pages, fragments, errors, roles."""

import pytest
from sqlalchemy import select

from tests.platform.conftest import fresh
from webapp.extensions import db
from webapp.models import AuditEntry, Feature, FeatureState, SegmentOverride


def scalar(statement):
    fresh()
    return db.session.scalar(statement)


def state_of(feature, env):
    return scalar(select(FeatureState).where(
        FeatureState.feature_id == feature.id, FeatureState.environment_id == env.id))


def audit_count():
    return scalar(select(db.func.count(AuditEntry.id)))


def test_flags_page_has_a_column_per_environment_in_order(client, login, viewer, project, flag):
    login(client, viewer)
    response = client.get(f"/projects/{project.id}/flags")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert page.index(">Development<") < page.index(">Staging<") < page.index(">Production<")
    assert "checkout" in page
    # viewers see states, no controls
    assert 'role="switch"' not in page and "New flag" not in page
    assert "checkout in Staging: off" in page


def test_the_flags_table_shows_a_hundred_flags_a_page_and_finds_them_by_name(
        client, hx, login, viewer, project, make):
    for n in range(150):
        make.feature(project, f"flag_{n:03d}")
    make.feature(project, "Dark_Mode")
    login(client, viewer)
    first = client.get(f"/projects/{project.id}/flags").text
    assert first.count('class="flag-name"') == 100
    assert "Flags 1–100 of 151" in first and "Page 1 of 2" in first
    assert "Dark_Mode" in first and "flag_098" in first and "flag_099" not in first
    assert 'rel="prev"' not in first and 'rel="next"' in first
    second = client.get(f"/projects/{project.id}/flags?page=2").text
    assert "Flags 101–151 of 151" in second and second.count('class="flag-name"') == 51
    assert "flag_099" in second and "flag_149" in second and "Dark_Mode" not in second
    assert 'rel="next"' not in second
    beyond = client.get(f"/projects/{project.id}/flags?page=99").text  # clamped, not empty
    assert "Flags 101–151 of 151" in beyond
    login(hx, viewer)
    found = hx.get(f"/projects/{project.id}/flags?q=dark").text
    assert found.lstrip().startswith('<section id="flag_table"')
    assert "Dark_Mode" in found and "flag_000" not in found and "1 flag matching “dark”" in found
    missing = client.get(f"/projects/{project.id}/flags?q=50%25").text  # % is a letter here
    assert "No flag’s name contains “50%”" in missing


def test_project_home_lands_on_the_flags_page(client, login, editor, project):
    login(client, editor)
    response = client.get(f"/projects/{project.id}")
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/projects/{project.id}/flags")


def test_toggle_swaps_only_the_row(hx, login, editor, project, flag, staging):
    login(hx, editor)
    response = hx.post(f"/projects/{project.id}/flags/{flag.id}/environments/{staging.id}/toggle",
                       data={"enabled": "true"})
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert "<html" not in body and "<table" not in body
    assert body.strip().startswith(f'<tr id="flag-{flag.id}">')
    assert body.count('aria-checked="true"') == 1
    assert "HX-Request" in response.headers["Vary"]
    assert state_of(flag, staging).enabled is True


def test_toggle_without_javascript_redirects_back(client, login, editor, project, flag, staging):
    login(client, editor)
    response = client.post(
        f"/projects/{project.id}/flags/{flag.id}/environments/{staging.id}/toggle",
        data={"enabled": "true"})
    assert response.status_code == 303
    assert f"/projects/{project.id}/flags#flag-{flag.id}" in response.headers["Location"]
    assert state_of(flag, staging).enabled is True


def test_toggle_asks_for_a_state_so_a_repeat_changes_nothing_more(
    client, login, editor, project, flag, staging
):
    login(client, editor)
    url = f"/projects/{project.id}/flags/{flag.id}/environments/{staging.id}/toggle"
    client.post(url, data={"enabled": "true"})
    client.post(url, data={"enabled": "true"})
    assert state_of(flag, staging).enabled is True


@pytest.mark.parametrize("who", ["viewer", "anonymous", "stranger", "csrf"])
def test_toggle_refusals_change_nothing(client, login, make, request, project, flag, staging, who):
    url = f"/projects/{project.id}/flags/{flag.id}/environments/{staging.id}/toggle"
    expected = {"viewer": 403, "anonymous": 302, "stranger": 404, "csrf": 400}[who]
    if who == "viewer":
        login(client, request.getfixturevalue("viewer"))
    elif who == "stranger":
        login(client, make.user(project=make.project("Elsewhere"), role="admin"))
    elif who == "csrf":
        login(client, request.getfixturevalue("editor"))
    before = audit_count()
    response = client.post(url, data={"enabled": "true"}, csrf=(who != "csrf"))
    assert response.status_code == expected
    assert state_of(flag, staging).enabled is False
    assert audit_count() == before


def test_environment_or_flag_of_another_project_is_404(client, login, make, editor, project, flag):
    other = make.project("Other")
    other_env = make.environments(other)[0]
    other_flag = make.feature(other, "theirs")
    login(client, editor)
    assert client.post(f"/projects/{project.id}/flags/{flag.id}/environments/{other_env.id}/toggle",
                       data={"enabled": "true"}).status_code == 404
    assert client.get(f"/projects/{project.id}/flags/{other_flag.id}").status_code == 404
    assert client.get(f"/projects/{other.id}/flags").status_code == 404


@pytest.mark.parametrize(("data", "message"), [
    ({"name": "", "value_type": "none"}, "A name is required."),
    ({"name": "x" * 256, "value_type": "none"}, "At most 255 characters."),
    ({"name": "checkout", "value_type": "none"},
     "A flag with this name already exists in this project."),
    ({"name": "limit", "value_type": "integer", "default_value": "lots"},
     "Enter a whole number, like 42."),
    ({"name": "ok", "value_type": "none", "default_value": "1"}, "This flag takes no value."),
])
def test_create_flag_shows_the_message_beside_the_field(
    hx, login, editor, project, flag, data, message
):
    login(hx, editor)
    response = hx.post(f"/projects/{project.id}/flags", data=data)
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert message in body and 'aria-invalid="true"' in body
    assert body.strip().startswith('<form id="flag_form"') and "<html" not in body
    assert scalar(select(db.func.count(Feature.id))) == 1


def test_create_flag_then_its_name_shows_escaped(hx, client, login, editor, project, envs):
    login(hx, editor)
    response = hx.post(f"/projects/{project.id}/flags",
                       data={"name": "<b>bold</b>", "value_type": "string",
                             "default_value": "<i>hi</i>", "default_enabled": "y"})
    assert response.status_code == 200 and "HX-Redirect" in response.headers
    feature = scalar(select(Feature))
    assert feature.default_enabled is True and feature.default_value == "<i>hi</i>"
    login(client, editor)
    for url in (f"/projects/{project.id}/flags", f"/projects/{project.id}/flags/{feature.id}"):
        page = client.get(url).get_data(as_text=True)
        assert "&lt;b&gt;bold&lt;/b&gt;" in page and "<b>bold</b>" not in page
        assert "<i>hi</i>" not in page


def test_viewer_cannot_create(client, login, viewer, project):
    login(client, viewer)
    assert client.post(f"/projects/{project.id}/flags", data={"name": "x"}).status_code == 403
    assert scalar(select(Feature.id)) is None


def test_flag_page_full_and_fragment(app, client, hx, login, editor, project, flag, staging):
    login(client, editor)
    page = client.get(f"/projects/{project.id}/flags/{flag.id}").get_data(as_text=True)
    assert "<html" in page and 'id="flag_states"' in page and 'id="flag_history"' in page
    assert "FEATURE_CREATED" in page
    assert ('id="pipeline_panel"' in page) == ("runs.flag_panel" in app.view_functions)
    login(hx, editor)
    response = hx.get(f"/projects/{project.id}/flags/{flag.id}")
    assert "<html" not in response.get_data(as_text=True)
    assert "HX-Request" in response.headers["Vary"]


def test_toggle_on_the_flag_page_answers_its_environments_and_history_refreshes(
    hx, login, editor, project, flag, staging
):
    login(hx, editor)
    response = hx.post(f"/projects/{project.id}/flags/{flag.id}/environments/{staging.id}/toggle",
                       data={"enabled": "true", "from": "detail"})
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert body.strip().startswith('<section id="flag_states"')
    assert response.headers["HX-Trigger"] == "flag-changed"
    history = hx.get(f"/projects/{project.id}/flags/{flag.id}").get_data(as_text=True)
    assert "checkout enabled for everyone in Staging" in history  # the sentence, in words
    assert "Flag changed" in history


def test_value_edit_422_beside_the_field_and_nothing_changes(
    hx, login, editor, project, number_flag, staging
):
    login(hx, editor)
    url = f"/projects/{project.id}/flags/{number_flag.id}/environments/{staging.id}/value"
    response = hx.post(url, data={"value": "ten"})
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert f'id="value-{staging.id}-error"' in body and "Enter a whole number, like 42." in body
    assert 'value="ten"' in body  # what the user typed stays
    assert state_of(number_flag, staging).value == 10
    assert hx.post(url, data={"value": "12"}).status_code == 200
    assert state_of(number_flag, staging).value == 12


def test_value_edit_without_javascript(client, login, editor, project, text_flag, staging):
    login(client, editor)
    url = f"/projects/{project.id}/flags/{text_flag.id}/environments/{staging.id}/value"
    response = client.post(url, data={"value": "Bonjour"})
    assert response.status_code == 303
    assert state_of(text_flag, staging).value == "Bonjour"
    assert client.post(url, data={"value": "x" * 20_001}).status_code == 422


def test_overrides_add_edit_remove(hx, login, editor, project, text_flag, staging, segment):
    login(hx, editor)
    base = f"/projects/{project.id}/flags/{text_flag.id}/environments/{staging.id}/overrides"
    response = hx.post(base, data={"segment_id": segment.id, "enabled": "y", "value": "Pro hello",
                                   "priority": ""})
    assert response.status_code == 200
    assert "Pro users" in response.get_data(as_text=True)
    override = scalar(select(SegmentOverride))
    assert (override.enabled, override.value, override.priority) == (True, "Pro hello", 0)
    response = hx.post(f"{base}/{segment.id}", data={"value": "Changed", "priority": "3"})
    assert response.status_code == 200
    fresh()
    db.session.refresh(override)
    assert (override.enabled, override.value, override.priority) == (False, "Changed", 3)
    assert hx.post(f"{base}/{segment.id}/remove").status_code == 200
    assert scalar(select(SegmentOverride.id)) is None


def test_override_of_a_foreign_segment_is_422(hx, login, make, editor, project, flag, staging):
    foreign = make.segment(make.project("Other"), "Foreign")
    login(hx, editor)
    response = hx.post(
        f"/projects/{project.id}/flags/{flag.id}/environments/{staging.id}/overrides",
        data={"segment_id": foreign.id, "enabled": "y"})
    assert response.status_code == 422
    assert "Choose one of this project&#39;s segments." in response.get_data(as_text=True)
    assert scalar(select(SegmentOverride.id)) is None


def test_in_flight_flag_shows_the_pipeline_and_refuses_changes(
    client, hx, login, editor, project, flag, staging, pipeline_with
):
    pipeline_with("Checkout <rollout>", flag=flag)
    login(client, editor)
    page = client.get(f"/projects/{project.id}/flags/{flag.id}").get_data(as_text=True)
    assert "In a release pipeline</span>" in page and "Checkout &lt;rollout&gt;</a>:" in page
    assert "In release pipeline" not in page  # said once, not by the badge and the link both
    listing = client.get(f"/projects/{project.id}/flags").get_data(as_text=True)
    assert "in Checkout &lt;rollout&gt;" in listing
    login(hx, editor)
    before = audit_count()
    response = hx.post(f"/projects/{project.id}/flags/{flag.id}/environments/{staging.id}/toggle",
                       data={"enabled": "true", "from": "detail"})
    assert response.status_code == 409
    assert "Checkout &lt;rollout&gt;" in response.get_data(as_text=True)
    response = hx.post(f"/projects/{project.id}/flags/{flag.id}/environments/{staging.id}/toggle",
                       data={"enabled": "true"})
    assert response.status_code == 409
    assert state_of(flag, staging).enabled is False and audit_count() == before


def test_details_edit(hx, login, editor, project, flag):
    login(hx, editor)
    url = f"/projects/{project.id}/flags/{flag.id}/details"
    response = hx.post(url, data={"description": "Checkout v2", "tags": "q3, checkout"})
    assert response.status_code == 200 and "checkout" in response.get_data(as_text=True)
    fresh()
    db.session.refresh(flag)
    assert flag.tags == ["q3", "checkout"]
    response = hx.post(url, data={"description": "", "tags": "x" * 41})
    assert response.status_code == 422
    assert "Each tag at most 40 characters." in response.get_data(as_text=True)


def test_delete_with_confirmation(client, login, editor, viewer, project, flag):
    login(client, viewer)
    assert client.get(f"/projects/{project.id}/flags/{flag.id}/delete").status_code == 403
    login(client, editor)
    page = client.get(f"/projects/{project.id}/flags/{flag.id}/delete").get_data(as_text=True)
    assert "Delete flag checkout?" in page
    response = client.post(f"/projects/{project.id}/flags/{flag.id}/delete")
    assert response.status_code == 303
    assert scalar(select(Feature.id)) is None


def test_delete_refused_while_in_a_pipeline(client, login, editor, project, flag, pipeline_with):
    pipeline_with("Checkout rollout", flag=flag)
    login(client, editor)
    response = client.post(f"/projects/{project.id}/flags/{flag.id}/delete")
    assert response.status_code == 409
    assert "Checkout rollout" in response.get_data(as_text=True)
    assert scalar(select(Feature.id)) == flag.id


def test_pipeline_panel_loads_when_the_runs_area_exists(app, client, login, editor, project, flag):
    from flask import Blueprint

    if "runs.flag_panel" not in app.view_functions:
        extra = Blueprint("runs_probe", __name__)
        extra.add_url_rule("/probe/<int:project_id>/<int:feature_id>", "flag_panel", lambda **_: "")
        app.register_blueprint(extra, name="runs")
    login(client, editor)
    page = client.get(f"/projects/{project.id}/flags/{flag.id}").get_data(as_text=True)
    assert '<section id="pipeline_panel"' in page and 'hx-trigger="load"' in page


def test_viewer_sees_the_flag_page_without_controls(
    client, login, viewer, project, text_flag, segment, staging
):
    login(client, viewer)
    page = client.get(f"/projects/{project.id}/flags/{text_flag.id}").get_data(as_text=True)
    assert "Hello" in page and "History" in page
    for control in ('role="switch"', "Save value", "Add a segment override", "Delete…",
                    "Edit description"):
        assert control not in page


@pytest.mark.parametrize(("path", "data"), [
    ("/environments/{env}/value", {"value": "x"}),
    ("/environments/{env}/overrides", {"segment_id": "{segment}", "enabled": "y"}),
    ("/details", {"description": "x", "tags": ""}),
    ("/delete", {}),
])
def test_viewer_posts_are_403_and_change_nothing(
    client, login, viewer, project, text_flag, segment, staging, path, data
):
    login(client, viewer)
    before = audit_count()
    url = f"/projects/{project.id}/flags/{text_flag.id}" + path.format(env=staging.id)
    fields = {k: v.format(segment=segment.id) for k, v in data.items()}
    assert client.post(url, data=fields).status_code == 403
    assert audit_count() == before
