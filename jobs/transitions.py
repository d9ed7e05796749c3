"""Stage transitions: the jobs that advance runs, and ringing the bell for them after a commit.

A job advances the runs it was rung for and then drains whatever else is due, so one job does
many transitions (a job per transition would cap the engine at the queue's rate). Runs due
later get one job per second they fall due in (`advance-due-{second}`), whatever their number:
the job starts in the second before and passes over the database every tick until its second
ends, moving what fell due meanwhile in one batch per stage. Runs due now get a job each
(`advance-{run}-v{version}`), unless such a drain job is passing: then its next pass moves them,
and their bell wakes it for that pass at once (a flag just added never waits for a tick).
Job ids are deterministic and enqueued with `unique=True`: ringing twice queues one job.
Ringing never raises: if Redis is away, the sweeper finds the runs in the database.
"""

import contextlib
import logging
import time
from collections.abc import Iterable
from datetime import UTC, datetime

import redis
from flask import current_app
from rq import Queue
from rq.exceptions import DuplicateJobError
from rq.job import Job

from jobs import outbox
from webapp import redis_conn
from webapp.clock import now
from webapp.services.runs import sweep
from webapp.services.runs.planning import Bell, Cache
from webapp.services.runs.sweep import Report

log = logging.getLogger(__name__)
BATCH = 1000
JOB_TIMEOUT = 600
# RQ's scheduler counts whole seconds and looks once a second, so a job for a due second is
# scheduled this many seconds before it and waits inside for each due time: the lag is the
# processing time, not a scheduler tick.
DRAIN_LEAD_SECONDS = 1
# While runs fall due in its second, a drain job looks at the database this often: what fell
# due meanwhile moves in one batch (one transaction per stage, not one per run), flags just
# added (due at once) among them, instead of waiting behind the job. The lag it adds is at
# most this.
DRAIN_TICK_SECONDS = 0.2
# Job statuses under which a drain job has not yet looked at the database: a bell rung for its
# second while it is so needs no job of its own.
_NOT_YET_RUN = frozenset({"scheduled", "queued"})
# Set by a drain job while it passes over the database every tick (and for this long after its
# last pass, should it be killed). Runs due at once, rung meanwhile, need no job of their own:
# the drain job moves them in its next pass, or in the last one it makes after clearing this.
DRAINING_KEY = "railyard:engine:draining"
_DRAINING_TTL_MS = 1000
# A bell that rides on a drain job's passes pushes here; the job waits for its next tick on
# this list, so the pass that moves the flag starts at once instead of up to a tick later (a
# flag added now is due now). The wake only brings a pass forward: what moves stays the same.
WAKE_KEY = "railyard:engine:drain-wake"
# Due-now bells fewer than this ride on a drain job's passes; a bulk add gets its own jobs.
_RIDE_LIMIT = 100


def advance(run_id: int, version: int | None = None) -> dict:
    """Advance one run (if still at `version` and due), then drain other due runs."""
    cache = Cache()
    return _finish(sweep.advance(run_id, version, cache=cache), cache)


def advance_many(pairs: list[tuple[int, int]]) -> dict:
    """Advance several runs, then drain other due runs."""
    cache = Cache()
    return _finish(sweep.advance_many([(int(r), int(v)) for r, v in pairs], cache=cache), cache)


def drain(until: float | None = None) -> dict:
    """Advance every run that is due, then again every DRAIN_TICK_SECONDS while some run falls
    due before `until` (epoch seconds: the end of the second this job was rung for). Runs that
    fall due within a tick of each other move together, in one batch."""
    cache = Cache()
    report = Report()
    end = now() if until is None else datetime.fromtimestamp(until, UTC)
    upcoming = None
    _mark_draining(True)
    try:
        ticks = woken = 0
        while ticks < _MAX_PASSES and woken < _MAX_WAKES:
            moment = now()
            due, upcoming = sweep.due_before(max(end, moment), _drain_limit(), now=moment)
            _merge(report, sweep.advance_many([(run_id, None) for run_id in due], cache=cache))
            if upcoming is None or moment >= end:
                break
            if _pause(DRAIN_TICK_SECONDS):
                woken += 1
            else:
                ticks += 1
            if now() == moment:
                break  # a frozen (test) clock never reaches `until`
            _mark_draining(True)
        if upcoming is not None and upcoming > now():
            _leave_the_rest(upcoming, until)
    finally:
        _mark_draining(False)
    return _finish(report, cache)  # its pass comes after the mark is gone


def _leave_the_rest(upcoming: datetime, until: float | None) -> None:
    """Runs of this job's second still not due when it stops (the clock stood still, as a
    test's does, or its passes ran out) get a job at their due time."""
    at = upcoming.timestamp()
    _unique(redis_conn.queue().enqueue_at, _naive_utc(upcoming), drain, until,
            job_id=f"advance-due-{int(at)}-rest-{int(at * 1000)}", job_timeout=JOB_TIMEOUT,
            result_ttl=0)


def _mark_draining(on: bool) -> None:
    try:
        connection = redis_conn.connection()
        if on:
            connection.set(DRAINING_KEY, 1, px=_DRAINING_TTL_MS)
        else:
            connection.delete(DRAINING_KEY, WAKE_KEY)
    except redis.RedisError:  # rings enqueue jobs of their own meanwhile; nothing is lost
        log.warning("could not mark the drain job's passes", exc_info=True)


def _pause(seconds: float) -> bool:
    """Wait up to `seconds` for the next pass; True when a bell riding on it woke us sooner."""
    try:
        connection = redis_conn.connection()
        if connection.blpop([WAKE_KEY], timeout=seconds) is None:
            return False
        # The pass that follows moves every flag whose bell rang meanwhile: one pass for them.
        connection.delete(WAKE_KEY)
        return True
    except redis.RedisError:  # the ticks go on without Redis; the sweeper does the rest
        time.sleep(seconds)
        return False


# A drain job spans DRAIN_LEAD_SECONDS + 1 seconds: that many ticks, and a few to spare.
_MAX_PASSES = int((DRAIN_LEAD_SECONDS + 1) / DRAIN_TICK_SECONDS) + 5
# Passes brought forward by bells, on top of the ticks: a steady stream of single adds (tens a
# second) rides on them; past this many, the rest of the second gets a job (_leave_the_rest).
_MAX_WAKES = 200


def _drain_limit() -> int:
    return int(current_app.config.get("ENGINE_DRAIN_LIMIT", 5000))


def _merge(report: Report, more: Report) -> None:
    report.moved += more.moved
    report.failed += more.failed
    report.bells += more.bells


def _finish(report: Report, cache: Cache) -> dict:
    _merge(report, sweep.drain(_drain_limit(), cache=cache))
    ring(report.bells)
    if report.moved:
        outbox.ring()
    return {"moved": report.moved, "failed": report.failed, "bells": len(report.bells)}


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
    if due and len(due) < _RIDE_LIMIT and queue.connection.exists(DRAINING_KEY):
        # A drain job's next (or last) pass moves them: now, not at its next tick.
        with queue.connection.pipeline() as wake:
            wake.rpush(WAKE_KEY, 1)
            wake.pexpire(WAKE_KEY, _DRAINING_TTL_MS)
            wake.execute()
        due = []
    if len(due) == 1:
        _unique(queue.enqueue, advance, due[0].run_id, due[0].version,
                job_id=job_id(due[0]), job_timeout=JOB_TIMEOUT)
    else:
        for start in range(0, len(due), BATCH):
            chunk = due[start:start + BATCH]
            _unique(queue.enqueue, advance_many, [(b.run_id, b.version) for b in chunk],
                    job_id=f"{job_id(chunk[0])}-n{len(chunk)}", job_timeout=JOB_TIMEOUT)
    for bell in later:
        if bell.early:  # its job fired before due_at: this run alone, at due_at
            _unique(queue.enqueue_at, _naive_utc(bell.due_at), advance, bell.run_id,
                    bell.version, job_id=job_id(bell), job_timeout=JOB_TIMEOUT)
    seconds: dict[int, Bell] = {}
    for bell in later:
        if not bell.early:
            seconds.setdefault(int(bell.due_at.timestamp()), bell)
    for second, bell in sorted(seconds.items()):
        _ring_second(queue, second, bell)


def _ring_second(queue: Queue, second: int, bell: Bell) -> None:
    """One drain job for the runs due in `second`, started DRAIN_LEAD_SECONDS before it. When
    that job already started, it may have looked for the last time before this bell's commit:
    the bell gets a job of its own (same function, its own id)."""
    name = f"advance-due-{second}"
    for job_name in (name, f"{name}-after-{bell.run_id}-v{bell.version}"):
        start = second - DRAIN_LEAD_SECONDS
        options = {"job_id": job_name, "job_timeout": JOB_TIMEOUT, "result_ttl": 0,
                   "unique": True}
        try:
            if start <= now().timestamp():
                queue.enqueue(drain, second + 1, **options)
            else:
                queue.enqueue_at(datetime.fromtimestamp(start, UTC).replace(tzinfo=None), drain,
                                 second + 1, **options)
            return
        except DuplicateJobError:
            status = queue.connection.hget(Job.key_for(job_name), "status")
            if isinstance(status, bytes) and status.decode() in _NOT_YET_RUN:
                return


def _naive_utc(moment: datetime) -> datetime:
    # RQ reads naive datetimes as UTC.
    return moment.astimezone(UTC).replace(tzinfo=None)


def _unique(method, *args, **kwargs) -> None:
    with contextlib.suppress(DuplicateJobError):  # already rung for this version
        method(*args, unique=True, **kwargs)
