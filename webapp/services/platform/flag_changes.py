"""The one code path that changes a flag's states and segment overrides.

Manual toggles, pipeline stages, change requests and rollbacks all apply changes through
`apply_change`, so each bumps the environment's revision, writes the same audit entry shape and
announces the change to the project's webhooks (FLAG_UPDATED).

A change is a plain dict, typed by its kind (webapp/models/changes.py; it is also stored in
change requests):
  {"kind": "state", "environment_id", "feature_id", "enabled"?, "value"?}
  {"kind": "override", "environment_id", "feature_id", "segment_id", "enabled"?, "value"?,
   "priority"?}
  {"kind": "remove_override", "environment_id", "feature_id", "segment_id"}
Keys left out ("enabled", "value") are left as they are; an override that does not exist yet
starts from the flag's state in its environment at that moment (see `state_now`), so a change
that only toggles it carries the flag's value there, one that only sets its value carries the
flag's on/off there, never a `null` nobody chose. Several changes apply in order, each seeing
the result of the ones before it (a release stage's actions rely on this).
"""

from typing import Any

from sqlalchemy import delete, select, update

from webapp import database
from webapp.clock import now
from webapp.extensions import db
from webapp.models import Environment, Feature, FeatureState, PipelineRun, SegmentOverride
from webapp.models.changes import Change, TargetState
from webapp.orm import table_of
from webapp.services.actors import Actor
from webapp.services.errors import Conflict
from webapp.services.governance import audit, webhook_events
from webapp.services.platform import realtime, revisions


def bump_revision(environment_id: int) -> None:
    """Mark the environment's SDK documents stale: its revision moves when the unit of work
    commits (same transaction), with every other environment it touched, in one ordered write."""
    realtime.note_change(db.session(), environment_id)
    database.before_commit("environment revisions", _write_revisions, environment_id)


def _write_revisions(session, environment_ids: set[int]) -> None:
    """Lock the stale environments by ascending id, then move each revision by one. Last in the
    transaction and in one order, so concurrent writers queue here instead of deadlocking."""
    database.lock_rows(session, Environment, environment_ids)
    session.execute(update(Environment).where(Environment.id.in_(sorted(environment_ids)))
                    .values(revision=Environment.revision + 1))
    revisions.notify_bumped(session)


def _state_row(feature_id: int, environment_id: int) -> FeatureState | None:
    return db.session.scalar(
        select(FeatureState).where(
            FeatureState.feature_id == feature_id, FeatureState.environment_id == environment_id
        )
    )


def _override_row(feature_id: int, environment_id: int, segment_id: int) -> SegmentOverride | None:
    return db.session.scalar(
        select(SegmentOverride).where(
            SegmentOverride.feature_id == feature_id,
            SegmentOverride.environment_id == environment_id,
            SegmentOverride.segment_id == segment_id,
        )
    )


def _default_state(feature_id: int) -> TargetState:
    """A flag's state in an environment that has no row for it: the flag's defaults."""
    feature = db.session.get(Feature, feature_id)
    if feature is None:
        return {"enabled": False, "value": None}
    return {"enabled": bool(feature.default_enabled), "value": feature.default_value}


def state_now(feature_id: int, environment_id: int) -> TargetState:
    """The flag's {"enabled", "value"} in the environment as of now, in this transaction (so
    after the changes applied before in it): what a new segment override starts from."""
    row = _state_row(feature_id, environment_id)
    if row is None:
        return _default_state(feature_id)
    return {"enabled": row.enabled, "value": row.value}


def read_target(change: Change) -> TargetState | None:
    """What the change's target looks like now: {"enabled", "value"[, "priority"]}, or None
    when it is an override that does not exist."""
    if change["kind"] == "state":
        state = _state_row(change["feature_id"], change["environment_id"])
        return None if state is None else {"enabled": state.enabled, "value": state.value}
    override = _override_row(change["feature_id"], change["environment_id"], change["segment_id"])
    if override is None:
        return None
    return {"enabled": override.enabled, "value": override.value, "priority": override.priority}


def _next_priority(feature_id: int, environment_id: int) -> int:
    highest = db.session.scalar(
        select(db.func.max(SegmentOverride.priority)).where(
            SegmentOverride.feature_id == feature_id,
            SegmentOverride.environment_id == environment_id,
        )
    )
    return 0 if highest is None else highest + 1


def write_target(change: Change) -> tuple[TargetState | None, TargetState | None]:
    """Apply the change to the rows; return (before, after) snapshots. No audit, no revision."""
    before = read_target(change)
    feature_id, environment_id = change["feature_id"], change["environment_id"]
    if change["kind"] == "state":
        row = _state_row(feature_id, environment_id)
        if row is None:
            row = FeatureState(feature_id=feature_id, environment_id=environment_id,
                               **_default_state(feature_id))
            db.session.add(row)
        if "enabled" in change:
            row.enabled = bool(change["enabled"])
        if "value" in change:
            row.value = change["value"]
    elif change["kind"] == "override":
        priority = change.get("priority")
        override = _override_row(feature_id, environment_id, change["segment_id"])
        if override is None:
            override = SegmentOverride(
                feature_id=feature_id,
                environment_id=environment_id,
                segment_id=change["segment_id"],
                priority=(
                    _next_priority(feature_id, environment_id) if priority is None else priority
                ),
                **state_now(feature_id, environment_id),
            )
            db.session.add(override)
        elif priority is not None:
            override.priority = priority
        if "enabled" in change:
            override.enabled = bool(change["enabled"])
        if "value" in change:
            override.value = change["value"]
    elif change["kind"] == "remove_override":
        removed = _override_row(feature_id, environment_id, change["segment_id"])
        if removed is not None:
            db.session.delete(removed)
    else:
        raise ValueError(f"unknown change kind {change['kind']!r}")
    db.session.flush()
    return before, read_target(change)


def apply_change(
    change: Change,
    actor: Actor,
    *,
    project_id: int,
    event_type: str,
    message: str,
    object_label: str = "",
    idempotency_key: str | None = None,
    pipeline_id: int | None = None,
    run_id: int | None = None,
    change_request_id: int | None = None,
) -> tuple[TargetState | None, TargetState | None]:
    """Apply one change in the caller's transaction: rows, environment revision, audit entry."""
    before, after = write_target(change)
    bump_revision(change["environment_id"])
    audit.record(
        actor,
        event_type,
        message,
        project_id=project_id,
        environment_id=change["environment_id"],
        object_type="feature_state" if change["kind"] == "state" else "segment_override",
        object_id=change["feature_id"],
        object_label=object_label,
        before=before,
        after=after,
        feature_id=change["feature_id"],
        pipeline_id=pipeline_id,
        run_id=run_id,
        change_request_id=change_request_id,
        idempotency_key=idempotency_key,
    )
    webhook_events.flag_changed(actor, project_id, [(change, before, after, idempotency_key)])
    return before, after


def active_run(feature_id: int) -> PipelineRun | None:
    return db.session.scalar(
        select(PipelineRun).where(
            PipelineRun.feature_id == feature_id, PipelineRun.ended_at.is_(None)
        )
    )


def refuse_if_in_flight(feature_id: int) -> None:
    """Manual changes to states, values and overrides are refused while a pipeline owns the flag."""
    run = active_run(feature_id)
    if run is not None:
        raise Conflict(
            f"This flag is in the release pipeline “{run.pipeline.name}”: the pipeline owns its "
            "states until the flag is launched or removed."
        )


def apply_changes(
    items: list[tuple[Change, dict[str, Any]]],
    actor: Actor,
    *,
    project_id: int,
    event_type: str,
    pipeline_id: int | None = None,
) -> list[tuple[TargetState | None, TargetState | None]]:
    """`apply_change` for many changes at once (the engine's batches), with the same effects:
    rows, one revision bump per environment touched, one audit entry per change.

    `items` are (change, entry) pairs, applied in order; `entry` holds the audit entry's
    `message`, `object_label`, `idempotency_key`, `run_id`. Reads and writes are set-based, so a
    batch of thousands costs a handful of statements.
    """
    if not items:
        return []
    features = {c["feature_id"] for c, _ in items}
    environments = {c["environment_id"] for c, _ in items}
    states = {
        (row.feature_id, row.environment_id): row
        for row in db.session.execute(
            select(FeatureState.id, FeatureState.feature_id, FeatureState.environment_id,
                   FeatureState.enabled, FeatureState.value)
            .where(database.in_(FeatureState.feature_id, features),
                   database.in_(FeatureState.environment_id, environments)))
    }
    overrides: dict[tuple[int, int, int], Any] = {}
    highest: dict[tuple[int, int], int] = {}
    if any(c["kind"] != "state" for c, _ in items):
        for row in db.session.execute(
            select(SegmentOverride.id, SegmentOverride.feature_id, SegmentOverride.environment_id,
                   SegmentOverride.segment_id, SegmentOverride.enabled, SegmentOverride.value,
                   SegmentOverride.priority)
            .where(database.in_(SegmentOverride.feature_id, features),
                   database.in_(SegmentOverride.environment_id, environments))):
            overrides[(row.feature_id, row.environment_id, row.segment_id)] = row
            pair = (row.feature_id, row.environment_id)
            highest[pair] = max(highest.get(pair, row.priority), row.priority)

    # Current values per target, updated change by change (two changes may hit one target).
    current: dict[tuple, TargetState | None] = {}
    row_ids: dict[tuple, int | None] = {}

    def target(change: Change) -> tuple:
        key: tuple[Any, ...]
        if change["kind"] == "state":
            key = ("state", change["feature_id"], change["environment_id"])
            if key not in current:
                row = states.get((key[1], key[2]))
                row_ids[key] = row.id if row else None
                current[key] = None if row is None else {"enabled": row.enabled, "value": row.value}
            return key
        key = ("override", change["feature_id"], change["environment_id"], change["segment_id"])
        if key not in current:
            override = overrides.get((key[1], key[2], key[3]))
            row_ids[key] = override.id if override else None
            current[key] = None if override is None else {
                "enabled": override.enabled, "value": override.value,
                "priority": override.priority}
        return key

    def state_at_this_point(feature_id: int, environment_id: int) -> TargetState:
        """`state_now` within the batch: after the batch's earlier changes."""
        key = ("state", feature_id, environment_id)
        found = current.get(key)
        if found is not None:
            return {"enabled": found["enabled"], "value": found["value"]}
        row = states.get((feature_id, environment_id))
        if row is None:
            return _default_state(feature_id)
        return {"enabled": row.enabled, "value": row.value}

    results: list[tuple[TargetState | None, TargetState | None]] = []
    for change, _entry in items:
        key = target(change)
        before = current[key]
        after: TargetState | None
        if change["kind"] == "remove_override":
            after = None
        else:
            after = before.copy() if before else state_at_this_point(
                change["feature_id"], change["environment_id"])
            if change["kind"] == "override":
                priority = change.get("priority")
                if before is None:
                    pair = (change["feature_id"], change["environment_id"])
                    if priority is None:
                        priority = highest.get(pair, -1) + 1
                    highest[pair] = max(highest.get(pair, priority), priority)
                    after["priority"] = priority
                elif priority is not None:
                    after["priority"] = priority
            if "enabled" in change:
                after["enabled"] = bool(change["enabled"])
            if "value" in change:
                after["value"] = change["value"]
        current[key] = after
        results.append((before, after))

    _write_targets(current, row_ids)
    for environment_id in environments:
        bump_revision(environment_id)
    audit.record_many(actor, [
        {"event_type": event_type, "message": entry["message"], "project_id": project_id,
         "environment_id": change["environment_id"],
         "object_type": "feature_state" if change["kind"] == "state" else "segment_override",
         "object_id": change["feature_id"], "object_label": entry.get("object_label", ""),
         "before": before, "after": after, "feature_id": change["feature_id"],
         "pipeline_id": pipeline_id, "run_id": entry.get("run_id"),
         "idempotency_key": entry.get("idempotency_key")}
        for (change, entry), (before, after) in zip(items, results, strict=True)
    ])
    webhook_events.flag_changed(actor, project_id, [
        (change, before, after, entry.get("idempotency_key"))
        for (change, entry), (before, after) in zip(items, results, strict=True)])
    return results


def _write_targets(current: dict[tuple, TargetState | None],
                   row_ids: dict[tuple, int | None]) -> None:


    moment = now()
    state_updates, state_inserts, override_updates, override_inserts, removals = [], [], [], [], []
    for key, values in current.items():
        row_id = row_ids[key]
        if key[0] == "state":
            assert values is not None  # a state is never removed
            params = {"enabled": values["enabled"], "value": values["value"]}
            if row_id is None:
                state_inserts.append({"feature_id": key[1], "environment_id": key[2],
                                      "updated_at": moment, **params})
            else:
                state_updates.append({"id": row_id, **params})
        elif values is None:
            if row_id is not None:
                removals.append(row_id)
        else:
            params = {"enabled": values["enabled"], "value": values["value"],
                      "priority": values["priority"]}
            if row_id is None:
                override_inserts.append({"feature_id": key[1], "environment_id": key[2],
                                         "segment_id": key[3], "updated_at": moment, **params})
            else:
                override_updates.append({"id": row_id, **params})
    state, override = table_of(FeatureState), table_of(SegmentOverride)
    database.update_rows(state, "id", state_updates, updated_at=moment)
    database.insert_rows(state, state_inserts)
    database.update_rows(override, "id", override_updates, updated_at=moment)
    database.insert_rows(override, override_inserts)
    if removals:
        db.session.execute(delete(override).where(database.in_(override.c.id, removals)))
