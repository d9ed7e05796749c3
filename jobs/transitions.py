"""Stage transitions: the jobs that advance runs, and ringing the bell for them after a commit.

A job advances the runs it was rung for and then drains whatever else is due, so one job does
many transitions (a job per transition would cap the engine at the queue's rate). Job ids are
deterministic (`advance-{run}-v{version}`) and enqueued with `unique=True`: ringing twice for
the same version queues one job. Ringing never raises: if Redis is away, the sweeper finds
the runs in the database.
"""

import contextlib
import logging
import time
from collections.abc import Iterable
from datetime import UTC, datetime

from flask import current_app
from rq.exceptions import DuplicateJobError

from jobs import outbox
from webapp import redis_conn
from webapp.clock import now
from webapp.services.runs import sweep
from webapp.services.runs.planning import Bell
from webapp.services.runs.sweep import Report

log = logging.getLogger(__name__)
BATCH = 1000
# Beyond this many future bells at once, ring one job per due second instead of one per run.
PER_RUN_SCHEDULE_LIMIT = 50
JOB_TIMEOUT = 600


def advance(run_id: int, version: int | None = None) -> dict:
    """Advance one run (if still at `version` and due), then drain other due runs."""
    report = sweep.advance(run_id, version)
    return _finish(report)


def advance_many(pairs: list[tuple[int, int]]) -> dict:
    """Advance several runs, then drain other due runs."""
    report = sweep.advance_many([(int(r), int(v)) for r, v in pairs])
    return _finish(report)


def drain(until: float | None = None) -> dict:
    """Advance every run that is due now; rung for a due second that many runs share.

    RQ's scheduler counts whole seconds and may fire up to a second early, so the job keeps
    draining, waking at each next due time, until the end of its second (`until`, epoch
    seconds): the lag stays at the processing time instead of a scheduler tick.
    """
    report = sweep.Report()
    deadline = until or 0.0
    for _ in range(20):  # bounded: a frozen test clock never reaches `until`
        left = deadline - now().timestamp()
        if left <= 0 or left > 2:
            break
        upcoming = sweep.next_due_at()
        if upcoming is None or upcoming.timestamp() > deadline:
            break
        time.sleep(max(0.0, min(left, upcoming.timestamp() - now().timestamp())))
        more = sweep.drain(current_app.config.get("ENGINE_DRAIN_LIMIT", 5000))
        report.moved += more.moved
        report.failed += more.failed
        report.bells += more.bells
    return _finish(report)


def _finish(report: Report) -> dict:
    more = sweep.drain(current_app.config.get("ENGINE_DRAIN_LIMIT", 5000))
    bells = report.bells + more.bells
    ring(bells)
    moved = report.moved + more.moved
    if moved:

        outbox.ring()
    return {"moved": moved, "failed": report.failed + more.failed, "bells": len(bells)}


def job_id(bell: Bell) -> str:
    # A bell rung again because its job fired early gets its own id: the first job still exists.
    return f"advance-{bell.run_id}-v{bell.version}{'-early' if bell.early else ''}"


def ring(bells: Iterable[Bell]) -> None:
    """Enqueue advances for `bells` (after the commit that made them): at once when due, with
    RQ's scheduler when later. Failures are logged, never raised."""
    bells = list(bells)
    if not bells:
        return
    try:
        _ring(bells)
    except Exception:  # noqa: BLE001 — Redis down or flushed mid-call: the sweeper recovers
        log.warning("could not enqueue %d advance job(s); the sweeper will find them",
                    len(bells), exc_info=True)


def _ring(bells: list[Bell]) -> None:
    queue = redis_conn.queue()
    current = now()
    due = [b for b in bells if b.due_at <= current]
    later = [b for b in bells if b.due_at > current]
    if len(due) == 1:
        _unique(queue.enqueue, advance, due[0].run_id, due[0].version,
                job_id=job_id(due[0]), job_timeout=JOB_TIMEOUT)
    else:
        for start in range(0, len(due), BATCH):
            chunk = due[start:start + BATCH]
            _unique(queue.enqueue, advance_many, [(b.run_id, b.version) for b in chunk],
                    job_id=f"{job_id(chunk[0])}-n{len(chunk)}", job_timeout=JOB_TIMEOUT)
    if len(later) <= PER_RUN_SCHEDULE_LIMIT:
        for bell in later:
            _unique(queue.enqueue_at, _naive_utc(bell.due_at), advance, bell.run_id, bell.version,
                    job_id=job_id(bell), job_timeout=JOB_TIMEOUT)
        return
    seconds = sorted({int(bell.due_at.timestamp()) for bell in later})
    for second in seconds:
        _unique(queue.enqueue_at, datetime.fromtimestamp(second, UTC).replace(tzinfo=None), drain,
                second + 1, job_id=f"advance-due-{second}", job_timeout=JOB_TIMEOUT)


def _naive_utc(moment: datetime) -> datetime:
    # RQ reads naive datetimes as UTC.
    return moment.astimezone(UTC).replace(tzinfo=None)


def _unique(method, *args, **kwargs) -> None:
    with contextlib.suppress(DuplicateJobError):  # already rung for this version
        method(*args, unique=True, **kwargs)
