"""Builder flows a product manager walks (issue 14): publish only when it can succeed, what each
stage lacks, Undo after removing a stage, reordering in one request, refusals said before any
click, and where deleting a pipeline lands."""

import re

import pytest
from sqlalchemy import func, select

from webapp.extensions import db
from webapp.models import AuditEntry, PipelineRun, ReleasePipeline
from webapp.models.health import StageHealthCheck
from webapp.services.actors import SYSTEM
from webapp.services.pipelines import catalog, health_checks
from webapp.services.pipelines.inputs import MAX_STAGES


def base(project, pipeline=None):
    url = f"/projects/{project.id}/pipelines"
    return f"{url}/{pipeline.id}" if pipeline else url


def fresh(pipeline_id):
    db.session.rollback()
    db.session.expire_all()
    return catalog.get_pipeline(db.session.get(ReleasePipeline, pipeline_id).project_id,
                                  pipeline_id)


def audits():
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(AuditEntry))


def button(page, label):
    """The <button> or <a class=button> whose text is `label`, as markup."""
    found = re.search(rf"<(button|a)\b[^>]*>\s*{re.escape(label)}\s*</(button|a)>", page)
    return found.group(0) if found else ""


# --- publish only when it can succeed ----------------------------------------------------------


def test_an_empty_draft_offers_no_enabled_publish_and_says_why(client, login, project, editor,
                                                              build):
    draft = build.pipeline(project)
    login(client, editor)
    page = client.get(base(project, draft)).get_data(as_text=True)
    assert "disabled" in button(page, "Publish…")
    assert "Add at least one stage before publishing." in page

    confirm = client.get(f"{base(project, draft)}/publish").get_data(as_text=True)
    assert "disabled" in button(confirm, "Publish pipeline")


def test_each_stage_card_says_what_is_wrong_with_it(client, login, project, editor, build):
    draft = build.pipeline(project, stages=[
        {"name": "Dev", "env": "Development"},
        {"name": "Nowhere", "actions": []},
    ])
    login(client, editor)
    page = client.get(base(project, draft)).get_data(as_text=True)
    second = draft.stages[1]
    card = page[page.index(f'id="stage-{second.id}"'):]
    issues = re.search(r'class="stage-issues"[^>]*>(.*?)</p>', card, re.S).group(1)
    assert "no environment" in issues and "no actions yet" in issues
    start = page.index(f'id="stage-{draft.stages[0].id}"')
    first = page[start:page.index(f'id="stage-{second.id}"')]
    assert "stage-issues" not in first
    assert "disabled" in button(page, "Publish…")
    assert "Stage 2 (Nowhere): choose an environment." in page


def test_a_ready_draft_offers_publish(client, login, project, editor, build):
    draft = build.three_stages(project)
    login(client, editor)
    page = client.get(base(project, draft)).get_data(as_text=True)
    assert 'href="' in button(page, "Publish…") and "disabled" not in button(page, "Publish…")
    assert "stage-issues" not in page
    confirm = client.get(f"{base(project, draft)}/publish").get_data(as_text=True)
    assert button(confirm, "Publish pipeline") and "disabled" not in button(
        confirm, "Publish pipeline")


# --- Undo a stage removal ---------------------------------------------------------------------


def undo_token(page):
    return re.search(r'name="undo" value="([^"]+)"', page).group(1)


def test_removing_a_stage_offers_undo_that_restores_it_at_its_place(hx, login, project, editor,
                                                                    build, make):
    segment = make.segment(project, "Beta")
    draft = build.pipeline(project, stages=[
        {"name": "Dev", "env": "Development"},
        {"name": "Staging", "env": "Staging", "wait": 7200, "actions": [
            {"action_type": "TOGGLE_FEATURE_FOR_SEGMENT", "enabled": "true",
             "segment_id": str(segment.id)},
            {"action_type": "UPDATE_FEATURE_VALUE", "value": "42"}]},
        {"name": "Prod", "env": "Production"},
    ])
    staging = draft.stages[1]
    health_checks.add_check(draft, draft.version, staging.id, {
        "kind": "PROMETHEUS", "query": "sum(errors)", "comparison": "<", "threshold": "5",
        "interval_seconds": "30", "failures_to_trip": "2"}, SYSTEM)
    draft = fresh(draft.id)
    login(hx, editor)

    removed = hx.post(f"{base(project, draft)}/stages/{staging.id}/delete",
                      data={"version": draft.version})
    page = removed.get_data(as_text=True)
    assert removed.status_code == 200
    assert "Stage “Staging” removed" in page and button(page, "Undo")
    assert [s.name for s in fresh(draft.id).stages] == ["Dev", "Prod"]

    version = fresh(draft.id).version
    restored = hx.post(f"{base(project, draft)}/stages/restore",
                       data={"version": version, "undo": undo_token(page)})
    assert restored.status_code == 200 and "removed" not in restored.get_data(as_text=True)
    after = fresh(draft.id)
    assert [(s.name, s.position) for s in after.stages] == [
        ("Dev", 0), ("Staging", 1), ("Prod", 2)]
    back = after.stages[1]
    assert (back.trigger_type, back.wait_seconds) == ("WAIT_FOR", 7200)
    assert [(a.action_type, a.segment_id, a.value) for a in back.actions] == [
        ("TOGGLE_FEATURE_FOR_SEGMENT", segment.id, None), ("UPDATE_FEATURE_VALUE", None, 42)]
    assert [(c.query, c.threshold, c.failures_to_trip) for c in back.checks] == [
        ("sum(errors)", 5.0, 2)]
    entry = db.session.scalars(select(AuditEntry).order_by(AuditEntry.id.desc())).first()
    assert "restored" in entry.message


def test_undo_without_javascript_keeps_the_offer_through_the_redirect(client, login, project,
                                                                     editor, build):
    draft = build.three_stages(project)
    login(client, editor)
    removed = client.post(f"{base(project, draft)}/stages/{draft.stages[0].id}/delete",
                          data={"version": draft.version})
    assert removed.status_code == 303 and "undo=" in removed.headers["Location"]
    page = client.get(removed.headers["Location"]).get_data(as_text=True)
    assert "Stage “Development” removed" in page
    answer = client.post(f"{base(project, draft)}/stages/restore",
                         data={"version": fresh(draft.id).version, "undo": undo_token(page)})
    assert answer.status_code == 303
    assert [s.name for s in fresh(draft.id).stages] == ["Development", "Staging", "Production"]


@pytest.mark.parametrize("token", ["forged", "other pipeline"])
def test_undo_refuses_a_forged_token_or_another_pipelines(hx, login, project, editor, build,
                                                         token):
    draft = build.three_stages(project)
    other = build.three_stages(project)
    login(hx, editor)
    removed = hx.post(f"{base(project, other)}/stages/{other.stages[0].id}/delete",
                      data={"version": other.version}).get_data(as_text=True)
    value = undo_token(removed) if token == "other pipeline" else "eyJmYWtlIjoxfQ.forged"
    before = (audits(), len(fresh(draft.id).stages))
    answer = hx.post(f"{base(project, draft)}/stages/restore",
                     data={"version": draft.version, "undo": value})
    assert answer.status_code == 422
    assert "can no longer be undone" in answer.get_data(as_text=True)
    assert (audits(), len(fresh(draft.id).stages)) == before


# --- reorder in one request ---------------------------------------------------------------------


def test_reordering_sends_the_whole_order_once(hx, login, project, editor, build):
    draft = build.three_stages(project)
    dev, staging, prod = (s.id for s in draft.stages)
    login(hx, editor)
    before = audits()
    answer = hx.post(f"{base(project, draft)}/stages/order",
                     data={"version": draft.version, "order": [prod, dev, staging]})
    assert answer.status_code == 200
    assert [s.name for s in fresh(draft.id).stages] == ["Production", "Development", "Staging"]
    assert audits() == before + 1
    entry = db.session.scalars(select(AuditEntry).order_by(AuditEntry.id.desc())).first()
    assert "stage Production moved from 3 to 1" in entry.message
    page = answer.get_data(as_text=True)
    assert 'data-reorder="#stage-order"' in page and f'id="handle-{prod}"' in page


@pytest.mark.parametrize("order, status", [
    ("missing one", 422), ("foreign id", 422), ("stale version", 409)])
def test_a_bad_reorder_changes_nothing(hx, login, project, editor, build, order, status):
    draft = build.three_stages(project)
    ids = [s.id for s in draft.stages]
    version = draft.version
    sent = {"missing one": ids[:2], "foreign id": [ids[0], ids[1], 999999],
            "stale version": list(reversed(ids))}[order]
    if order == "stale version":
        version -= 1
    login(hx, editor)
    before = (audits(), [s.name for s in fresh(draft.id).stages])
    answer = hx.post(f"{base(project, draft)}/stages/order",
                     data={"version": version, "order": sent})
    assert answer.status_code == status
    assert (audits(), [s.name for s in fresh(draft.id).stages]) == before


# --- refusals said before any click --------------------------------------------------------------


def test_flags_in_flight_disable_unpublish_and_delete_with_the_reason(client, login, project,
                                                                      editor, build, make):
    published = build.three_stages(project, publish=True)
    flag = make.feature(project)
    db.session.add(PipelineRun(project_id=project.id, pipeline_id=published.id,
                               feature_id=flag.id))
    db.session.commit()
    login(client, editor)
    page = client.get(base(project, published)).get_data(as_text=True)
    assert "disabled" in button(page, "Unpublish…") and "disabled" in button(page, "Delete…")
    assert "1 flag is in flight in this pipeline" in page

    for what, label in (("unpublish", "Unpublish"), ("delete", "Delete pipeline")):
        confirm = client.get(f"{base(project, published)}/{what}")
        text = confirm.get_data(as_text=True)
        assert "1 flag is in flight in this pipeline" in text
        assert "disabled" in button(text, label)


def test_unpublish_of_a_draft_says_it_is_a_draft_before_any_click(client, login, project,
                                                                  editor, build):
    draft = build.three_stages(project)
    login(client, editor)
    text = client.get(f"{base(project, draft)}/unpublish").get_data(as_text=True)
    assert "is a draft already" in text and "disabled" in button(text, "Unpublish")


def test_deleting_lands_on_the_list(hx, client, login, project, editor, build):
    draft = build.three_stages(project)
    login(hx, editor)
    answer = hx.post(f"{base(project, draft)}/delete")
    assert answer.headers["HX-Redirect"].endswith(base(project))
    login(client, editor)
    assert client.get(answer.headers["HX-Redirect"]).status_code == 200


# --- long pipelines and defaults ---------------------------------------------------------------


def test_at_thirty_stages_add_stage_says_why(client, login, project, editor, build):
    draft = build.pipeline(project, stages=[{"name": f"S{n}", "env": "Development"}
                                            for n in range(MAX_STAGES)])
    login(client, editor)
    page = client.get(base(project, draft)).get_data(as_text=True)
    assert "disabled" in button(page, "Add stage")
    assert "A pipeline has at most 30 stages, and this one has 30" in page


def test_a_new_wait_defaults_to_one_hour(client, login, project, editor, build):
    draft = build.pipeline(project, stages=[{"name": "Dev", "env": "Development"}])
    login(client, editor)
    page = client.get(base(project, draft)).get_data(as_text=True)
    stage = draft.stages[0]
    amount = re.search(rf'id="stage-{stage.id}-wait_amount"\s+value="([^"]*)"', page).group(1)
    unit = re.search(rf'id="stage-{stage.id}-wait_unit".*?<option value="(\w+)" selected',
                     page, re.S).group(1)
    assert (amount, unit) == ("1", "hours")


def test_health_check_rows_survive_an_undo_only_once(hx, login, project, editor, build):
    """Undo twice with the same token: the second is refused as stale (the version moved)."""
    draft = build.three_stages(project)
    login(hx, editor)
    page = hx.post(f"{base(project, draft)}/stages/{draft.stages[2].id}/delete",
                   data={"version": draft.version}).get_data(as_text=True)
    version = fresh(draft.id).version
    token = undo_token(page)
    assert hx.post(f"{base(project, draft)}/stages/restore",
                   data={"version": version, "undo": token}).status_code == 200
    again = hx.post(f"{base(project, draft)}/stages/restore",
                    data={"version": version, "undo": token})
    assert again.status_code == 409
    assert len(fresh(draft.id).stages) == 3
    assert db.session.scalar(select(func.count()).select_from(StageHealthCheck)) == 0
