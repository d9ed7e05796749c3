"""The pipeline screens as a browser without JavaScript and as htmx see them."""

import pytest
from sqlalchemy import select

from webapp.extensions import db
from webapp.models import AuditEntry, PipelineRun, ReleasePipeline
from webapp.services.pipelines import builder, catalog, describe

TOGGLE = {"action_type": "TOGGLE_FEATURE", "enabled": "true"}


def base(project, pipeline=None):
    url = f"/projects/{project.id}/pipelines"
    return f"{url}/{pipeline.id}" if pipeline else url


def state(pipeline_id):
    db.session.expire_all()
    p = db.session.get(ReleasePipeline, pipeline_id)
    return (
        p.name,
        p.status,
        p.version,
        p.deleted_at,
        [(s.name, s.position, s.trigger_type, s.wait_seconds, len(s.actions)) for s in p.stages],
    )


def is_fragment(response):
    return b"<html" not in response.data and "HX-Request" in response.headers.get("Vary", "")


# --- list and create ---------------------------------------------------------------------------


def test_list_shows_counts_badges_and_actions_by_role(
    client, login, project, editor, viewer, build, make
):
    published = build.three_stages(project, publish=True)
    build.pipeline(project, name="Draft one")
    feature = make.feature(project)
    db.session.add(
        PipelineRun(project_id=project.id, pipeline_id=published.id, feature_id=feature.id)
    )
    db.session.commit()
    login(client, editor)
    page = client.get(base(project)).get_data(as_text=True)
    assert "Web release" in page and "Draft one" in page
    assert "Published" in page and "Draft" in page
    assert f"{base(project, published)}/clone" in page
    # In flight: no unpublish, no delete for that one.
    assert f"{base(project, published)}/unpublish" not in page
    assert f"{base(project, published)}/delete" not in page
    assert "Create pipeline" in page
    login(client, viewer)
    page = client.get(base(project)).get_data(as_text=True)
    assert "Web release" in page
    assert "/clone" not in page and "/publish" not in page and "Create pipeline" not in page


def test_create_goes_to_the_builder(client, hx, login, project, editor):
    login(client, editor)
    response = client.post(base(project), data={"name": "Web", "description": "d"})
    assert response.status_code == 303
    pipeline = db.session.scalar(select(ReleasePipeline))
    assert response.headers["Location"].endswith(base(project, pipeline))
    login(hx, editor)
    response = hx.post(base(project), data={"name": "Another"})
    assert response.status_code == 200 and "HX-Redirect" in response.headers


@pytest.mark.parametrize(
    ("name", "message"), [("", "A name is required."), ("x" * 256, "At most 255 characters.")]
)
def test_create_with_a_bad_name_answers_422_with_the_form(
    hx, login, project, editor, name, message
):
    login(hx, editor)
    response = hx.post(base(project), data={"name": name})
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert 'id="pipeline_form"' in response.get_data(as_text=True)
    assert is_fragment(response)
    assert db.session.scalar(select(ReleasePipeline)) is None


def test_viewers_get_403_and_strangers_404(client, login, project, viewer, make, build):
    pipeline = build.three_stages(project)
    stage = pipeline.stages[0]
    login(client, viewer)
    assert client.get(base(project, pipeline)).status_code == 200
    for url, data in [
        (base(project), {"name": "Nope"}),
        (f"{base(project, pipeline)}/stages", {"version": pipeline.version}),
        (
            f"{base(project, pipeline)}/stages/{stage.id}",
            {"version": pipeline.version, "name": "X"},
        ),
        (f"{base(project, pipeline)}/publish", {"version": pipeline.version}),
        (f"{base(project, pipeline)}/clone", {"name": "C"}),
        (f"{base(project, pipeline)}/delete", {}),
    ]:
        assert client.post(url, data=data).status_code == 403, url
    assert client.get(f"{base(project, pipeline)}/publish").status_code == 403
    assert state(pipeline.id)[2] == pipeline.version
    stranger = make.user(email="stranger@example.com")
    login(client, stranger)
    assert client.get(base(project)).status_code == 404
    assert client.get(base(project, pipeline)).status_code == 404


def test_a_pipeline_of_another_project_is_404(client, login, project, editor, make):
    other = make.project("Other")
    theirs = builder.create_pipeline(
        other, "Theirs", __import__("webapp.services.actors", fromlist=["SYSTEM"]).SYSTEM
    )
    login(client, editor)
    assert client.get(f"/projects/{project.id}/pipelines/{theirs.id}").status_code == 404
    response = client.post(
        f"/projects/{project.id}/pipelines/{theirs.id}/stages", data={"version": 1, "name": "X"}
    )
    assert response.status_code == 404
    assert state(theirs.id)[4] == []


def test_posts_without_csrf_are_400(client, login, project, editor, build):
    pipeline = build.three_stages(project)
    login(client, editor)
    before = state(pipeline.id)
    for url in (
        base(project),
        f"{base(project, pipeline)}/stages",
        f"{base(project, pipeline)}/publish",
        f"{base(project, pipeline)}/delete",
    ):
        response = client.post(url, data={"name": "X", "version": pipeline.version}, csrf=False)
        assert response.status_code == 400, url
    assert state(pipeline.id) == before


# --- the builder ---------------------------------------------------------------------------


def test_builder_page_and_fragment(client, hx, login, project, editor, build):
    pipeline = build.three_stages(project)
    login(client, editor)
    page = client.get(base(project, pipeline))
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and "<html" in text
    assert (
        "If a flag is added now: Development at once; Staging after 1 day; Production after 3 days."
        in text
    )
    assert 'id="builder"' in text and "Add stage" in text
    assert f'name="version" value="{pipeline.version}"' in text
    login(hx, editor)
    fragment = hx.get(base(project, pipeline))
    assert fragment.status_code == 200 and is_fragment(fragment)
    assert fragment.get_data(as_text=True).lstrip().startswith('<div id="builder"')


def test_each_edit_answers_with_the_updated_builder(hx, login, project, editor, make, build):
    beta = make.segment(project, "Beta")
    pipeline = build.pipeline(project, stages=[{"name": "Dev", "env": "Development"}])
    staging = make.environments(project)[1]
    login(hx, editor)
    v = pipeline.version

    response = hx.post(
        f"{base(project, pipeline)}/stages",
        data={"version": v, "name": "", "environment_id": staging.id},
    )
    assert response.status_code == 200 and is_fragment(response)
    assert "Staging" in response.get_data(as_text=True)
    pipeline = catalog.get_pipeline(project.id, pipeline.id)
    stage = pipeline.stages[1]
    response = hx.post(
        f"{base(project, pipeline)}/stages/{stage.id}",
        data={
            "version": pipeline.version,
            "name": "Staging",
            "environment_id": staging.id,
            "trigger_type": "WAIT_FOR",
            "wait_amount": "2",
            "wait_unit": "days",
        },
    )
    assert response.status_code == 200
    assert "Staging after 2 days" in response.get_data(as_text=True)
    response = hx.post(
        f"{base(project, pipeline)}/stages/{stage.id}/actions",
        data={
            "version": pipeline.version,
            "action_type": "TOGGLE_FEATURE_FOR_SEGMENT",
            "enabled": "false",
            "segment_id": beta.id,
        },
    )
    assert response.status_code == 200
    pipeline = catalog.get_pipeline(project.id, pipeline.id)
    action = pipeline.stages[1].actions[0]
    assert (action.segment_id, action.enabled) == (beta.id, False)
    response = hx.post(
        f"{base(project, pipeline)}/stages/{stage.id}/move",
        data={"version": pipeline.version, "direction": "up"},
    )
    assert response.status_code == 200
    pipeline = catalog.get_pipeline(project.id, pipeline.id)
    assert [s.name for s in pipeline.stages] == ["Staging", "Dev"]
    response = hx.post(
        f"{base(project, pipeline)}/actions/{action.id}",
        data={"version": pipeline.version, "action_type": "UPDATE_FEATURE_VALUE", "value": "42"},
    )
    assert response.status_code == 200
    assert "42 (integer)" in describe.describe_action(
        catalog.get_pipeline(project.id, pipeline.id).stages[0].actions[0]
    )
    pipeline = catalog.get_pipeline(project.id, pipeline.id)
    response = hx.post(
        f"{base(project, pipeline)}/actions/{action.id}/delete", data={"version": pipeline.version}
    )
    assert response.status_code == 200
    response = hx.post(
        f"{base(project, pipeline)}/details",
        data={"version": pipeline.version, "name": "Renamed", "description": ""},
    )
    assert response.status_code == 200 and "Renamed" in response.get_data(as_text=True)
    events = db.session.scalars(
        select(AuditEntry.event_type).where(
            AuditEntry.pipeline_id == pipeline.id, AuditEntry.actor_user_id == editor.id
        )
    ).all()
    # Seven autosaves by one editor within minutes: one entry of the builder session.
    assert events == ["RELEASE_PIPELINE_UPDATED"]
    [session] = db.session.scalars(select(AuditEntry).where(
        AuditEntry.pipeline_id == pipeline.id, AuditEntry.actor_user_id == editor.id)).all()
    assert session.message.count("; ") == 6 and session.object_label == "Renamed"
    assert session.after["name"] == "Renamed"


def test_without_javascript_an_edit_redirects_back_to_the_builder(
    client, login, project, editor, build
):
    pipeline = build.pipeline(project, stages=[{"name": "Dev"}])
    login(client, editor)
    response = client.post(
        f"{base(project, pipeline)}/stages/{pipeline.stages[0].id}",
        data={"version": pipeline.version, "name": "Renamed"},
    )
    assert response.status_code == 303
    assert response.headers["Location"].endswith(
        f"{base(project, pipeline)}#stage-{pipeline.stages[0].id}"
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"trigger_type": "WAIT_FOR", "wait_amount": "0", "wait_unit": "hours"},
            "The wait must be more than 0.",
        ),
        (
            {"trigger_type": "WAIT_FOR", "wait_amount": "-1", "wait_unit": "days"},
            "The wait must be more than 0.",
        ),
        (
            {"trigger_type": "WAIT_FOR", "wait_amount": "abc", "wait_unit": "days"},
            "Enter the wait as a whole number of days.",
        ),
        (
            {"trigger_type": "WAIT_FOR", "wait_amount": "400", "wait_unit": "days"},
            "The wait can be at most 365 days.",
        ),
        ({"trigger_type": "SOMETIME"}, "Choose “When the flag enters this stage” or “Wait”."),
        ({"name": ""}, "A name is required."),
        ({"environment_id": "424242"}, "Choose one of this project&#39;s environments."),
    ],
)
def test_bad_stage_input_answers_422_beside_the_field(
    hx, login, project, editor, build, data, message
):
    pipeline = build.pipeline(project, stages=[{"name": "Dev", "env": "Development"}])
    stage = pipeline.stages[0]
    before = state(pipeline.id)
    login(hx, editor)
    response = hx.post(
        f"{base(project, pipeline)}/stages/{stage.id}", data={"version": pipeline.version, **data}
    )
    text = response.get_data(as_text=True)
    assert response.status_code == 422 and is_fragment(response)
    assert message in text
    field = next(
        iter(k for k in data if k != "wait_unit" and (k != "trigger_type" or len(data) == 1))
    )
    assert f'id="stage-{stage.id}-{field}-error"' in text
    assert 'aria-invalid="true"' in text
    assert state(pipeline.id) == before


def test_bad_action_input_keeps_what_was_typed(hx, login, project, editor, build):
    pipeline = build.pipeline(project, stages=[{"name": "Dev", "env": "Development"}])
    stage = pipeline.stages[0]
    login(hx, editor)
    response = hx.post(
        f"{base(project, pipeline)}/stages/{stage.id}/actions",
        data={
            "version": pipeline.version,
            "action_type": "PHASED_ROLLOUT",
            "enabled": "true",
            "rollout_initial": "150",
            "rollout_step": "7",
            "rollout_every": "5",
            "rollout_unit": "minutes",
        },
    )
    text = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "The initial percentage must be more than 0 % and at most 100 %." in text
    assert f'id="new-action-{stage.id}-rollout_initial-error"' in text
    assert 'value="150"' in text and 'value="7"' in text
    assert f'id="new-action-{stage.id}"' in text  # the form stays open with what was typed
    response = hx.post(
        f"{base(project, pipeline)}/stages/{stage.id}/actions",
        data={"version": pipeline.version, "action_type": "SELF_DESTRUCT"},
    )
    assert response.status_code == 422
    assert "Choose one of the listed actions." in response.get_data(as_text=True)
    assert len(catalog.get_pipeline(project.id, pipeline.id).stages[0].actions) == 1


def test_action_forms_open_on_demand(client, hx, login, project, editor, build):
    pipeline = build.pipeline(project, stages=[{"name": "Dev", "env": "Development"}])
    stage, action = pipeline.stages[0], pipeline.stages[0].actions[0]
    login(client, editor)
    closed = client.get(base(project, pipeline)).get_data(as_text=True)
    assert f'id="action-{action.id}-form"' not in closed
    assert f'id="new-action-{stage.id}"' not in closed
    assert f"?open=action-{action.id}" in closed and "Enable for everyone" in closed
    page = client.get(f"{base(project, pipeline)}?open=action-{action.id}").get_data(as_text=True)
    assert f'id="action-{action.id}-form"' in page and "Save action" in page
    login(hx, editor)
    fragment = hx.get(f"{base(project, pipeline)}?open=new-action-{stage.id}")
    assert is_fragment(fragment)
    assert f'id="new-action-{stage.id}"' in fragment.get_data(as_text=True)
    # A refused edit keeps that action's form open, with the message beside the field.
    response = hx.post(
        f"{base(project, pipeline)}/actions/{action.id}",
        data={"version": pipeline.version, "action_type": "TOGGLE_FEATURE_FOR_SEGMENT",
              "enabled": "true", "segment_id": ""},
    )
    text = response.get_data(as_text=True)
    assert response.status_code == 422
    assert f'id="action-{action.id}-segment_id-error"' in text and "Choose a segment." in text


def test_a_31st_stage_answers_422(hx, login, project, editor, build):
    pipeline = build.pipeline(project, stages=[{"name": f"S{n}"} for n in range(30)])
    login(hx, editor)
    response = hx.post(
        f"{base(project, pipeline)}/stages", data={"version": pipeline.version, "name": "31st"}
    )
    assert response.status_code == 422
    assert "A pipeline has at most 30 stages." in response.get_data(as_text=True)
    assert len(state(pipeline.id)[4]) == 30


def test_a_stale_edit_answers_409_with_the_current_state(hx, login, project, editor, build):
    pipeline = build.pipeline(project, stages=[{"name": "Dev"}])
    stage, seen = pipeline.stages[0], pipeline.version
    login(hx, editor)
    assert (
        hx.post(
            f"{base(project, pipeline)}/stages/{stage.id}", data={"version": seen, "name": "Alice"}
        ).status_code
        == 200
    )
    response = hx.post(
        f"{base(project, pipeline)}/stages/{stage.id}", data={"version": seen, "name": "Bob"}
    )
    text = response.get_data(as_text=True)
    assert response.status_code == 409 and is_fragment(response)
    assert "Someone else changed this pipeline" in text
    assert 'value="Alice"' in text and f'name="version" value="{seen + 1}"' in text
    assert state(pipeline.id)[4][0][0] == "Alice"


@pytest.mark.parametrize(
    "path",
    [
        "/details",
        "/stages",
        "/stages/{stage}",
        "/stages/{stage}/move",
        "/stages/{stage}/delete",
        "/stages/{stage}/actions",
        "/actions/{action}",
        "/actions/{action}/move",
        "/actions/{action}/delete",
        "/stages/999999",
        "/publish",
    ],
)
def test_every_edit_of_a_published_pipeline_is_409(client, hx, login, project, editor, build, path):
    pipeline = build.three_stages(project, publish=True)
    stage, action = pipeline.stages[0], pipeline.stages[0].actions[0]
    url = base(project, pipeline) + path.format(stage=stage.id, action=action.id)
    crafted = {
        "version": pipeline.version,
        "name": "Hacked",
        "direction": "down",
        "trigger_type": "WAIT_FOR",
        "wait_amount": "1",
        "wait_unit": "days",
        **TOGGLE,
    }
    before = state(pipeline.id)
    login(hx, editor)
    response = hx.post(url, data=crafted)
    assert response.status_code == 409
    assert "cannot be changed" in response.get_data(
        as_text=True
    ) or "already published" in response.get_data(as_text=True)
    assert is_fragment(response)
    login(client, editor)
    response = client.post(url, data=crafted)
    assert response.status_code == 409 and "<html" in response.get_data(as_text=True)
    assert state(pipeline.id) == before


def test_the_published_page_is_read_only(client, login, project, editor, build):
    pipeline = build.three_stages(project, publish=True)
    login(client, editor)
    text = client.get(base(project, pipeline)).get_data(as_text=True)
    assert "Published" in text and "Staging after 1 day" in text
    assert 'name="version"' not in text and "Add stage" not in text and "<select" not in text
    assert '<section id="pipeline_flags"' in text
    assert "Unpublish" in text and "Clone" in text


def test_the_flags_panel_lazy_loads_when_the_runs_area_exists(
    app, client, login, project, editor, build
):
    pipeline = build.three_stages(project, publish=True)
    login(client, editor)
    text = client.get(base(project, pipeline)).get_data(as_text=True)
    if "runs.pipeline_panel" in app.view_functions:
        from flask import url_for

        with app.test_request_context():
            url = url_for("runs.pipeline_panel", project_id=project.id, pipeline_id=pipeline.id)
        assert f'hx-get="{url}"' in text and 'hx-trigger="load"' in text and f'href="{url}"' in text
    else:
        assert 'hx-trigger="load"' not in text


# --- publish, unpublish, clone, delete -------------------------------------------------------


def test_publish_confirmation_lists_the_stages_then_publishes(
    client, hx, login, project, editor, build
):
    pipeline = build.three_stages(project)
    login(client, editor)
    page = client.get(f"{base(project, pipeline)}/publish").get_data(as_text=True)
    assert "Publish “Web release”?" in page
    assert page.index("Development") < page.index("Staging") < page.index("Production")
    assert "Enable for everyone" in page and "Publish pipeline" in page
    login(hx, editor)
    response = hx.post(f"{base(project, pipeline)}/publish", data={"version": pipeline.version})
    assert response.status_code == 200
    assert response.headers["HX-Redirect"].endswith(base(project, pipeline))
    assert state(pipeline.id)[1] == "published"


def test_publish_shows_every_problem_at_once(hx, client, login, project, editor, build):
    pipeline = build.pipeline(project, stages=[{"name": "A", "actions": []}, {"name": "B"}])
    login(client, editor)
    page = client.get(f"{base(project, pipeline)}/publish").get_data(as_text=True)
    assert "3 problems" in page
    login(hx, editor)
    response = hx.post(f"{base(project, pipeline)}/publish", data={"version": pipeline.version})
    text = response.get_data(as_text=True)
    assert response.status_code == 422 and is_fragment(response)
    for problem in (
        "Stage 1 (A): choose an environment.",
        "Stage 1 (A): add at least one action.",
        "Stage 2 (B): choose an environment.",
    ):
        assert problem in text
    assert state(pipeline.id)[1] == "draft"


def test_publish_of_an_empty_pipeline_is_422(hx, login, project, editor, build):
    pipeline = build.pipeline(project)
    login(hx, editor)
    response = hx.post(f"{base(project, pipeline)}/publish", data={"version": pipeline.version})
    assert response.status_code == 422
    assert "Add at least one stage before publishing." in response.get_data(as_text=True)


def test_unpublish_delete_refused_while_in_flight(hx, login, project, editor, build, make):
    pipeline = build.three_stages(project, publish=True)
    feature = make.feature(project)
    db.session.add(
        PipelineRun(project_id=project.id, pipeline_id=pipeline.id, feature_id=feature.id)
    )
    db.session.commit()
    login(hx, editor)
    for action in ("unpublish", "delete"):
        response = hx.post(f"{base(project, pipeline)}/{action}")
        assert response.status_code == 409 and is_fragment(response)
        assert "in flight" in response.get_data(as_text=True)
    assert state(pipeline.id)[1] == "published" and state(pipeline.id)[3] is None


def test_unpublish_clone_and_delete(client, hx, login, project, editor, build):
    pipeline = build.three_stages(project, publish=True)
    login(client, editor)
    assert "Turn “Web release” back into a draft?" in client.get(
        f"{base(project, pipeline)}/unpublish"
    ).get_data(as_text=True)
    login(hx, editor)
    response = hx.post(f"{base(project, pipeline)}/unpublish")
    assert response.status_code == 200 and "HX-Redirect" in response.headers
    assert state(pipeline.id)[1] == "draft"

    clone_form = client.get(f"{base(project, pipeline)}/clone").get_data(as_text=True)
    assert 'value="Web release (copy)"' in clone_form
    response = hx.post(f"{base(project, pipeline)}/clone", data={"name": "x" * 256})
    assert response.status_code == 422 and "At most 255 characters." in response.get_data(
        as_text=True
    )
    response = hx.post(f"{base(project, pipeline)}/clone", data={"name": "Web v2"})
    copy = db.session.scalar(select(ReleasePipeline).where(ReleasePipeline.name == "Web v2"))
    assert response.headers["HX-Redirect"].endswith(base(project, copy))
    assert len(copy.stages) == 3 and copy.status == "draft"

    response = hx.post(f"{base(project, pipeline)}/delete")
    assert response.headers["HX-Redirect"].endswith(base(project))
    assert client.get(base(project, pipeline)).status_code == 404
    assert "Web v2" in client.get(base(project)).get_data(as_text=True)
