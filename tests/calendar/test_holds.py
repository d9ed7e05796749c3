"""A flag the release calendar holds says why and until when, on its card, its flag page and
its run panel; the pipeline's timeline preview and the flag's expected launch account for
windows and known freezes."""

from datetime import UTC, datetime, timedelta
from html import unescape

import pytest
from sqlalchemy import select

from tests.calendar.conftest import MONDAY
from webapp.extensions import db
from webapp.models import PipelineRun
from webapp.services.actors import SYSTEM, Actor
from webapp.services.runs import calendar, controls, sweep

BERLIN_MORNINGS = [calendar.Window(day, 9 * 60, 10 * 60) for day in range(4)]  # Mon–Thu


@pytest.fixture
def flag_in_prod_wait(monday, make, project, editor, release):
    """A flag through Dev, waiting an hour for Production."""
    flag = make.feature(project, "new_checkout")
    controls.add_flag(project, release.id, flag.id, Actor.for_user(editor))
    sweep.drain()
    db.session.rollback()
    return flag


def run_of(flag):
    db.session.rollback()
    return db.session.scalar(select(PipelineRun).where(PipelineRun.feature_id == flag.id))


def pages(client, project, release, flag):
    """The board, the flag's run panel and the pipeline page, as text."""
    base = f"/projects/{project.id}"
    return {name: unescape(client.get(base + path).text) for name, path in [
        ("board", f"/pipelines/{release.id}/board"),
        ("panel", f"/flags/{flag.id}/pipeline"),
        ("pipeline", f"/pipelines/{release.id}"),
    ]}


def test_a_flag_due_outside_its_window_says_when_it_opens(
    monday, client, login, project, viewer, envs, release, flag_in_prod_wait
):
    calendar.set_windows(envs["Production"].id, "Europe/Berlin", BERLIN_MORNINGS, SYSTEM)
    login(client, viewer)
    before = pages(client, project, release, flag_in_prod_wait)
    # Added Monday 11:00 Berlin: Production would act at 12:00, after its window closed.
    assert "Production: next window Tuesday 09:00" in before["pipeline"]
    assert "acts Tuesday 09:00 Europe/Berlin" in before["pipeline"]
    assert "Expected launch: Tuesday 09:00 Europe/Berlin." in before["pipeline"]
    assert "Expected launch: Tuesday 09:00 Europe/Berlin." in before["panel"]

    monday.shift(3600)
    sweep.drain()
    run = run_of(flag_in_prod_wait)
    assert run.hold_kind == "window"
    assert run.due_at == datetime(2030, 1, 8, 8, 0, tzinfo=UTC)
    after = pages(client, project, release, flag_in_prod_wait)
    note = ("Waiting for the deployment window. Production: next window Tuesday 09:00 "
            "Europe/Berlin.")
    assert note in after["board"] and note in after["panel"]
    assert "Expected launch: Tuesday 09:00 Europe/Berlin." in after["panel"]


def test_a_flag_held_by_a_freeze_or_a_stop_says_why(
    monday, client, login, project, viewer, envs, release, flag_in_prod_wait
):
    calendar.create_freeze(SYSTEM, organisation_id=project.organisation_id,
                           project_id=project.id, starts_at=MONDAY,
                           ends_at=MONDAY + timedelta(days=3), reason="Holiday freeze",
                           environment_ids=[envs["Production"].id])
    login(client, viewer)
    assert run_of(flag_in_prod_wait).hold_kind == "freeze"  # held when the freeze started
    seen = pages(client, project, release, flag_in_prod_wait)
    note = ("Held by a freeze of Production until Thursday 10:00: Holiday freeze. It continues "
            "then with 1 hour left.")
    assert note in seen["board"] and note in seen["panel"]
    assert "Expected launch: Thursday 11:00." in seen["panel"]
    assert ("Production: frozen until Thursday 10 Jan 10:00 UTC by Railyard: Holiday freeze"
            in seen["pipeline"])
    assert "Expected launch: Thursday 10:00." in seen["pipeline"]

    calendar.stop_line(SYSTEM, organisation_id=project.organisation_id, project_id=project.id,
                       reason="Incident 4711")
    calendar.lift_freeze(SYSTEM, run_of(flag_in_prod_wait).hold_id,
                         organisation_id=project.organisation_id, project_id=project.id)
    assert run_of(flag_in_prod_wait).hold_kind == "stop"  # handed from the freeze to the stop
    seen = pages(client, project, release, flag_in_prod_wait)
    note = ("Held: the line is stopped by Railyard: Incident 4711. It continues when an admin "
            "lifts it with 1 hour left.")
    assert note in seen["board"] and note in seen["panel"]
    assert ("Expected launch: not known (the line is stopped until an admin lifts it)."
            in seen["panel"])
