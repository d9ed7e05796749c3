"""Segments pages: list, the rule builder (with and without htmx), save, 422s, delete."""

import pytest
from sqlalchemy import select

from tests.platform.conftest import fresh
from webapp.extensions import db
from webapp.forms.segments import apply_builder_op, rules_from_form
from webapp.models import AuditEntry, Segment


def scalar(statement):
    fresh()
    return db.session.scalar(statement)


FORM = {"name": "Pro in GB", "description": "",
        "r0.type": "ALL",
        "r0.c0.property": "plan", "r0.c0.operator": "EQUAL", "r0.c0.value": "pro",
        "r0.c1.property": "country", "r0.c1.operator": "IN", "r0.c1.value": "gb,ie",
        "r0.r0.type": "ANY",
        "r0.r0.c0.property": "seats", "r0.r0.c0.operator": "GREATER_THAN", "r0.r0.c0.value": "5"}


def test_form_fields_rebuild_the_tree_in_index_order():
    fields = dict(FORM)
    fields["r0.c10.property"] = "late"
    fields.update({"r0.c10.operator": "IS_SET", "r0.c10.value": ""})
    tree = rules_from_form(fields)
    assert [c["property"] for c in tree[0]["conditions"]] == ["plan", "country", "late"]
    assert tree[0]["rules"][0] == {"type": "ANY", "conditions": [
        {"property": "seats", "operator": "GREATER_THAN", "value": "5"}], "rules": []}


@pytest.mark.parametrize(("op", "check"), [
    ("add_rule", lambda t: len(t) == 2),
    ("add_condition:r0", lambda t: len(t[0]["conditions"]) == 3),
    ("add_condition:r0.r0", lambda t: len(t[0]["rules"][0]["conditions"]) == 2),
    ("add_nested:r0.r0", lambda t: len(t[0]["rules"][0]["rules"]) == 1),
    ("remove_rule:r0.r0", lambda t: t[0]["rules"] == []),
    ("remove_rule:r0", lambda t: t == []),
    ("remove_condition:r0.c0",
     lambda t: [c["property"] for c in t[0]["conditions"]] == ["country"]),
    ("remove_condition:r7.c0", lambda t: len(t[0]["conditions"]) == 2),  # stale: no change
    ("explode", lambda t: len(t) == 1),
])
def test_builder_operations(op, check):
    assert check(apply_builder_op(rules_from_form(FORM), op))


def test_list_hides_system_segments_and_escapes(client, login, viewer, make, project):
    make.segment(project, "<script>x</script>")
    make.segment(project, "Rollout 10%", is_system=True)
    login(client, viewer)
    page = client.get(f"/projects/{project.id}/segments").get_data(as_text=True)
    assert "&lt;script&gt;x&lt;/script&gt;" in page and "<script>x" not in page
    assert "Rollout 10%" not in page and "New segment" not in page


def test_builder_answers_the_builder_only_with_htmx(hx, login, editor, project):
    login(hx, editor)
    response = hx.post(f"/projects/{project.id}/segments/new/builder",
                       data={**FORM, "op": "add_condition:r0.r0"})
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and "HX-Request" in response.headers["Vary"]
    assert body.strip().startswith('<div id="rule_builder"') and "<html" not in body
    assert 'name="r0.r0.c1.operator"' in body and 'value="gb,ie"' in body
    assert scalar(select(Segment.id)) is None  # not saved


def test_builder_without_javascript_answers_the_page(client, login, editor, project):
    login(client, editor)
    response = client.post(f"/projects/{project.id}/segments/new/builder",
                           data={**FORM, "op": "add_rule"})
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" in body and 'name="r1.c0.property"' in body
    assert 'value="Pro in GB"' in body


def test_create_saves_the_tree_and_audits(hx, login, editor, project):
    login(hx, editor)
    response = hx.post(f"/projects/{project.id}/segments/new", data=FORM)
    assert response.status_code == 200
    segment = scalar(select(Segment))
    assert response.headers["HX-Redirect"] == f"/projects/{project.id}/segments/{segment.id}"
    assert segment.rules == rules_from_form(FORM)
    assert scalar(select(AuditEntry.event_type).where(
        AuditEntry.object_type == "segment")) == "SEGMENT_CREATED"


@pytest.mark.parametrize(("changes", "field_id", "message"), [
    ({"name": ""}, "name-error", "A name is required."),
    ({"name": "n" * 256}, "name-error", "At most 255 characters."),
    ({"r0.c0.operator": "LIKE"}, "r0-c0-operator-error",
     "Unknown operator “LIKE”: choose one from the list."),
    ({"r0.c0.operator": "REGEX", "r0.c0.value": "[a-"}, "r0-c0-value-error",
     "Not a valid regular expression"),
    ({"r0.c0.operator": "REGEX", "r0.c0.value": "(a+)+$"}, "r0-c0-value-error",
     "takes exponential time in the SDKs"),
    ({"r0.c0.operator": "REGEX", "r0.c0.value": r"(\w+)-\1"}, "r0-c0-value-error",
     "Railyard matches with RE2, which cannot take this pattern"),
    ({"r0.c1.operator": "PERCENTAGE_SPLIT", "r0.c1.value": "150"}, "r0-c1-value-error",
     "Enter a percentage between 0 and 100."),
    ({"r0.r0.c0.operator": "MODULO", "r0.r0.c0.value": "3"}, "r0-r0-c0-value-error",
     "Enter divisor|remainder, like 4|0."),
    ({"r0.c0.operator": "IS_SET"}, "r0-c0-value-error",
     "This operator takes no value; leave it empty."),
    ({"r0.c0.property": ""}, "r0-c0-property-error", "A trait name is required."),
])
def test_bad_segment_shows_the_message_beside_the_field(
    hx, login, editor, project, changes, field_id, message
):
    login(hx, editor)
    response = hx.post(f"/projects/{project.id}/segments/new", data={**FORM, **changes})
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert f'id="{field_id}"' in body and message in body
    assert body.strip().startswith('<form id="segment_form"')
    assert scalar(select(Segment.id)) is None


def test_edit_page_and_update(client, hx, login, editor, viewer, project, segment):
    login(client, viewer)
    page = client.get(f"/projects/{project.id}/segments/{segment.id}").get_data(as_text=True)
    assert "Pro users" in page and "segment_form" not in page and "EQUAL" in page
    response = client.post(f"/projects/{project.id}/segments/{segment.id}", data=FORM)
    assert response.status_code == 403
    login(hx, editor)
    response = hx.post(f"/projects/{project.id}/segments/{segment.id}", data=FORM)
    assert response.status_code == 200 and "Segment saved." in response.get_data(as_text=True)
    fresh()
    db.session.refresh(segment)
    assert segment.name == "Pro in GB"


def test_segment_of_another_project_is_404(client, login, make, editor, project):
    foreign = make.segment(make.project("Other"), "Foreign")
    login(client, editor)
    assert client.get(f"/projects/{project.id}/segments/{foreign.id}").status_code == 404
    response = client.post(f"/projects/{project.id}/segments/{foreign.id}", data=FORM)
    assert response.status_code == 404
    assert client.post(f"/projects/{project.id}/segments/{foreign.id}/delete").status_code == 404


def test_missing_csrf_is_400(client, login, editor, project):
    login(client, editor)
    response = client.post(f"/projects/{project.id}/segments/new", data=FORM, csrf=False)
    assert response.status_code == 400
    assert scalar(select(Segment.id)) is None


def test_delete_refused_while_a_pipeline_uses_it_and_the_page_lists_them(
    client, login, editor, project, segment, pipeline_with
):
    pipeline_with("Beta <first>", segment=segment)
    login(client, editor)
    page = client.get(f"/projects/{project.id}/segments/{segment.id}").get_data(as_text=True)
    assert "Used by release pipeline" in page and "Beta &lt;first&gt;" in page
    response = client.post(f"/projects/{project.id}/segments/{segment.id}/delete")
    assert response.status_code == 409
    assert "Beta &lt;first&gt;" in response.get_data(as_text=True)
    assert scalar(select(Segment.id)) == segment.id


def test_delete(client, login, editor, project, segment):
    login(client, editor)
    assert "Delete segment Pro users?" in client.get(
        f"/projects/{project.id}/segments/{segment.id}/delete").get_data(as_text=True)
    response = client.post(f"/projects/{project.id}/segments/{segment.id}/delete")
    assert response.status_code == 303
    assert scalar(select(Segment.id)) is None
