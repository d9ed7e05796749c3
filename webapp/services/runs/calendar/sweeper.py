"""The sweeper's pass over the calendar: it starts and ends freezes whose time came and
releases any run whose hold is no longer active, so a flushed Redis or a killed worker loses
nothing (the database is the truth).
"""

from datetime import datetime

from sqlalchemy import or_, select

from webapp.clock import now as clock_now
from webapp.extensions import db
from webapp.models import Freeze, LineStop, PipelineRun
from webapp.services.runs.calendar.freezes import activate_freeze, end_freeze
from webapp.services.runs.calendar.held_runs import release_hold
from webapp.services.runs.calendar.records import HoldKind, Released
from webapp.services.runs.planning import start_writing


def tick(moment: datetime | None = None) -> Released:
    """One pass of the sweeper: start freezes whose time came, end those whose time is up,
    release runs whose freeze or stop no longer holds. Each freeze in its own transaction
    (compare-and-sets: several sweepers are safe). Returns what was released (bells to ring)."""
    moment = moment or clock_now()
    total = Released()
    starting = list(db.session.scalars(select(Freeze.id).where(
        Freeze.activated_at.is_(None), Freeze.lifted_at.is_(None), Freeze.starts_at <= moment,
        Freeze.ends_at > moment)))
    ending = list(db.session.scalars(select(Freeze.id).where(
        Freeze.activated_at.is_not(None), Freeze.released_at.is_(None),
        or_(Freeze.ends_at <= moment, Freeze.lifted_at.is_not(None)))))
    stale = _stale_holds(moment)
    db.session.rollback()
    for freeze_id in starting:
        start_writing()
        freeze = db.session.get(Freeze, freeze_id)
        if freeze is not None:
            activate_freeze(freeze, moment)
        db.session.commit()
    for freeze_id in ending:
        start_writing()
        freeze = db.session.get(Freeze, freeze_id)
        if freeze is not None:
            _merge(total, end_freeze(freeze, moment))
        db.session.commit()
    for kind, hold_id in stale:
        start_writing()
        _merge(total, release_hold(kind, hold_id, moment))
        db.session.commit()
    return total


def _merge(total: Released, part: Released) -> None:
    total.resumed += part.resumed
    total.still_held += part.still_held
    total.bells.extend(part.bells)
    if part.first_due is not None:
        total.first_due = min(filter(None, (total.first_due, part.first_due)))
    if part.last_due is not None:
        total.last_due = max(filter(None, (total.last_due, part.last_due)))


def _stale_holds(moment: datetime) -> list[tuple[HoldKind, int]]:
    """Freezes and stops that hold runs but no longer hold anything (ended, lifted): a lift or
    an end that raced with a transition holding a run leaves such runs; these release them."""
    held = db.session.execute(
        select(PipelineRun.hold_kind, PipelineRun.hold_id)
        .where(PipelineRun.hold_kind.in_(("freeze", "stop")), PipelineRun.hold_id.is_not(None),
               PipelineRun.ended_at.is_(None))
        .distinct()).all()
    stale: list[tuple[HoldKind, int]] = []
    for kind, hold_id in held:
        if hold_id is None:
            continue
        if kind == "stop":
            stop = db.session.get(LineStop, hold_id)
            if stop is None or stop.lifted_at is not None:
                stale.append(("stop", hold_id))
        else:
            freeze = db.session.get(Freeze, hold_id)
            if freeze is None or freeze.lifted_at is not None or not (
                    freeze.starts_at <= moment < freeze.ends_at):
                stale.append(("freeze", hold_id))
    return stale
