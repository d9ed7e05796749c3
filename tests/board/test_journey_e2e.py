"""A team lead (viewer) watches a flag move from one column to the next without reloading: the
board polls its fragment every 2 s while flags are in flight. The move is driven in this
process (advance now + the engine), as a worker would."""

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from webapp.extensions import db
from webapp.models import PipelineRun
from webapp.services.actors import Actor
from webapp.services.runs import controls, sweep

# The board's queries are PostgreSQL-specific there: make test runs this on both databases.
pytestmark = [pytest.mark.e2e, pytest.mark.on_postgresql]


def test_viewer_watches_a_flag_move_to_the_next_column(
    page, live_server, sign_in, make, project, viewer, editor, pipe
):
    flag = make.feature(project, "new_checkout")
    controls.add_flag(project, pipe.id, flag.id, Actor.for_user(editor))
    sweep.drain()
    run_id = db.session.scalar(select(PipelineRun.id).where(PipelineRun.feature_id == flag.id))
    db.session.rollback()

    sign_in(viewer.email)
    page.goto(f"{live_server}/projects/{project.id}/pipelines/{pipe.id}/board")
    qa = page.get_by_role("region", name="QA")
    prod = page.get_by_role("region", name="Prod")
    expect(qa.get_by_role("link", name="new_checkout")).to_be_visible()
    expect(qa).to_contain_text("Waiting")
    expect(prod).to_contain_text("No flags here.")
    expect(page.get_by_role("button", name="Pause")).to_have_count(0)  # a viewer changes nothing
    page.evaluate("window.__sameDocument = true")

    controls.advance_now(project, run_id, Actor.for_user(editor))
    sweep.drain()
    db.session.rollback()

    expect(prod.get_by_role("link", name="new_checkout")).to_be_visible(timeout=10_000)
    expect(prod).to_contain_text("Rolling out at 10 %")
    expect(qa.get_by_role("link", name="new_checkout")).to_have_count(0)
    assert page.evaluate("window.__sameDocument") is True  # no reload happened

    page.get_by_role("link", name="new_checkout").click()
    expect(page.get_by_role("list", name="Stages")).to_be_visible()
    expect(page.locator(".track .stop.current")).to_contain_text("Prod")
    expect(page.locator(".track .stop.done").first).to_contain_text("Dev")
