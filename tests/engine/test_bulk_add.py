"""Bulk add (issue 14): every flag that can join is added, every other one is named with why;
the pickers offer what can join and show the rest disabled with the reason."""

import re

import pytest
from sqlalchemy import func, select

from webapp import redis_conn
from webapp.extensions import db
from webapp.models import AuditEntry, PipelineRun, StageExecution
from webapp.services.actors import Actor
from webapp.services.errors import Conflict, Invalid
from webapp.services.runs import controls, flag_intake


def count(model, *where):
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


@pytest.fixture
def texty(make_pipeline):
    """A pipeline whose last stage sets a text value: on/off flags cannot join it."""
    return make_pipeline([
        {"env": "Development", "name": "Dev",
         "actions": [{"type": "TOGGLE_FEATURE", "enabled": True}]},
        {"env": "Production", "name": "Prod",
         "actions": [{"type": "UPDATE_FEATURE_VALUE", "value": "blue"}]},
    ], name="Aardvark colours")


@pytest.fixture
def mix(make, project, editor, two_stage):
    """Two text flags, two on/off flags, one flag already in a pipeline, one of another project."""
    text = [make.feature(project, f"text_{n}", value_type="string") for n in range(2)]
    onoff = [make.feature(project, f"switch_{n}") for n in range(2)]
    busy = make.feature(project, "busy", value_type="string")
    controls.add_flag(project, two_stage.id, busy.id, Actor.for_user(editor))
    foreign = make.feature(make.project("Elsewhere"), "secret_name")
    return text, onoff, busy, foreign


def test_adds_every_flag_it_can_and_names_each_other_with_why(clock, project, editor, texty,
                                                              mix):
    text, onoff, busy, foreign = mix
    chosen = [text[0].id, onoff[0].id, busy.id, foreign.id, onoff[1].id, text[1].id]
    report = flag_intake.add_flags(project, texty.id, chosen, Actor.for_user(editor))

    assert [o.feature_id for o in report.outcomes] == chosen
    assert [o.name for o in report.added] == ["text_0", "text_1"]
    refused = {o.name: o.reason for o in report.refused}
    assert set(refused) == {"switch_0", "switch_1", "busy", f"#{foreign.id}"}
    assert refused["switch_0"] == refused["switch_1"] == (
        "it takes no values, but stage 2 (Prod) sets the value “blue” (text)")
    assert refused["busy"] == "already in the pipeline “Two step”"
    assert refused[f"#{foreign.id}"] == "not a flag of this project"
    assert "secret_name" not in report.summary()
    assert "2 flags added to Aardvark colours. 4 could not join" in report.summary()
    assert count(PipelineRun, PipelineRun.pipeline_id == texty.id) == 2
    assert count(StageExecution) == 3  # busy's own, and the two added
    entries = db.session.scalars(select(AuditEntry).where(
        AuditEntry.event_type == "RELEASE_PIPELINE_FEATURE_ADDED",
        AuditEntry.pipeline_id == texty.id).order_by(AuditEntry.feature_id)).all()
    assert [(e.message, e.object_label, e.run_id is not None, e.actor_user_id)
            for e in entries] == [
        ("text_0 added to release pipeline Aardvark colours", "text_0", True, editor.id),
        ("text_1 added to release pipeline Aardvark colours", "text_1", True, editor.id)]
    assert len(report.bells) == 2


def test_the_all_or_nothing_add_names_every_flag_that_cannot_join(clock, project, editor, texty,
                                                                  mix):
    _text, onoff, _busy, _foreign = mix
    before = (count(PipelineRun), count(AuditEntry))
    with pytest.raises(Invalid) as refused:
        controls.add_flags(project, texty.id, [f.id for f in onoff], Actor.for_user(editor))
    assert "switch_0" in refused.value.message and "switch_1" in refused.value.message
    assert (count(PipelineRun), count(AuditEntry)) == before


def test_a_flag_added_twice_in_one_request_joins_once(clock, project, editor, two_stage, make):
    flag = make.feature(project)
    report = flag_intake.add_flags(project, two_stage.id, [flag.id, str(flag.id)],
                                   Actor.for_user(editor))
    assert len(report.outcomes) == 1 and report.added


def test_a_draft_refuses_the_whole_request(clock, project, editor, make_pipeline, make):
    draft = make_pipeline([{"env": "Development", "actions": [
        {"type": "TOGGLE_FEATURE", "enabled": True}]}], status="draft")
    with pytest.raises(Conflict, match="draft"):
        flag_intake.add_flags(project, draft.id, [make.feature(project).id],
                              Actor.for_user(editor))


def test_thousands_of_flags_join_in_batches(clock, project, editor, two_stage, make):
    """More flags than one batch: every one added, one run and one audit entry each."""
    from sqlalchemy import insert

    from webapp.clock import now
    from webapp.models import Feature

    moment = now()
    db.session.execute(insert(Feature), [
        {"project_id": project.id, "name": f"bulk_{n}", "description": "", "value_type": "none",
         "default_enabled": False, "default_value": None, "tags": [], "created_at": moment}
        for n in range(flag_intake.BATCH * 2 + 7)])
    db.session.commit()
    ids = list(db.session.scalars(select(Feature.id).where(Feature.name.like("bulk_%"))))
    report = flag_intake.add_flags(project, two_stage.id, ids, Actor.for_user(editor))
    assert len(report.added) == len(ids) and not report.refused
    assert count(PipelineRun) == len(ids) == count(StageExecution)
    runs_by_flag = dict(db.session.execute(select(PipelineRun.feature_id, PipelineRun.id)).all())
    assert {o.feature_id: o.run_id for o in report.added} == runs_by_flag
    assert count(AuditEntry, AuditEntry.event_type == "RELEASE_PIPELINE_FEATURE_ADDED") == len(ids)


# --- the pages ---------------------------------------------------------------------------------


def panel(project, pipeline):
    return f"/projects/{project.id}/pipelines/{pipeline.id}/flags"


def test_the_checklist_offers_what_can_join_and_disables_the_rest(clock, hx, login, project,
                                                                  editor, texty, mix):
    text, onoff, busy, _foreign = mix
    login(hx, editor)
    page = hx.get(panel(project, texty)).get_data(as_text=True)
    assert 'type="search"' in page and "Select all shown" in page and "0 selected" in page
    assert "2 of 4 can join this pipeline" in page
    assert re.search(rf'value="{text[0].id}"\s*>', page)
    assert re.search(rf'value="{onoff[0].id}" disabled', page)
    assert "cannot join: it takes no values, but stage 2 (Prod)" in page
    assert f'value="{busy.id}"' not in page  # in a pipeline already: not listed


def test_the_checklist_add_reports_added_and_refused(clock, hx, login, project, editor, texty,
                                                     mix):
    text, onoff, busy, _foreign = mix
    login(hx, editor)
    answer = hx.post(panel(project, texty),
                     data={"feature_ids": [text[0].id, onoff[0].id, busy.id, onoff[1].id]})
    page = answer.get_data(as_text=True)
    assert answer.status_code == 200 and answer.headers["HX-Trigger"] == "flag-changed"
    assert "1 flag added to Aardvark colours. 3 could not join:" in page
    for name in ("switch_0", "switch_1", "busy"):
        assert f"<strong>{name}</strong>:" in page
    assert count(PipelineRun, PipelineRun.pipeline_id == texty.id) == 1
    assert len(redis_conn.queue().job_ids) == 1

    none = hx.post(panel(project, texty), data={"feature_ids": [onoff[0].id]})
    assert none.status_code == 422
    assert "0 flags added" in none.get_data(as_text=True)


def test_the_flag_page_never_offers_an_incompatible_pipeline(clock, hx, login, project, editor,
                                                            texty, two_stage, make):
    flag = make.feature(project, "on_off")
    login(hx, editor)
    page = hx.get(f"/projects/{project.id}/flags/{flag.id}/pipeline").get_data(as_text=True)
    options = re.findall(r"<option[^>]*>[^<]*</option>", page)
    assert len(options) == 2
    assert "Two step" in options[0] and "disabled" not in options[0]  # the one it can join first
    assert "Aardvark colours — cannot join: it takes no values" in options[1]
    assert "disabled" in options[1]


# --- the API -----------------------------------------------------------------------------------


def test_the_api_adds_what_it_can_and_answers_per_flag(clock, client, project, editor, texty,
                                                      mix, make):
    from webapp.services.actors import SYSTEM
    from webapp.services.platform import api_keys

    text, onoff, _busy, _foreign = mix
    _row, key = api_keys.create_organisation_key(project.organisation, "CI", SYSTEM)
    path = f"/api/v1/projects/{project.id}/release-pipelines/{texty.id}/add-features/"
    headers = {"Authorization": f"Api-Key {key}"}

    partly = client.post(path, json={"feature_ids": [text[0].id, onoff[0].id]}, headers=headers)
    assert partly.status_code == 207, partly.get_json()
    body = partly.get_json()
    assert [(a["feature_id"], a["name"]) for a in body["added"]] == [(text[0].id, "text_0")]
    assert [(r["feature_id"], r["name"]) for r in body["refused"]] == [(onoff[0].id, "switch_0")]
    assert "stage 2 (Prod) sets the value “blue” (text)" in body["refused"][0]["reason"]

    whole = client.post(path, json={"feature_ids": [text[1].id]}, headers=headers)
    assert whole.status_code == 200 and whole.get_json()["refused"] == []

    none = client.post(path, json={"feature_ids": [onoff[1].id]}, headers=headers)
    assert none.status_code == 422
    assert "switch_1: it takes no values" in none.get_json()["feature_ids"][0]
    for bad in ({}, {"feature_ids": []}, {"feature_ids": ["x"]}):
        assert client.post(path, json=bad, headers=headers).status_code == 422, bad

    spec = client.get("/api/v1/openapi.json").get_json()
    operation = spec["paths"]["/api/v1/projects/{project_id}/release-pipelines/"
                              "{pipeline_id}/add-features/"]["post"]
    assert {"200", "207", "422", "409"} <= set(operation["responses"])
