"""Browser journeys through the builder: Debian's chromium, the app on a live server."""

import re

import pytest
from playwright.sync_api import expect

from tests.support.browser import htmx_settled

pytestmark = pytest.mark.e2e


def test_build_publish_and_clone_a_three_stage_pipeline(
    page, live_server, sign_in, editor, project, make
):
    make.segment(project, "Beta testers")
    sign_in("editor@example.com")
    page.goto(f"{live_server}/projects/{project.id}/pipelines")
    page.get_by_label("Pipeline name").fill("Web release")
    page.get_by_role("button", name="Create pipeline").click()
    expect(page.get_by_role("heading", name=re.compile("Web release"))).to_be_visible()
    # The new page comes whole, with the project's navigation around the builder.
    expect(page.get_by_role("navigation", name="Project")).to_be_visible()

    for n, env in enumerate(("Development", "Staging", "Production"), start=1):
        page.get_by_label("New stage name").fill(env)
        page.get_by_label("Environment of the new stage").select_option(label=env)
        page.get_by_role("button", name="Add stage").click()
        expect(page.get_by_role("listitem", name=f"Stage {n}", exact=True)).to_be_visible()
        htmx_settled(page)

    stages = [page.get_by_role("listitem", name=f"Stage {n}", exact=True) for n in (1, 2, 3)]
    # Staging waits one day, then enables the flag for a segment.
    stages[1].get_by_label("Trigger").select_option("WAIT_FOR")
    # The trigger is saved first (a new wait is one hour), then the wait is edited.
    expect(page.locator(".timeline-sentence")).to_contain_text("Staging after 1 hour")
    htmx_settled(page)
    stages[1].get_by_label("Wait for").fill("1")
    stages[1].get_by_label("Wait unit").select_option("days")
    stages[1].get_by_label("Wait for").press("Tab")
    expect(page.locator(".timeline-sentence")).to_contain_text("Staging after 1 day")

    for n, stage in enumerate(stages):
        stage.get_by_role("link", name="+ Add an action").click()
        if n == 1:
            stage.get_by_label("Action", exact=True).select_option("TOGGLE_FEATURE_FOR_SEGMENT")
            stage.get_by_label("Segment").select_option(label="Beta testers")
        elif n == 2:
            stage.get_by_label("Action", exact=True).select_option("PHASED_ROLLOUT")
            stage.get_by_label("Start at %").fill("10")
            stage.get_by_label("Increase by %").fill("15")
            stage.get_by_label("Every", exact=True).fill("3")
            stage.get_by_label("Interval unit").select_option("hours")
        stage.get_by_role("button", name="Add action").click()
        expect(stage.get_by_text("No actions yet.")).to_have_count(0)

    # Reorder: Production up, then back down (the buttons post through htmx).
    page.get_by_role("button", name="Move stage 3 up").click()
    expect(page.get_by_role("listitem", name="Stage 2", exact=True).get_by_label(
        "Stage name", exact=True)).to_have_value("Production")
    page.get_by_role("button", name="Move stage 2 down").click()
    expect(page.get_by_role("listitem", name="Stage 3", exact=True).get_by_label(
        "Stage name", exact=True)).to_have_value("Production")

    expect(page.locator(".timeline-sentence")).to_have_text(
        "If a flag is added now: Development at once; Staging after 1 day; Production after 1 day, "
        "phased 10 % → 100 % over 18 hours. Launched after 1 day 18 hours.")
    page.get_by_role("link", name="Publish…").click()
    expect(page.get_by_role("heading", name="Publish “Web release”?")).to_be_visible()
    expect(page.locator(".confirm-stages > li")).to_have_count(3)
    expect(page.get_by_text("Enable for segment Beta testers")).to_be_visible()
    page.get_by_role("button", name="Publish pipeline").click()

    expect(page.get_by_text("Published", exact=True)).to_be_visible()
    expect(page.get_by_label("Stage name", exact=True)).to_have_count(0)
    expect(page.get_by_role("button", name="Add stage")).to_have_count(0)
    expect(page.locator(".timeline-sentence")).to_contain_text("Staging after 1 day")

    page.get_by_role("link", name="Clone…").click()
    expect(page.get_by_label("Name of the copy")).to_have_value("Web release (copy)")
    page.get_by_role("button", name="Clone pipeline").click()
    expect(page.get_by_role("heading", name=re.compile(r"Web release \(copy\)"))).to_be_visible()
    expect(page.get_by_text("Draft", exact=True)).to_be_visible()
    expect(page.get_by_label("Stage name", exact=True)).to_have_count(3)


def test_inline_error_beside_the_wait(page, live_server, sign_in, editor, project, build):
    pipeline = build.pipeline(project, stages=[{"name": "Dev", "env": "Development"}])
    sign_in("editor@example.com")
    page.goto(f"{live_server}/projects/{project.id}/pipelines/{pipeline.id}")
    stage = page.get_by_role("listitem", name="Stage 1", exact=True)
    stage.get_by_label("Trigger").select_option("WAIT_FOR")
    expect(page.locator(".timeline-sentence")).to_contain_text("Dev after 1 hour")
    stage.get_by_label("Wait for").fill("0")
    stage.get_by_label("Wait for").press("Tab")
    expect(stage.get_by_text("The wait must be more than 0.")).to_be_visible()
    expect(stage.get_by_label("Wait for")).to_have_attribute("aria-invalid", "true")
