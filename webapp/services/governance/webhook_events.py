"""Events for webhooks and Slack, written to the outbox in the caller's transaction.

An event is one outbox row (kind "event") holding the JSON body receivers get, written only
when an enabled receiver of the project wants its type, in the same transaction as the change
it announces: nothing is announced that did not happen, nothing that happened is lost. The
deliverer (webhook_delivery) expands each row into one delivery per receiver.

Two shapes (docs/webhooks.md):
- `FLAG_UPDATED` / `FLAG_DELETED`, Flagsmith's environment webhook body, for every change to a
  flag's state or segment override in an environment (manual, API, pipeline, change request,
  rollback); receivers written for Flagsmith read it unchanged.
- Railyard's own events for pipelines and change requests (`pipeline.*`, `change_request.*`).
"""

import json
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from flask import current_app, has_request_context, url_for
from sqlalchemy import select

from webapp import database
from webapp.clock import now
from webapp.extensions import db
from webapp.models import (
    ChangeRequest,
    Environment,
    Feature,
    OutboxMessage,
    PipelineRun,
    PipelineStage,
    Project,
    ReleasePipeline,
    Segment,
    Webhook,
)
from webapp.models.changes import Change, TargetState
from webapp.orm import fit, table_of
from webapp.services.actors import Actor

FLAG_UPDATED = "FLAG_UPDATED"
FLAG_DELETED = "FLAG_DELETED"  # an override removed; sent to FLAG_UPDATED subscribers
PIPELINE_EVENTS = (
    "pipeline.flag_added", "pipeline.stage_entered", "pipeline.stage_completed",
    "pipeline.flag_held", "pipeline.flag_halted", "pipeline.flag_rolled_back",
    "pipeline.flag_launched", "pipeline.flag_removed",
)
CHANGE_REQUEST_EVENTS = (
    "change_request.opened", "change_request.approved", "change_request.rejected",
    "change_request.committed",
)
# What a webhook may subscribe to.
EVENTS = (FLAG_UPDATED, *PIPELINE_EVENTS, *CHANGE_REQUEST_EVENTS)
EVENT_LABELS = {
    FLAG_UPDATED: "Flag state changed (Flagsmith's FLAG_UPDATED)",
    "pipeline.flag_added": "Flag added to a pipeline",
    "pipeline.stage_entered": "Stage entered",
    "pipeline.stage_completed": "Stage completed",
    "pipeline.flag_held": "Flag held (paused)",
    "pipeline.flag_halted": "Flag halted",
    "pipeline.flag_rolled_back": "Flag rolled back",
    "pipeline.flag_launched": "Flag launched",
    "pipeline.flag_removed": "Flag removed from a pipeline",
    "change_request.opened": "Change request opened",
    "change_request.approved": "Change request approved",
    "change_request.rejected": "Change request rejected",
    "change_request.committed": "Change request committed",
}
# The project's Slack channel hears about these (what needs a person's eyes).
SLACK_EVENTS = frozenset({
    "pipeline.stage_completed", "pipeline.flag_held", "pipeline.flag_halted",
    "pipeline.flag_rolled_back", "change_request.opened",
})
_FROM_AUDIT = {
    "RELEASE_PIPELINE_FEATURE_ADDED": "pipeline.flag_added",
    "RELEASE_PIPELINE_FEATURE_PAUSED": "pipeline.flag_held",
    "RELEASE_PIPELINE_FEATURE_HALTED": "pipeline.flag_halted",
    "RELEASE_PIPELINE_FEATURE_ROLLED_BACK": "pipeline.flag_rolled_back",
    "RELEASE_PIPELINE_FEATURE_LAUNCHED": "pipeline.flag_launched",
    "RELEASE_PIPELINE_FEATURE_REMOVED": "pipeline.flag_removed",
    "CHANGE_REQUEST_OPENED": "change_request.opened",
    "CHANGE_REQUEST_APPROVED": "change_request.approved",
    "CHANGE_REQUEST_REJECTED": "change_request.rejected",
    "CHANGE_REQUEST_COMMITTED": "change_request.committed",
}
_SLACK_MARK = {
    "pipeline.stage_completed": ":white_check_mark:", "pipeline.flag_held": ":pause_button:",
    "pipeline.flag_halted": ":octagonal_sign:", "pipeline.flag_rolled_back": ":rewind:",
    "change_request.opened": ":memo:",
}


def group_of(event_type: str) -> str:
    """The subscription an event belongs to (FLAG_DELETED goes with FLAG_UPDATED)."""
    return FLAG_UPDATED if event_type == FLAG_DELETED else event_type


_WANTED = "railyard.webhooks_wanted"


def wanted(project_id: int) -> set[str]:
    """Event types some enabled receiver of the project wants (empty: write nothing). Read
    once per transaction: an engine batch asks for every change and stage event it writes."""
    transaction = db.session().get_transaction()
    if transaction is None:  # nothing read yet in this unit of work: nothing to share
        return _read_wanted(project_id)
    memo: tuple[object, dict[int, set[str]]] | None = db.session.info.get(_WANTED)
    if memo is None or memo[0] is not transaction:
        memo = db.session.info[_WANTED] = (transaction, {})
    if project_id not in memo[1]:
        memo[1][project_id] = _read_wanted(project_id)
    return memo[1][project_id]


def _read_wanted(project_id: int) -> set[str]:
    found: set[str] = set()
    for hook in db.session.execute(
            select(Webhook.kind, Webhook.events)
            .where(Webhook.project_id == project_id, Webhook.enabled)):
        found |= SLACK_EVENTS if hook.kind == "slack" else set(hook.events or ())
    if FLAG_UPDATED in found:
        found.add(FLAG_DELETED)
    return found


# --- Flag states (Flagsmith's shape) ---------------------------------------------------------


def flag_changed(actor: Actor, project_id: int,
                 items: Iterable[tuple[Change, TargetState | None, TargetState | None, str | None]]
                 ) -> None:
    """Announce applied changes as FLAG_UPDATED (FLAG_DELETED for a removed override).

    `items` are (change, before, after, idempotency key or None) as flag_changes applied them.
    Adds to the caller's transaction; set-based (a handful of reads per batch)."""
    changed = [item for item in items if item[1] != item[2]]
    if not changed or FLAG_UPDATED not in wanted(project_id):
        return
    feature_ids = {c["feature_id"] for c, *_ in changed}
    environment_ids = {c["environment_id"] for c, *_ in changed}
    segment_ids = {segment_id for c, *_ in changed if (segment_id := c.get("segment_id"))}
    project = db.session.get_one(Project, project_id)
    features = {f.id: f for f in db.session.scalars(
        select(Feature).where(Feature.id.in_(feature_ids)))}
    environments = dict(db.session.execute(
        select(Environment.id, Environment.name).where(Environment.id.in_(environment_ids))).all())
    segments = dict(db.session.execute(
        select(Segment.id, Segment.name).where(Segment.id.in_(segment_ids))).all()) \
        if segment_ids else {}
    stamp = _iso(now())
    rows = []
    for change, before, after, key in changed:
        feature = features[change["feature_id"]]
        feature_json = {
            "id": feature.id, "name": feature.name, "description": feature.description or None,
            "created_date": _iso(feature.created_at), "default_enabled": feature.default_enabled,
            "initial_value": feature.default_value,
            "type": "STANDARD" if feature.value_type == "none" else "CONFIG",
            "project": {"id": project.id, "name": project.name},
        }
        environment = {"id": change["environment_id"],
                       "name": environments.get(change["environment_id"], "")}
        segment_id = change.get("segment_id")

        def state(values: TargetState | None, *, feature_json=feature_json, environment=environment,
                  segment_id=segment_id) -> dict | None:
            if values is None:
                return None
            segment = None
            if segment_id:
                segment = {"id": segment_id, "priority": values.get("priority"),
                           "segment": {"id": segment_id, "name": segments.get(segment_id, "")}}
            return {"enabled": bool(values.get("enabled")), "environment": environment,
                    "feature": feature_json, "feature_segment": segment,
                    "feature_state_value": values.get("value"), "identity": None,
                    "identity_identifier": None}

        event_type = FLAG_DELETED if after is None else FLAG_UPDATED
        body = {"event_type": event_type,
                "data": {"changed_by": actor.label, "new_state": state(after),
                         "previous_state": state(before), "timestamp": stamp}}
        rows.append(_row(project_id, event_type, body, None, key))
    _write(rows)


# --- Pipelines and change requests (Railyard's shape) ----------------------------------------


def from_audit(actor: Actor, entries: list[dict[str, Any]]) -> None:
    """Announce the audit entries that are pipeline or change request events (others are
    ignored). Each dict holds audit.record's fields. Adds to the caller's transaction."""
    events = [(e, _FROM_AUDIT[e["event_type"]]) for e in entries
              if e["event_type"] in _FROM_AUDIT and e.get("project_id")]
    by_project: dict[int, list] = {}
    for entry, event_type in events:
        by_project.setdefault(entry["project_id"], []).append((entry, event_type))
    for project_id, group in by_project.items():
        want = wanted(project_id)
        group = [(e, t) for e, t in group if t in want or (
            t == "pipeline.flag_added" and "pipeline.stage_entered" in want)]
        if not group:
            continue
        project = db.session.get_one(Project, project_id)
        runs = _runs({e["run_id"] for e, _ in group if e.get("run_id")})
        requests = _change_requests(
            {e["change_request_id"] for e, _ in group if e.get("change_request_id")})
        rows = []
        for entry, event_type in group:
            key = entry.get("idempotency_key")
            if event_type.startswith("change_request."):
                request = requests.get(entry.get("change_request_id"))
                if request is None:
                    continue
                body = _envelope(event_type, project, actor, entry["message"])
                body["change_request"] = request
                body["links"] = {"change_request": link(
                    "change_requests.detail", project_id=project_id, request_id=request["id"])}
                text = (f"Change request #{request['id']} waits for review: {request['title']} "
                        f"({request['feature']['name']} in {request['environment']['name']})")
                rows.append(_row(project_id, event_type, body,
                                 _slack(event_type, text, body["links"]["change_request"],
                                        "Review it"), key))
                continue
            run = runs.get(entry.get("run_id"))
            if run is None:
                continue
            if event_type in want:
                body = _pipeline_body(event_type, project, actor, entry["message"], run,
                                      run["stage"])
                rows.append(_row(project_id, event_type, body,
                                 _slack(event_type, entry["message"], body["links"]["board"],
                                        "Open the board"), key))
            if event_type == "pipeline.flag_added" and run["stage"] \
                    and "pipeline.stage_entered" in want:  # a flag enters the first stage at once
                stage = run["stage"]
                message = (f"{run['feature']['name']} entered stage {stage['name']} "
                           f"({stage['environment']['name']}) of pipeline "
                           f"{run['pipeline']['name']}")
                rows.append(_row(project_id, "pipeline.stage_entered",
                                 _pipeline_body("pipeline.stage_entered", project, actor, message,
                                                run, stage),
                                 None, f"run:{run['id']}:stage:{stage['id']}:entered"))
        _write(rows)


def stage_event(event_type: str, actor: Actor, project_id: int, stage_id: int,
                members: list[tuple[int, str]]) -> None:
    """Announce pipeline.stage_completed / pipeline.stage_entered for runs `members`
    ((run_id, message) pairs) and the stage `stage_id`. Adds to the caller's transaction."""
    if not members or event_type not in wanted(project_id):
        return
    project = db.session.get_one(Project, project_id)
    runs = _runs({run_id for run_id, _ in members})
    stage = _stages({stage_id}).get(stage_id)
    verb = "completed" if event_type.endswith("completed") else "entered"
    rows = []
    for run_id, message in members:
        run = runs.get(run_id)
        if run is None:
            continue
        key = f"run:{run_id}:stage:{stage_id}:{verb}"
        body = _pipeline_body(event_type, project, actor, message, run, stage)
        rows.append(_row(project_id, event_type, body,
                         _slack(event_type, message, body["links"]["board"], "Open the board"),
                         key))
    _write(rows)


def _pipeline_body(event_type: str, project: Project, actor: Actor, message: str,
                   run: dict, stage: dict | None) -> dict[str, Any]:
    body = _envelope(event_type, project, actor, message)
    body.update(pipeline=run["pipeline"], feature=run["feature"],
                run={"id": run["id"], "status": run["status"]}, stage=stage)
    body["links"] = {"board": link("board.pipeline", project_id=project.id,
                                   pipeline_id=run["pipeline"]["id"])}
    return body


def _envelope(event_type: str, project: Project, actor: Actor, message: str
              ) -> dict[str, Any]:
    return {"event_type": event_type, "occurred_at": _iso(now()),
            "project": {"id": project.id, "name": project.name},
            "actor": {"type": actor.kind, "label": actor.label}, "message": message}


def _runs(run_ids: set[int]) -> dict[int, dict[str, Any]]:
    if not run_ids:
        return {}
    rows = db.session.execute(
        select(PipelineRun.id, PipelineRun.status, PipelineRun.stage_id, ReleasePipeline.id,
               ReleasePipeline.name, Feature.id, Feature.name)
        .join(ReleasePipeline, ReleasePipeline.id == PipelineRun.pipeline_id)
        .join(Feature, Feature.id == PipelineRun.feature_id)
        .where(PipelineRun.id.in_(run_ids))).all()
    stages = _stages({row[2] for row in rows if row[2]})
    return {row[0]: {"id": row[0], "status": row[1],
                     "stage": stages.get(row[2]) if row[2] else None,
                     "pipeline": {"id": row[3], "name": row[4]},
                     "feature": {"id": row[5], "name": row[6]}} for row in rows}


def _stages(stage_ids: set[int]) -> dict[int, dict[str, Any]]:
    if not stage_ids:
        return {}
    return {row[0]: {"id": row[0], "name": row[1] or f"Stage {row[2] + 1}", "position": row[2],
                     "environment": {"id": row[3], "name": row[4]}}
            for row in db.session.execute(
                select(PipelineStage.id, PipelineStage.name, PipelineStage.position,
                       Environment.id, Environment.name)
                .join(Environment, Environment.id == PipelineStage.environment_id)
                .where(PipelineStage.id.in_(stage_ids)))}


def _change_requests(ids: set[int]) -> dict[int, dict[str, Any]]:
    if not ids:
        return {}
    return {row[0]: {"id": row[0], "title": row[1], "status": row[2], "pipeline_run": row[3],
                     "feature": {"id": row[4], "name": row[5]},
                     "environment": {"id": row[6], "name": row[7]}}
            for row in db.session.execute(
                select(ChangeRequest.id, ChangeRequest.title, ChangeRequest.status,
                       ChangeRequest.run_id, Feature.id, Feature.name, Environment.id,
                       Environment.name)
                .join(Feature, Feature.id == ChangeRequest.feature_id)
                .join(Environment, Environment.id == ChangeRequest.environment_id)
                .where(ChangeRequest.id.in_(ids)))}


# --- Writing ---------------------------------------------------------------------------------


def _row(project_id: int, event_type: str, body: dict[str, Any], slack: str | None,
         key: str | None) -> dict[str, Any]:
    key = f"event:{event_type}:{key}" if key else f"event:{event_type}:{uuid.uuid4().hex}"
    if event_type not in (FLAG_UPDATED, FLAG_DELETED):
        body["id"] = key
    return {"kind": "event", "idempotency_key": fit(OutboxMessage.idempotency_key, key),
            "created_at": now(), "attempts": 0,
            "payload": {"project_id": project_id, "event_type": event_type,
                        "body": json.dumps(body, sort_keys=True, default=str), "slack": slack}}


def _write(rows: list[dict[str, Any]]) -> None:
    if rows:
        database.insert_rows(table_of(OutboxMessage), rows)


def _slack(event_type: str, text: str, url: str, label: str) -> str | None:
    if event_type not in SLACK_EVENTS:
        return None
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return f"{_SLACK_MARK[event_type]} {escaped} <{url}|{label}>"


def link(endpoint: str, **values: Any) -> str:
    """An absolute URL for messages read elsewhere: under BASE_URL when configured, else the
    host of the request that made the change; a path when there is neither (a worker)."""
    base = (current_app.config.get("BASE_URL") or "").rstrip("/")
    if base:
        path = current_app.url_map.bind("localhost").build(endpoint, values)
        return base + path
    if has_request_context():
        return url_for(endpoint, _external=True, **values)
    return current_app.url_map.bind("localhost").build(endpoint, values)


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
