"""The change request pages: list with tabs and filters, detail with the diff, and the actions
answering the request's block (200, or 403/409/422 with why, nothing changed)."""

import re

import pytest
from sqlalchemy import select

from webapp.extensions import db
from webapp.models import ChangeRequestReview
from webapp.services.actors import Actor
from webapp.services.change_requests import workflow

from .conftest import audit_count, request_of, run_of, state


def url(project, request=None, action=None):
    base = f"/projects/{project.id}/change-requests"
    if request is not None:
        base += f"/{request.id}"
    return base + (f"/{action}" if action else "")


def test_the_list_shows_open_requests_with_tabs_and_filters(client, hx, login, to_production,
                                                            make, project, editor, envs):
    flag = make.feature(project, "checkout")
    request = to_production(flag)
    login(client, editor)

    page = client.get(url(project))
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert "<html" in body and "checkout → Prod (Release)" in body
    assert "Release pipeline Release (flag added by editor@example.com)" in body
    assert "0 of 1" in body

    committed = client.get(url(project) + "?status=committed").get_data(as_text=True)
    assert "checkout → Prod" not in committed
    staging = envs["Staging"].id
    filtered = client.get(url(project) + f"?environment={staging}").get_data(as_text=True)
    assert "checkout → Prod" not in filtered
    by_flag = client.get(url(project) + f"?flag={flag.id}").get_data(as_text=True)
    assert f'href="{url(project, request)}"' in by_flag

    login(hx, editor)
    fragment = hx.get(url(project))
    assert "<html" not in fragment.get_data(as_text=True)
    assert 'id="change_request_list"' in fragment.get_data(as_text=True)
    assert "HX-Request" in fragment.headers["Vary"]
    assert client.get(url(project) + "?environment=99999").status_code == 422
    assert client.get(url(project) + "?status=bogus").status_code == 422


def test_the_detail_shows_the_exact_diff_who_asked_and_history(client, login, to_production,
                                                              make, project, viewer):
    flag = make.feature(project, "checkout")
    request = to_production(flag)
    login(client, viewer)
    body = client.get(url(project, request)).get_data(as_text=True)
    assert f"Change request #{request.id}: checkout → Prod (Release)" in body
    assert "<del>off</del>" in body and "<ins>on</ins>" in body
    assert "Release pipeline Release (flag added by editor@example.com)" in body
    assert "Change request opened" in body  # the history in words, names resolved
    assert f"Change request #{request.id} “checkout → Prod (Release)” opened for checkout in " \
           "Production" in body
    assert "Approve" not in body  # viewers get no review controls


def test_non_members_and_other_projects_get_404(client, login, to_production, make, project):
    flag = make.feature(project)
    request = to_production(flag)
    other = make.project("Other")
    stranger = make.user(project=other, role="admin")
    login(client, stranger)
    assert client.get(url(project, request)).status_code == 404
    assert client.get(url(other, request)).status_code == 404
    assert client.post(url(other, request, "approve")).status_code == 404
    assert client.post(url(other, request, "commit")).status_code == 404


def test_approve_and_commit_over_htmx(hx, login, to_production, make, project, reviewer, envs):
    flag = make.feature(project, "checkout")
    request = to_production(flag)
    login(hx, reviewer)

    approved = hx.post(url(project, request, "approve"),
                       data={"comment": "Ship it", "changes_hash": request.changes_hash})
    assert approved.status_code == 200
    body = approved.get_data(as_text=True)
    assert "<html" not in body and "You approved" in body and "Ship it" in body
    assert "1 of 1" in body

    committed = hx.post(url(project, request, "commit"))
    assert committed.status_code == 200
    assert "committed" in committed.get_data(as_text=True)
    assert state(flag, envs["Production"]) == (True, None)
    assert run_of(flag).status == "launched"


def test_without_htmx_actions_redirect_to_the_page(client, login, to_production, make, project,
                                                   reviewer):
    request = to_production(make.feature(project))
    login(client, reviewer)
    answer = client.post(url(project, request, "approve"), data={})
    assert answer.status_code == 303
    assert answer.headers["Location"].endswith(url(project, request))


@pytest.mark.parametrize("who, action, setup, status, says", [
    ("viewer", "approve", None, 403, "editor"),
    ("editor", "approve", None, 403, "someone else"),
    ("reviewer", "approve", "approved", 409, "already approved"),
    ("reviewer", "commit", None, 409, "0 of the 1 approval"),
    ("reviewer", "commit", "rejected", 409, "rejected"),
    ("reviewer", "reject", "rejected", 409, "rejected"),
    ("reviewer", "reopen", None, 409, "Only a rejected"),
    ("reviewer", "close", None, 409, "release pipeline waits"),
])
def test_refused_actions_say_why_and_change_nothing(who, action, setup, status, says, hx, login,
                                                    to_production, make, project, editor,
                                                    reviewer, viewer, admin):
    request = to_production(make.feature(project))
    if setup == "approved":
        workflow.approve(project.id, request.id, Actor.for_user(reviewer))
    if setup == "rejected":
        workflow.reject(project.id, request.id, Actor.for_user(admin))
    users = {"viewer": viewer, "editor": editor, "reviewer": reviewer}
    login(hx, users[who])
    before = (audit_count(), request_of_id(request).version)

    # A comment, since rejecting needs one (refused before the state check otherwise).
    answer = hx.post(url(project, request, action), data={"comment": "Not now"})

    assert answer.status_code == status
    assert says in answer.get_data(as_text=True)
    assert (audit_count(), request_of_id(request).version) == before


@pytest.mark.parametrize("comment", ["", "   "])
def test_reject_asks_for_a_reason_and_changes_nothing_without_one(comment, hx, login, make,
                                                                  to_production, project,
                                                                  reviewer):
    request = to_production(make.feature(project))
    login(hx, reviewer)
    before = (audit_count(), request_of_id(request).version)

    answer = hx.post(url(project, request, "reject"), data={"comment": comment})

    assert answer.status_code == 422
    page = answer.get_data(as_text=True)
    assert "Say why you reject it" in page and 'aria-invalid="true"' in page
    assert (audit_count(), request_of_id(request).version) == before


def test_the_reason_of_a_rejection_is_audited_as_its_comment(hx, login, make, to_production,
                                                             project, reviewer):
    from sqlalchemy import select

    from webapp.models import AuditEntry

    request = to_production(make.feature(project))
    login(hx, reviewer)
    assert hx.post(url(project, request, "reject"),
                   data={"comment": "Error rate doubled"}).status_code == 200
    db.session.rollback()
    entry = db.session.scalar(select(AuditEntry).where(
        AuditEntry.event_type == "CHANGE_REQUEST_REJECTED"))
    assert entry is not None and "Error rate doubled" in str(entry.after) + entry.message


def request_of_id(request):
    from webapp.models import ChangeRequest

    db.session.rollback()  # a fresh snapshot: requests commit in their own sessions
    return db.session.get(ChangeRequest, request.id)


def test_a_long_comment_answers_422_beside_the_field(hx, login, to_production, make, project,
                                                     reviewer):
    request = to_production(make.feature(project))
    login(hx, reviewer)
    answer = hx.post(url(project, request, "approve"), data={"comment": "x" * 2001})
    assert answer.status_code == 422
    assert 'aria-invalid="true"' in answer.get_data(as_text=True)
    assert db.session.scalar(select(ChangeRequestReview.id)) is None


def test_stale_changes_hash_answers_409(hx, login, to_production, make, project, reviewer):
    request = to_production(make.feature(project))
    login(hx, reviewer)
    answer = hx.post(url(project, request, "approve"), data={"changes_hash": "f" * 64})
    assert answer.status_code == 409
    assert "review them again" in answer.get_data(as_text=True)


def test_actions_need_the_csrf_token(client, login, to_production, make, project, reviewer):
    request = to_production(make.feature(project))
    login(client, reviewer)
    assert client.post(url(project, request, "approve"), csrf=False).status_code == 400


def test_reject_then_reopen_from_the_page(hx, login, to_production, make, project, reviewer,
                                          editor):
    flag = make.feature(project)
    request = to_production(flag)
    login(hx, reviewer)
    rejected = hx.post(url(project, request, "reject"), data={"comment": "Wait for Monday"})
    assert rejected.status_code == 200 and "Re-open for review" in rejected.get_data(as_text=True)
    assert run_of(flag).status == "halted"
    login(hx, editor)
    reopened = hx.post(url(project, request, "reopen"))
    assert reopened.status_code == 200
    assert run_of(flag).status == "awaiting_approval"
    assert request_of(flag).status == "open"


def test_a_toggle_in_production_creates_a_change_request(client, hx, login, clock, make, project,
                                                         editor, envs):
    flag = make.feature(project, "banner", value_type="string")
    prod = envs["Production"]
    login(hx, editor)
    answer = hx.post(f"/projects/{project.id}/flags/{flag.id}/environments/{prod.id}/toggle",
                     data={"enabled": "true"})
    request = request_of(flag)
    assert answer.headers["HX-Redirect"] == url(project, request)
    assert state(flag, prod) == (False, None)
    login(client, editor)
    detail = client.get(f"/projects/{project.id}/flags/{flag.id}").get_data(as_text=True)
    assert "Create change request" in detail  # the value form in Production
    answer = hx.post(f"/projects/{project.id}/flags/{flag.id}/environments/{prod.id}/value",
                     data={"value": "hello"})
    assert answer.headers["HX-Redirect"] == url(project, request_of(flag))
    assert request_of(flag).changes[0]["after"] == {"enabled": False, "value": "hello"}
    # Staging needs no approvals: it changes at once.
    staging = envs["Staging"]
    hx.post(f"/projects/{project.id}/flags/{flag.id}/environments/{staging.id}/toggle",
            data={"enabled": "true", "from": "detail"})
    assert state(flag, staging) == (True, None)


def test_switches_in_an_environment_that_needs_approvals_say_so(client, login, make, project,
                                                                editor, envs):
    flag = make.feature(project, "banner")
    login(client, editor)
    switch = re.compile(r'class="switch[^"]*?( gated)?"[^>]*?aria-label="banner in (\w+)"')
    for page in (f"/projects/{project.id}/flags", f"/projects/{project.id}/flags/{flag.id}"):
        html = client.get(page).get_data(as_text=True)
        gated = {environment: bool(mark) for mark, environment in switch.findall(html)}
        assert gated == {"Development": False, "Staging": False, "Production": True}, page
        assert "Opens a change request: 1 approval needed" in html


def open_tab_count(body: str) -> str:
    """The number on the "Open" tab's badge."""
    tab = body[body.index('aria-label="Change request status"'):]
    tab = tab[tab.index(">Open"):]
    return tab[tab.index('class="badge">') + len('class="badge">'):tab.index("</span>")]


def test_tab_counts_honour_the_filters(client, login, to_production, make, project, editor,
                                       envs):
    checkout, search = make.feature(project, "checkout"), make.feature(project, "search")
    to_production(checkout)
    to_production(search)
    login(client, editor)
    assert open_tab_count(client.get(url(project)).get_data(as_text=True)) == "2"
    by_flag = client.get(url(project) + f"?flag={checkout.id}").get_data(as_text=True)
    assert open_tab_count(by_flag) == "1"
    staging = client.get(url(project) + f"?environment={envs['Staging'].id}")
    assert open_tab_count(staging.get_data(as_text=True)) == "0"
    production = client.get(url(project) + f"?environment={envs['Production'].id}")
    assert open_tab_count(production.get_data(as_text=True)) == "2"
