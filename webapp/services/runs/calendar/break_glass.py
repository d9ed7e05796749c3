"""Committing a change request into a frozen environment (or while the line is stopped):
only an admin giving a reason may, and the audit log says so.
"""

from webapp.clock import now as clock_now
from webapp.services.actors import Actor
from webapp.services.errors import Conflict
from webapp.services.governance import audit
from webapp.services.runs.calendar.holds import hold_at
from webapp.services.runs.calendar.records import (
    EVENT_BREAK_GLASS,
    MAX_REASON,
    Hold,
    Memo,
    describe_hold,
)
from webapp.services.runs.calendar.scope import environment_of, may_administer


def check_commit(environment_id: int, actor: Actor, break_glass_reason: str | None = None,
                 *, request_id: int | None = None, project_id: int | None = None) -> Hold | None:
    """Whether a change request into the environment may be committed now. While it is frozen
    (or the line is stopped) only an admin giving a reason may (break glass): audited
    CHANGE_REQUEST_BREAK_GLASS in the caller's transaction. Raises Conflict (no reason, or not
    an admin). Returns the hold broken, or None when nothing held it."""
    moment = clock_now()
    memo = Memo()
    hold = hold_at(environment_id, moment, memo, windows=False)
    if hold is None:
        return None
    env_project, organisation_id, name = environment_of(environment_id, memo)
    reason = (break_glass_reason or "").strip()
    what = "frozen" if hold.kind == "freeze" else "held: the line is stopped"
    if not reason:
        raise Conflict(f"{name} is {what} ({describe_hold(hold)}). Only an admin giving a "
                       "reason can commit now (break glass).")
    if not may_administer(actor, organisation_id, env_project):
        raise Conflict(f"{name} is {what}; only an admin can break glass.")
    audit.record(actor, EVENT_BREAK_GLASS,
                 f"Break glass: change request #{request_id} committed into {name} while "
                 f"{what} by {actor.label}: {reason[:MAX_REASON]}",
                 project_id=project_id or env_project, environment_id=environment_id,
                 object_type="change_request", object_id=request_id,
                 object_label=f"#{request_id}", change_request_id=request_id,
                 after={"hold": hold.as_dict(), "reason": reason[:MAX_REASON]},
                 organisation_id=organisation_id)
    return hold
