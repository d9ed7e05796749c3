"""The progress board, the pipelines overview and the launch chart, as users see them."""

from datetime import timedelta

import pytest
from sqlalchemy import select

from webapp.extensions import db
from webapp.models import AuditEntry, PipelineRun
from webapp.services.actors import Actor
from webapp.services.pages import board
from webapp.services.runs import controls, sweep

from .conftest import START


def fresh(run_id):
    """The run as committed now (the test's session may hold an older read snapshot)."""
    db.session.rollback()
    return db.session.get(PipelineRun, run_id)


def board_url(project, pipeline, **args):
    query = "&".join(f"{k}={v}" for k, v in args.items())
    return f"/projects/{project.id}/pipelines/{pipeline.id}/board" + (f"?{query}" if query else "")


@pytest.fixture
def as_viewer(client, login, viewer):
    return login(client, viewer)


@pytest.fixture
def hx_editor(hx, login, editor):
    return login(hx, editor)


# --- page and fragment ----------------------------------------------------------------------------


def test_page_shows_stages_in_words_cards_and_launched_column(clock, as_viewer, project, pipe, put):
    put(pipe, 1, names=["checkout_v2"])
    put(pipe, 0, "launched", names=["old_flag"], ended_at=START - timedelta(days=2))
    response = as_viewer.get(board_url(project, pipe))
    assert response.status_code == 200
    html = response.text
    assert "<html" in html and "HX-Request" in response.headers["Vary"]
    for words in (
        "Dev",
        "QA",
        "Prod",
        "Staging · after 1d",
        "Development · at once",
        "Enable for everyone",
        "Phased rollout: enable for 10 %, +30 % every 1 hour",
        "Launched",
        "last 30 days",
        "checkout_v2",
        "old_flag",
    ):
        assert words in html, words
    # The page's watcher checks every 2 s while a flag can move by itself (issue 13).
    assert 'id="change_watch"' in html and 'hx-trigger="every 2s' in html
    assert f'href="/projects/{project.id}/flags/' in html
    assert "Pause" not in html  # a viewer gets no controls
    assert 'role="img"' in html and "Flags launched per day" in html


def test_fragment_is_the_board_alone_and_refreshes_on_project_changes(
    clock, hx, login, viewer, project, pipe, put
):
    put(pipe, 1, names=["checkout_v2"])
    response = login(hx, viewer).get(board_url(project, pipe))
    assert response.status_code == 200
    assert "<html" not in response.text and response.text.lstrip().startswith('<div id="board"')
    assert "HX-Request" in response.headers["Vary"]
    assert 'hx-trigger="project-changed from:body"' in response.text
    assert "change_watch" not in response.text  # the watcher is the page's, not the block's


@pytest.mark.parametrize("status", ["launched", "awaiting_approval", "paused", "halted"])
def test_a_board_where_nothing_moves_by_itself_checks_at_the_idle_rate(
    clock, hx, client, login, viewer, project, pipe, put, status
):
    """Idle boards keep watching (every 10 s), never every 2 s: nothing there moves alone."""
    put(pipe, 0 if status == "launched" else 1, status, names=["some_flag"])
    response = login(hx, viewer).get(board_url(project, pipe))
    assert response.status_code == 200 and "some_flag" in response.text
    page = login(client, viewer).get(board_url(project, pipe))
    assert page.status_code == 200
    assert 'hx-trigger="every 10s' in page.text and "every 2s" not in page.text


def test_cards_say_status_what_is_done_next_and_time_left(clock, as_viewer, project, pipe, put):
    put(pipe, 1, names=["waiting_one"])
    put(pipe, 1, "paused", names=["paused_one"], paused_remaining_seconds=7200)
    put(pipe, 1, "halted", names=["halted_one"], last_error="value does not fit")
    put(
        pipe,
        2,
        "rolling_out",
        names=["rolling_one"],
        rollout_percent=40,
        due_at=START + timedelta(minutes=30),
    )
    put(pipe, 2, "awaiting_approval", names=["approval_one"], due_at=None)
    clock.shift(3600)
    html = as_viewer.get(board_url(project, pipe)).text
    assert 'Waiting · <span class="countdown">23h left</span>' in html
    assert "Done: 1 of 3 stages. Next: Acts in Staging, then Prod." in html
    assert "Paused (2h left)" in html
    assert "Halted: value does not fit" in html
    assert 'Rolling out at 40 % · <span class="countdown">due now</span>' in html
    assert "Next: 70 % in Production." in html
    assert "Awaiting approval" in html and "Applies when approved, then launch" in html
    assert "In since 2030-01-06 09:00 UTC. Done:" in html
    assert '<p class="by-status">1 halted · 1 paused · 1 waiting</p>' in html


# --- fast with many flags: counts, first cards, show more, search ---------------------------------


def test_columns_show_counts_and_first_cards_then_more_on_demand(
    clock, hx, login, viewer, project, pipe, put
):
    first = board.per_column_default(3)
    assert first == 16 and board.per_column_default(30) == 2
    put(pipe, 1, n=first + board.PAGE + 5, prefix="many")
    login(hx, viewer)
    html = hx.get(board_url(project, pipe)).text
    assert html.count('class="flag-card') == first
    assert '<span class="count" title="flags">41</span>' in html
    assert "Show more" in html and "(25 not shown)" in html
    assert "many_1_00000" in html and "many_1_00016" not in html  # oldest first
    more_url = board_url(project, pipe, s1=first + 20)
    assert f'<a class="show-more" href="?s1={first + 20}">' in html and 'hx-boost="true"' in html
    more = hx.get(more_url).text
    assert more.count('class="flag-card') == 36 and "(5 not shown)" in more
    assert f'hx-get="{more_url}"' in more  # the poll keeps the column open
    assert f'href="?s1={first + 40}"' in more
    assert hx.get(board_url(project, pipe, s1=60)).text.count('class="flag-card') == 41


def test_search_filters_cards_and_counts_by_flag_name(clock, hx, login, viewer, project, pipe, put):
    put(pipe, 1, names=["checkout_alpha", "checkout_beta", "search_box"])
    put(pipe, 2, names=["ALPHA_banner"])
    html = login(hx, viewer).get(board_url(project, pipe, q="alpha")).text
    assert "checkout_alpha" in html and "ALPHA_banner" in html
    assert "checkout_beta" not in html and "search_box" not in html
    assert "<strong>4</strong> in flight" in html  # the whole pipeline still counts
    assert "matching “alpha”" in html and "q=alpha" in html
    nothing = hx.get(board_url(project, pipe, q="100%_")).text
    assert "No matching flags." in nothing and "checkout" not in nothing


def test_query_count_does_not_grow_with_flags(
    clock, hx, login, viewer, project, pipe, put, statements
):
    login(hx, viewer)

    def measure():
        with statements() as seen:
            assert hx.get(board_url(project, pipe)).status_code == 200
        return len(seen)

    put(pipe, 1, n=4, prefix="few")
    put(pipe, 2, "rolling_out", n=3, prefix="few", rollout_percent=10)
    put(pipe, 0, "launched", n=3, prefix="few")
    small = measure()
    put(pipe, 1, n=100, prefix="lots")
    put(pipe, 2, "rolling_out", n=50, prefix="lots", rollout_percent=40)
    put(pipe, 0, "launched", n=40, prefix="lots")
    assert measure() == small
    # 15 before the cards showed their change request, their reads and their health checks.
    assert small <= 16


# --- roles and controls ---------------------------------------------------------------------------


def test_non_members_get_404_and_deleted_or_foreign_pipelines_too(
    clock, client, login, make, project, pipe
):
    stranger = make.user()
    login(client, stranger)
    assert client.get(board_url(project, pipe)).status_code == 404
    assert client.get(f"/projects/{project.id}/board").status_code == 404
    other = make.project("Other")
    boss = make.user(project=other, role="admin", email="boss@example.com")
    login(client, boss)  # a member elsewhere: this project's pipeline under theirs is not found
    assert client.get(f"/projects/{other.id}/pipelines/{pipe.id}/board").status_code == 404
    member = make.user(project=project, role="viewer", email="lead@example.com")
    pipe.deleted_at = START
    db.session.commit()
    login(client, member)
    assert client.get(board_url(project, pipe)).status_code == 404
    assert client.get(f"/projects/{project.id}/pipelines/{pipe.id}/launches").status_code == 404


def test_viewer_gets_no_controls_and_cannot_post_them(
    clock, client, login, viewer, project, pipe, put
):
    [run_id] = put(pipe, 1, names=["checkout"])
    login(client, viewer)
    assert "card-controls" not in client.get(board_url(project, pipe)).text
    assert client.post(f"/projects/{project.id}/runs/{run_id}/pause").status_code == 403
    assert fresh(run_id).status == "waiting"


def test_editor_sees_controls_with_confirmations(clock, client, login, editor, project, pipe, put):
    [waiting_id] = put(pipe, 1, names=["waiting_one"])
    [paused_id] = put(pipe, 1, "paused", names=["paused_one"], paused_remaining_seconds=60)
    [halted] = put(pipe, 1, "halted", names=["halted_one"], last_error="x")
    login(client, editor)
    html = client.get(board_url(project, pipe)).text
    assert html.count(">Manage</a>") == 3 and "card-controls" not in html
    assert f'<a class="manage" href="?run={halted}">Manage</a>' in html

    def controls(run_id):
        page = client.get(board_url(project, pipe, run=run_id)).text
        assert page.count("card-controls") == 1 and page.count(">Manage</a>") == 2
        return page

    waiting = controls(waiting_id)
    assert (
        'aria-label="Pause waiting_one"' in waiting
        and 'aria-label="Advance now waiting_one"' in waiting
    )
    assert 'hx-confirm="Remove waiting_one from the pipeline?' in waiting
    assert 'hx-confirm="Roll back waiting_one?' in waiting
    assert 'aria-label="Resume paused_one"' in controls(paused_id)
    halted_page = controls(halted)
    assert f'hx-post="/projects/{project.id}/runs/{halted}/retry"' in halted_page
    assert 'aria-label="Pause halted_one"' not in halted_page
    # without JavaScript, remove and roll back open the confirmation page first
    assert (
        f'formaction="/projects/{project.id}/runs/{halted}/rollback" formmethod="get"'
    ) in halted_page
    assert 'name="csrf_token"' in halted_page
    assert f'href="{board_url(project, pipe)}"' in halted_page  # Close


def test_pause_from_a_card_refreshes_the_board(clock, hx_editor, project, pipe, put):
    [run_id] = put(pipe, 1, names=["checkout"])
    clock.shift(600)
    board = hx_editor.get(board_url(project, pipe, run=run_id)).text
    assert 'hx-swap="none"' in board and "project-changed from:body" in board
    # flag-changed makes the page's watcher check at once; it answers project-changed.
    page = hx_editor.get(board_url(project, pipe),
                         headers={"HX-History-Restore-Request": "true"}).text
    assert "flag-changed from:body" in page.split('id="change_watch"')[1].split(">")[0]
    response = hx_editor.post(f"/projects/{project.id}/runs/{run_id}/pause")
    assert response.status_code == 200 and response.headers["HX-Trigger"] == "flag-changed"
    run = fresh(run_id)
    assert run.status == "paused" and run.paused_remaining_seconds == 86400 - 600
    assert "Paused (23h 50m left)" in hx_editor.get(board_url(project, pipe)).text
    entries = db.session.scalars(
        select(AuditEntry.event_type).where(AuditEntry.run_id == run_id)
    ).all()
    assert "RELEASE_PIPELINE_FEATURE_PAUSED" in entries


def test_advance_now_moves_the_flag_to_the_next_column(
    clock, hx_editor, project, pipe, editor, make
):
    flag = make.feature(project, "checkout")
    controls.add_flag(project, pipe.id, flag.id, Actor.for_user(editor))
    sweep.drain()
    run = db.session.scalar(select(PipelineRun).where(PipelineRun.feature_id == flag.id))
    assert run.stage_position == 1
    response = hx_editor.post(f"/projects/{project.id}/runs/{run.id}/advance")
    assert response.status_code == 200
    db.session.rollback()
    sweep.drain()
    assert fresh(run.id).status == "rolling_out"
    html = hx_editor.get(board_url(project, pipe)).text
    prod = html[html.index('id="col-s2"') : html.index('id="col-launched"')]
    assert "checkout" in prod and "Rolling out at 10 %" in prod


# --- overview and the launch chart ----------------------------------------------------------------


def test_overview_lists_published_pipelines_with_bars_in_flight_and_launched(
    clock, client, login, viewer, project, pipe, make_pipeline, put
):
    make_pipeline([{"name": "Draft stage"}], name="Draft one", status="draft")
    put(pipe, 1, n=3)
    put(pipe, 2, n=1)
    put(pipe, 0, "launched", n=2, ended_at=START - timedelta(days=3))
    put(pipe, 0, "launched", n=5, prefix="old", ended_at=START - timedelta(days=40))
    login(client, viewer)
    html = client.get(f"/projects/{project.id}/board").text
    assert "Web release" in html and "Draft one" not in html
    assert 'aria-label="Flags per stage: Dev 0, QA 3, Prod 1"' in html
    assert '<td class="num">4</td>' in html and '<td class="num">2</td>' in html
    assert f'href="{board_url(project, pipe)}"' in html
    fragment = login(client, viewer).get(
        f"/projects/{project.id}/board", headers={"HX-Request": "true"}
    )
    assert "<html" not in fragment.text and 'id="overview"' in fragment.text


def test_launch_chart_counts_launches_per_day(clock, client, login, viewer, project, pipe, put):
    put(pipe, 0, "launched", n=3, ended_at=START - timedelta(days=1, hours=2))
    put(pipe, 0, "launched", n=1, prefix="today", ended_at=START - timedelta(hours=1))
    put(pipe, 0, "launched", n=4, prefix="old", ended_at=START - timedelta(days=31))
    login(client, viewer)
    response = client.get(
        f"/projects/{project.id}/pipelines/{pipe.id}/launches", headers={"HX-Request": "true"}
    )
    html = response.text
    assert response.status_code == 200 and "<html" not in html and 'id="launch_chart"' in html
    assert "2030-01-05: 3 launched" in html and "2030-01-06: 1 launched" in html
    assert "2029-12-08: 0 launched" in html and "2029-12-07" not in html
    assert html.count("<rect") == 30
    assert "<strong>4</strong>" in html and "<script" not in html
