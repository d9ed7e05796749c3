"""Deployment windows: wall-clock hours in a time zone (zoneinfo), both DST transitions, and the
engine waiting to the minute of the next opening (its due_at moved: no busy loop)."""

from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.support.pipelines import START
from webapp.extensions import db
from webapp.models import FeatureState
from webapp.services.actors import Actor
from webapp.services.errors import Forbidden, Invalid
from webapp.services.runs import calendar, calendar_timeline, controls, sweep
from webapp.services.runs.calendar import Schedule, Window

from .conftest import entries, the_run, utc

BERLIN_OFFICE = [{"weekday": d, "opens": "09:00", "closes": "16:00"}
                 for d in ("Monday", "Tuesday", "Wednesday", "Thursday")]


def berlin(*windows: Window) -> Schedule:
    return Schedule(1, "Production", "Europe/Berlin", tuple(windows))


def test_next_opening_follows_the_weekly_hours_in_the_zone():
    office = berlin(*calendar.parse_windows(BERLIN_OFFICE))
    assert START.weekday() == 6  # Sunday 6 Jan 2030, 09:00 UTC
    assert calendar.next_window_opening(office, START) == utc(2030, 1, 7, 8, 0)  # 09:00 CET
    monday = utc(2030, 1, 7, 10, 30)
    assert calendar.next_window_opening(office, monday) == monday  # open: now
    assert calendar.window_closes_at(office, monday) == utc(2030, 1, 7, 15, 0)
    thursday_late = utc(2030, 1, 10, 15, 0)  # 16:00 in Berlin: closed (closes is exclusive)
    assert calendar.next_window_opening(office, thursday_late) == utc(2030, 1, 14, 8, 0)


def test_spring_forward_moves_the_opening_an_hour_earlier_in_utc():
    office = berlin(*calendar.parse_windows(BERLIN_OFFICE))
    # Berlin springs forward on Sunday 31 March 2030, 02:00 CET -> 03:00 CEST.
    assert calendar.next_window_opening(office, utc(2030, 3, 28, 15, 0)) == \
        utc(2030, 4, 1, 7, 0)  # Monday 09:00 CEST
    assert calendar.next_window_opening(office, utc(2030, 3, 28, 14, 59)) == \
        utc(2030, 3, 28, 14, 59)  # Thursday 15:59 CET: still open
    # A window inside the skipped hour opens when the wall clock jumps past its start.
    night = berlin(Window(6, 2 * 60 + 30, 4 * 60))  # Sunday 02:30-04:00
    spans = calendar.window_intervals(night, utc(2030, 3, 30, 0, 0), utc(2030, 4, 1, 0, 0))
    assert spans == [(utc(2030, 3, 31, 1, 0), utc(2030, 3, 31, 2, 0))]


def test_fall_back_moves_the_opening_an_hour_later_in_utc():
    office = berlin(*calendar.parse_windows(BERLIN_OFFICE))
    # Berlin falls back on Sunday 27 October 2030, 03:00 CEST -> 02:00 CET.
    assert calendar.next_window_opening(office, utc(2030, 10, 24, 14, 0)) == \
        utc(2030, 10, 28, 8, 0)  # Monday 09:00 CET (it was 07:00 UTC the Monday before)
    assert calendar.next_window_opening(office, utc(2030, 10, 20, 12, 0)) == \
        utc(2030, 10, 21, 7, 0)
    # A window over the repeated hour is open from its first 02:30 to 04:00 (CET).
    night = berlin(Window(6, 2 * 60 + 30, 4 * 60))
    spans = calendar.window_intervals(night, utc(2030, 10, 26, 0, 0), utc(2030, 10, 28, 0, 0))
    assert spans == [(utc(2030, 10, 27, 0, 30), utc(2030, 10, 27, 3, 0))]


@pytest.mark.parametrize("bad, field", [
    ([{"weekday": 7, "opens": "09:00", "closes": "10:00"}], "windows.0.weekday"),
    ([{"weekday": "Funday", "opens": "09:00", "closes": "10:00"}], "windows.0.weekday"),
    ([{"weekday": 0, "opens": "9", "closes": "10:00"}], "windows.0.opens"),
    ([{"weekday": 0, "opens": "24:00", "closes": "24:00"}], "windows.0.opens"),
    ([{"weekday": 0, "opens": "10:00", "closes": "09:00"}], "windows.0.closes"),
    ([{"weekday": 0, "opens": "09:00", "closes": "12:00"},
      {"weekday": 0, "opens": "11:00", "closes": "13:00"}], "windows"),
])
def test_bad_windows_are_refused_with_the_field(bad, field):
    with pytest.raises(Invalid) as caught:
        calendar.parse_windows(bad)
    assert field in caught.value.field_errors


def test_only_admins_set_windows_and_the_zone_must_exist(app, envs, editor, boss):
    production = envs["Production"]
    with pytest.raises(Forbidden):
        calendar.set_windows(production.id, "UTC", [], Actor.for_user(editor))
    with pytest.raises(Invalid) as caught:
        calendar.set_windows(production.id, "Mars/Olympus", [], boss)
    assert "timezone" in caught.value.field_errors
    calendar.set_windows(production.id, "Europe/Berlin",
                         calendar.parse_windows(BERLIN_OFFICE), boss)
    [entry] = entries(calendar.EVENT_WINDOWS)
    assert "Monday 09:00–16:00" in entry.message and entry.after["timezone"] == "Europe/Berlin"
    assert entry.before["windows"] == [] and len(entry.after["windows"]) == 4


def staging_state(flag, envs):
    db.session.rollback()
    return db.session.scalar(select(FeatureState.enabled).where(
        FeatureState.feature_id == flag.id, FeatureState.environment_id == envs["Staging"].id))


def test_a_due_stage_outside_the_window_waits_to_the_minute_of_the_next_opening(
        clock, make, project, editor, envs, make_pipeline, boss):
    pipeline = make_pipeline([
        {"env": "Development", "actions": [{"type": "TOGGLE_FEATURE", "enabled": True}]},
        {"env": "Staging", "trigger": "WAIT_FOR", "wait": 3600,
         "actions": [{"type": "TOGGLE_FEATURE", "enabled": True}]},
    ])
    calendar.set_windows(envs["Staging"].id, "Europe/Berlin",
                         calendar.parse_windows(BERLIN_OFFICE), boss)
    flag = make.feature(project, "checkout")
    bell = controls.add_flag(project, pipeline.id, flag.id, Actor.for_user(editor))
    sweep.advance(bell.run_id, bell.version)  # Development: no windows, applies at once
    assert the_run(flag).due_at == START + timedelta(hours=1)
    expected = calendar_timeline.run_times(the_run(flag))
    assert expected.stages[1].acts_at == utc(2030, 1, 7, 8, 0)
    assert expected.stages[1].note == "Staging: next window Monday 09:00"

    clock.move_to(START + timedelta(hours=1))  # Sunday 11:00 in Berlin: closed
    report = sweep.drain()
    run = the_run(flag)
    opening = utc(2030, 1, 7, 8, 0)  # Monday 09:00 in Berlin
    assert (run.status, run.due_at, run.hold_kind) == ("waiting", opening, "window")
    assert run.held_due_at == START + timedelta(hours=1)
    assert [b.due_at for b in report.bells] == [opening]  # one bell, at the opening
    assert staging_state(flag, envs) is False
    [held] = entries(calendar.EVENT_HELD, run_id=run.id)
    assert "outside its deployment windows until" in held.message

    clock.move_to(opening - timedelta(minutes=1))
    assert sweep.due_run_ids(10) == []  # nothing to do until the opening: no busy loop
    clock.move_to(opening)
    sweep.drain()
    run = the_run(flag)
    assert run.status == "launched" and run.hold_kind is None
    assert staging_state(flag, envs) is True
    assert len(entries(calendar.EVENT_HELD, run_id=run.id)) == 1


def test_a_phased_rollout_pauses_outside_the_windows_and_resumes_inside(
        clock, make, project, editor, envs, make_pipeline, boss):
    pipeline = make_pipeline([{"env": "Production", "actions": [
        {"type": "PHASED_ROLLOUT", "enabled": True, "initial": 25, "step": 25,
         "interval": 3600}]}])
    # Sundays 09:00-11:00 UTC only.
    calendar.set_windows(envs["Production"].id, "UTC", calendar.parse_windows(
        [{"weekday": 6, "opens": "09:00", "closes": "11:00"}]), boss)
    flag = make.feature(project, "rollout")
    bell = controls.add_flag(project, pipeline.id, flag.id, Actor.for_user(editor))
    sweep.advance(bell.run_id, bell.version)
    assert the_run(flag).rollout_percent == 25
    clock.move_to(START + timedelta(hours=1))
    sweep.drain()
    assert the_run(flag).rollout_percent == 50
    clock.move_to(START + timedelta(hours=2))  # 11:00: the window closed
    sweep.drain()
    run = the_run(flag)
    next_sunday = START + timedelta(days=7)
    assert (run.status, run.rollout_percent, run.due_at) == ("rolling_out", 50, next_sunday)
    clock.move_to(next_sunday)
    sweep.drain()
    assert the_run(flag).rollout_percent == 75
    clock.move_to(next_sunday + timedelta(hours=1))
    sweep.drain()
    assert the_run(flag).status == "launched"


def test_new_windows_look_again_at_flags_waiting_for_the_old_ones(
        clock, make, project, editor, envs, make_pipeline, boss):
    pipeline = make_pipeline([{"env": "Staging", "actions": [
        {"type": "TOGGLE_FEATURE", "enabled": True}]}])
    calendar.set_windows(envs["Staging"].id, "UTC", calendar.parse_windows(
        [{"weekday": 0, "opens": "09:00", "closes": "10:00"}]), boss)
    flag = make.feature(project)
    bell = controls.add_flag(project, pipeline.id, flag.id, Actor.for_user(editor))
    sweep.advance(bell.run_id, bell.version)
    assert the_run(flag).due_at == utc(2030, 1, 7, 9, 0)
    calendar.set_windows(envs["Staging"].id, "UTC", [], boss)  # always open now
    sweep.drain()
    assert the_run(flag).status == "launched"


def test_the_timeline_preview_counts_windows_and_known_freezes(clock, project, envs,
                                                               make_pipeline, boss):
    pipeline = make_pipeline([
        {"env": "Development", "actions": [{"type": "TOGGLE_FEATURE", "enabled": True}]},
        {"env": "Production", "trigger": "WAIT_FOR", "wait": 3600, "actions": [
            {"type": "PHASED_ROLLOUT", "enabled": True, "initial": 50, "step": 50,
             "interval": 7200}]},
    ], status="draft")
    calendar.set_windows(envs["Production"].id, "Europe/Berlin",
                         calendar.parse_windows(BERLIN_OFFICE), boss)
    plain = calendar_timeline.preview_times(pipeline.stages)
    dev, production = plain.stages
    assert (dev.acts_at, dev.note) == (START, None)
    assert production.due_at == START + timedelta(hours=1)
    assert production.acts_at == utc(2030, 1, 7, 8, 0)  # Monday 09:00 in Berlin
    assert production.note == "Production: next window Monday 09:00"
    assert production.done_at == utc(2030, 1, 7, 10, 0)  # the second step, inside the window
    assert plain.launch_at == utc(2030, 1, 7, 10, 0)
    assert plain.launch_text == "Expected launch Monday 07 Jan 10:00 UTC"
    calendar.create_freeze(boss, organisation_id=project.organisation_id,
                           project_id=project.id, starts_at=utc(2030, 1, 7, 0, 0),
                           ends_at=utc(2030, 1, 9, 0, 0), reason="Release review",
                           environment_ids=[envs["Production"].id])
    frozen = calendar_timeline.preview_times(pipeline.stages)
    assert frozen.stages[1].acts_at == utc(2030, 1, 9, 8, 0)  # Wednesday 09:00 in Berlin
    assert frozen.stages[1].hold.kind == "freeze"
    assert frozen.stages[1].note.startswith("Production: frozen until Wednesday 09 Jan 01:00")
    assert frozen.stages[1].note.endswith("Release review; next window Wednesday 09:00")
    assert calendar.next_window_text(envs["Production"].id) == \
        "Production: next window Monday 09:00"
    calendar.stop_line(boss, organisation_id=project.organisation_id, project_id=project.id,
                       reason="Incident")
    stopped = calendar_timeline.preview_times(pipeline.stages)
    assert stopped.launch_at is None and stopped.stages[0].acts_at is None
    assert stopped.launch_text.startswith("Expected launch unknown: Development: line stopped")
