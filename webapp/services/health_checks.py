"""Health checks on stages (the builder's and the API's rules), the project's integrations
settings, and the Alertmanager-compatible alert receiver.

What the engine does with checks while a flag is in a stage lives in `gates.py`.
"""

import math
import re
import secrets
from typing import Any

from sqlalchemy import delete, select, update

from webapp.clock import now
from webapp.extensions import db
from webapp.models import PipelineRun, PipelineStage, Project, ReleasePipeline
from webapp.models.health import (
    CHECK_KINDS,
    COMPARISONS,
    ON_UNHEALTHY,
    FiringAlert,
    ProjectIntegration,
    StageHealthCheck,
)
from webapp.services import access, audit, pipeline_edits, pipelines
from webapp.services.actors import Actor
from webapp.services.errors import Forbidden, Invalid, NotFound

MAX_CHECKS = 10
MIN_INTERVAL_SECONDS = 1
MAX_INTERVAL_SECONDS = 3600
MAX_FAILURES_TO_TRIP = 100
MAX_QUERY = 4000
KIND_LABELS = {"PROMETHEUS": "Prometheus query", "ALERT": "Alert"}
ON_UNHEALTHY_LABELS = {"HOLD": "Hold and notify", "ROLL_BACK": "Roll back and notify"}
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
PLACEHOLDERS = ("{{ flag }}", "{{ environment }}")


# --- Parsing a check -----------------------------------------------------------------------------


def check_fields(data: dict[str, Any]) -> dict[str, Any]:
    """A check's columns from form text or JSON: `kind`, `name`, and for PROMETHEUS `query`,
    `comparison`, `threshold`; for ALERT an optional `selector` ("label=value, …" or a mapping);
    both `interval_seconds` and `failures_to_trip`. Raises Invalid with every field's problem."""
    errors: dict[str, list[str]] = {}
    kind = str(data.get("kind") or "").strip().upper()
    if kind not in CHECK_KINDS:
        raise Invalid("Unknown check kind.", {"kind": ["Choose a Prometheus query or an alert."]})
    fields: dict[str, Any] = {"kind": kind, "name": str(data.get("name") or "").strip()[:255],
                              "query": None, "comparison": None, "threshold": None,
                              "selector": None}
    fields["interval_seconds"] = _whole(data.get("interval_seconds", 30), "interval_seconds",
                                        MIN_INTERVAL_SECONDS, MAX_INTERVAL_SECONDS, errors)
    fields["failures_to_trip"] = _whole(data.get("failures_to_trip", 1), "failures_to_trip", 1,
                                        MAX_FAILURES_TO_TRIP, errors)
    if kind == "PROMETHEUS":
        query = str(data.get("query") or "").strip()
        if not query:
            errors["query"] = ["Enter a PromQL query."]
        elif len(query) > MAX_QUERY:
            errors["query"] = [f"At most {MAX_QUERY} characters."]
        fields["query"] = query
        comparison = str(data.get("comparison") or "").strip()
        if comparison not in COMPARISONS:
            errors["comparison"] = ["Choose one of " + ", ".join(COMPARISONS) + "."]
        fields["comparison"] = comparison
        fields["threshold"] = _number(data.get("threshold"), errors)
    else:
        fields["selector"] = _selector(data.get("selector"), errors)
    if errors:
        raise Invalid("The health check has problems.", errors)
    return fields


def _whole(raw: Any, field: str, low: int, high: int, errors: dict[str, list[str]]) -> int:
    try:
        if isinstance(raw, bool):
            raise ValueError
        number = int(str(raw).strip()) if not isinstance(raw, int) else raw
    except (TypeError, ValueError):
        errors[field] = ["Enter a whole number."]
        return low
    if not low <= number <= high:
        errors[field] = [f"Between {low} and {high}."]
    return number


def _number(raw: Any, errors: dict[str, list[str]]) -> float | None:
    try:
        if isinstance(raw, bool) or raw is None or str(raw).strip() == "":
            raise ValueError
        number = float(str(raw).strip())
    except (TypeError, ValueError):
        errors["threshold"] = ["Enter a number."]
        return None
    if not math.isfinite(number):
        errors["threshold"] = ["Enter a finite number."]
        return None
    return number


def _selector(raw: Any, errors: dict[str, list[str]]) -> dict[str, str] | None:
    if raw is None or raw == "" or raw == {}:
        return None
    pairs: dict[str, str] = {}
    if isinstance(raw, dict):
        items = list(raw.items())
    elif isinstance(raw, str):
        items = []
        for part in (p.strip() for p in raw.split(",")):
            if not part:
                continue
            if "=" not in part:
                errors["selector"] = [f"Write each label as name=value ({part!r} has no =)."]
                return None
            name, value = part.split("=", 1)
            items.append((name.strip(), value.strip().strip('"')))
    else:
        errors["selector"] = ["Give labels as name=value pairs."]
        return None
    for name, value in items:
        if not isinstance(name, str) or not _LABEL.match(name) or not isinstance(value, str):
            errors["selector"] = [f"{name!r} is not a label name with a text value."]
            return None
        pairs[name] = value
    return pairs or None


def check_problems(check: StageHealthCheck) -> list[str]:
    """Why a stored check cannot be published (the API and builder parse the same rules)."""
    try:
        check_fields(check_snapshot(check))
    except Invalid as error:
        return [m for ms in error.field_errors.values() for m in ms] or [error.message]
    return []


def check_snapshot(check: StageHealthCheck) -> dict[str, Any]:
    """A check as the API and the audit log show it."""
    snapshot: dict[str, Any] = {"kind": check.kind, "name": check.name,
                                "interval_seconds": check.interval_seconds,
                                "failures_to_trip": check.failures_to_trip}
    if check.kind == "PROMETHEUS":
        snapshot.update(query=check.query, comparison=check.comparison,
                        threshold=check.threshold)
    else:
        snapshot["selector"] = check.selector or {}
    return snapshot


def copy_checks(stage: PipelineStage) -> list[StageHealthCheck]:
    """New rows with a stage's checks (cloning a pipeline, replacing a draft's stages)."""
    return [StageHealthCheck(position=c.position, kind=c.kind, name=c.name, query=c.query,
                             comparison=c.comparison, threshold=c.threshold,
                             interval_seconds=c.interval_seconds,
                             failures_to_trip=c.failures_to_trip,
                             selector=dict(c.selector) if c.selector else None)
            for c in stage.checks]


def parse_stage_checks(data: dict[str, Any]) -> dict[str, Any]:
    """A whole-stage definition's `health_checks` (list) and `on_unhealthy` as stage columns
    (the API's create/replace). Raises Invalid with paths `health_checks[i].field`."""
    errors: dict[str, list[str]] = {}
    raw = data.get("health_checks") or []
    if not isinstance(raw, list) or len(raw) > MAX_CHECKS:
        raise Invalid("Too many checks.", {"health_checks": [
            f"A list of at most {MAX_CHECKS} checks."]})
    checks = []
    for index, item in enumerate(raw):
        try:
            checks.append(StageHealthCheck(position=index, **check_fields(item or {})))
        except Invalid as error:
            for field, messages in error.field_errors.items():
                errors.setdefault(f"health_checks[{index}].{field}", []).extend(messages)
    try:
        on_unhealthy = parse_on_unhealthy(data.get("on_unhealthy"))
    except Invalid as error:
        errors.update(error.field_errors)
        on_unhealthy = "HOLD"
    if errors:
        raise Invalid("The health checks have problems.", errors)
    return {"checks": checks, "on_unhealthy": on_unhealthy}


def describe_check(check: StageHealthCheck) -> str:
    if check.kind == "PROMETHEUS":
        return (f"{check.query} {check.comparison} {check.threshold:g} every "
                f"{check.interval_seconds}s, {check.failures_to_trip} failure(s) in a row")
    labels = ", ".join(f"{k}={v}" for k, v in (check.selector or {}).items())
    return f"alert firing for the flag{' with ' + labels if labels else ''}"


def parse_on_unhealthy(raw: Any) -> str:
    value = str(raw or "HOLD").strip().upper()
    if value not in ON_UNHEALTHY:
        raise Invalid("Unknown reaction.", {"on_unhealthy": ["Choose hold or roll back."]})
    return value


# --- Editing a draft's checks (the builder) ------------------------------------------------------


def add_check(pipeline: ReleasePipeline, version: Any, stage_id: Any, data: dict[str, Any],
              actor: Actor) -> StageHealthCheck:
    """Append a health check to a draft's stage. Refuses bad fields (see `check_fields`), more
    than MAX_CHECKS, a published or stale pipeline. Audited as RELEASE_PIPELINE_UPDATED."""
    pipeline, expected = pipelines.open_draft(pipeline, version)
    stage = _stage_of(pipeline, stage_id)
    fields = check_fields(data)
    if len(stage.checks) >= MAX_CHECKS:
        raise Invalid("Too many checks.", {"kind": [f"At most {MAX_CHECKS} checks per stage."]})
    pipelines.claim_version(pipeline, expected)
    check = StageHealthCheck(position=len(stage.checks), **fields)
    stage.checks.append(check)
    db.session.flush()
    _updated(actor, pipeline, f"stage {stage.position + 1} ({stage.name}): health check "
             f"{check.position + 1} ({KIND_LABELS[check.kind]}) added", None,
             check_snapshot(check), path=_check_path(stage, check.position))
    return check


def update_check(pipeline: ReleasePipeline, version: Any, check_id: Any, data: dict[str, Any],
                 actor: Actor) -> None:
    """Replace a check's settings (same fields and refusals as `add_check`)."""
    pipeline, expected = pipelines.open_draft(pipeline, version)
    stage, check = _check_of(pipeline, check_id)
    fields = check_fields(data)
    before = check_snapshot(check)
    pipelines.claim_version(pipeline, expected)
    for key, value in fields.items():
        setattr(check, key, value)
    _updated(actor, pipeline, f"stage {stage.position + 1} ({stage.name}): health check "
             f"{check.position + 1} changed", before, check_snapshot(check),
             path=_check_path(stage, check.position))


def remove_check(pipeline: ReleasePipeline, version: Any, check_id: Any, actor: Actor) -> None:
    """Remove a check; later checks move up. Refuses a published or stale pipeline."""
    pipeline, expected = pipelines.open_draft(pipeline, version)
    stage, check = _check_of(pipeline, check_id)
    pipelines.claim_version(pipeline, expected)
    snapshot = check_snapshot(check)
    stage.checks.remove(check)
    db.session.flush()
    for position, other in enumerate(stage.checks):
        other.position = position
    _updated(actor, pipeline, f"stage {stage.position + 1} ({stage.name}): health check "
             f"{check.position + 1} removed", snapshot, None,
             path=_check_path(stage, check.position))


def set_on_unhealthy(pipeline: ReleasePipeline, version: Any, stage_id: Any, raw: Any,
                     actor: Actor) -> None:
    """What an unhealthy check does in this stage: HOLD or ROLL_BACK (both notify)."""
    pipeline, expected = pipelines.open_draft(pipeline, version)
    stage = _stage_of(pipeline, stage_id)
    value = parse_on_unhealthy(raw)
    if value == stage.on_unhealthy:
        db.session.rollback()
        return
    pipelines.claim_version(pipeline, expected)
    before = stage.on_unhealthy
    stage.on_unhealthy = value
    _updated(actor, pipeline, f"stage {stage.position + 1} ({stage.name}): when unhealthy, "
             f"{ON_UNHEALTHY_LABELS[value].lower()}", {"on_unhealthy": before},
             {"on_unhealthy": value}, path=f"Stage {stage.position + 1}")


def _stage_of(pipeline: ReleasePipeline, stage_id: Any) -> PipelineStage:
    for stage in pipeline.stages:
        if str(stage.id) == str(stage_id).strip():
            return stage
    raise NotFound("Stage not found in this pipeline.")


def _check_of(pipeline: ReleasePipeline, check_id: Any) -> tuple[PipelineStage, StageHealthCheck]:
    text = str(check_id).strip()
    check = db.session.scalar(
        select(StageHealthCheck)
        .join(PipelineStage, PipelineStage.id == StageHealthCheck.stage_id)
        .where(StageHealthCheck.id == int(text), PipelineStage.pipeline_id == pipeline.id)
    ) if text.isdigit() else None
    if check is None:
        raise NotFound("Health check not found in this pipeline.")
    stage = next(s for s in pipeline.stages if s.id == check.stage_id)
    return stage, next(c for c in stage.checks if c.id == check.id)


def _updated(actor: Actor, pipeline: ReleasePipeline, what: str, before: Any, after: Any, *,
             path: str) -> None:
    pipeline_edits.record_edit(actor, pipeline, what, before, after, path=path)
    db.session.commit()


def _check_path(stage: PipelineStage, position: int) -> str:
    return f"Stage {stage.position + 1} · Health check {position + 1}"


# --- Project integrations ------------------------------------------------------------------------


def integration(project_id: int) -> ProjectIntegration | None:
    return db.session.get(ProjectIntegration, project_id)


def _require_admin(project: Project, actor: Actor) -> None:
    if actor.kind == "user":
        from webapp.models import User

        user = db.session.get(User, actor.user_id)
        role = access.role_in(user, project.id) if user else None
        if role is None:
            raise NotFound("Project not found.")
        if not access.can(role, "admin"):
            raise Forbidden("Only project admins change integrations.")


def _url(raw: Any, field: str, errors: dict[str, list[str]]) -> str:
    text = str(raw or "").strip()
    if text and not re.match(r"^https?://[^\s/]+", text):
        errors[field] = ["Enter an http:// or https:// address."]
    if len(text) > 500:
        errors[field] = ["At most 500 characters."]
    return text.rstrip("/")


def update_integrations(project: Project, data: dict[str, Any], actor: Actor
                        ) -> ProjectIntegration:
    """Set the project's Prometheus URL and optional Authorization header (blank keeps it,
    `clear_auth_header` drops it); `alert_receiver`
    "enable" makes (or keeps) a receiver secret, "rotate" makes a new one, "disable" drops it.
    Admins only. The header is never audited in clear (only whether it is set).
    Audited as PROJECT_INTEGRATIONS_UPDATED."""
    _require_admin(project, actor)
    errors: dict[str, list[str]] = {}
    url = _url(data.get("prometheus_url"), "prometheus_url", errors)
    header = str(data.get("prometheus_auth_header") or "").strip()
    if len(header) > 1000 or "\n" in header or "\r" in header:
        errors["prometheus_auth_header"] = ["One line, at most 1000 characters."]
    receiver = str(data.get("alert_receiver") or "keep").strip().lower()
    if receiver not in ("keep", "enable", "rotate", "disable"):
        errors["alert_receiver"] = ["Choose keep, enable, rotate or disable."]
    if errors:
        raise Invalid("The integrations have problems.", errors)
    row = db.session.get(ProjectIntegration, project.id)
    before = _integration_snapshot(row)
    if row is None:
        row = ProjectIntegration(project_id=project.id)
        db.session.add(row)
    row.prometheus_url = url
    # A blank header field keeps the stored one (it is never shown back); `clear_auth_header`
    # removes it.
    if header:
        row.prometheus_auth_header = header
    elif str(data.get("clear_auth_header") or "").lower() in ("1", "true", "on", "yes"):
        row.prometheus_auth_header = ""
    if receiver == "enable" and not row.alert_secret or receiver == "rotate":
        row.alert_secret = secrets.token_urlsafe(32)
    elif receiver == "disable":
        row.alert_secret = None
    row.updated_at = now()
    db.session.flush()
    audit.record(actor, "PROJECT_INTEGRATIONS_UPDATED",
                 f"Integrations of project {project.name} updated", project_id=project.id,
                 object_type="project", object_id=project.id, object_label=project.name,
                 before=before, after=_integration_snapshot(row))
    db.session.commit()
    return row


def _integration_snapshot(row: ProjectIntegration | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {"prometheus_url": row.prometheus_url,
            "prometheus_auth_header_set": bool(row.prometheus_auth_header),
            "alert_receiver": bool(row.alert_secret)}


# --- The alert receiver ---------------------------------------------------------------------------


def project_for_secret(secret: str) -> int | None:
    if not secret:
        return None
    return db.session.scalar(select(ProjectIntegration.project_id).where(
        ProjectIntegration.alert_secret == secret))


def receive_alerts(project_id: int, payload: Any) -> list:
    """Record an Alertmanager webhook payload (`{"alerts": [{"status", "labels",
    "fingerprint"?, "startsAt"?}, …]}`): firing alerts are kept, resolved ones dropped. Returns
    the bells of the project's in-flight runs whose guarded stage watches alerts (made due at
    once, so the engine decides now). Raises Invalid on a malformed body; writes no audit entry
    (the gate's decisions are audited).
    """
    if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
        raise Invalid("Expected Alertmanager's webhook JSON.",
                      {"alerts": ["A list of alerts is required."]})
    firing: dict[str, dict[str, Any]] = {}
    resolved: set[str] = set()
    for number, alert in enumerate(payload["alerts"]):
        if not isinstance(alert, dict) or not isinstance(alert.get("labels"), dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in alert["labels"].items()):
            raise Invalid("Malformed alert.", {f"alerts[{number}]": [
                "Each alert needs labels (text to text)."]})
        status = alert.get("status", "firing")
        if status not in ("firing", "resolved"):
            raise Invalid("Malformed alert.", {f"alerts[{number}].status": [
                "Status is firing or resolved."]})
        labels = alert["labels"]
        fingerprint = str(alert.get("fingerprint") or _fingerprint(labels))[:200]
        if status == "firing":
            firing[fingerprint] = labels
            resolved.discard(fingerprint)
        else:
            resolved.add(fingerprint)
            firing.pop(fingerprint, None)
    from webapp.services import engine

    engine.start_writing()
    moment = now()
    if resolved:
        db.session.execute(delete(FiringAlert).where(
            FiringAlert.project_id == project_id, FiringAlert.fingerprint.in_(resolved)))
    existing = set(db.session.scalars(select(FiringAlert.fingerprint).where(
        FiringAlert.project_id == project_id, FiringAlert.fingerprint.in_(list(firing)))))
    for fingerprint, labels in firing.items():
        if fingerprint in existing:
            db.session.execute(update(FiringAlert).where(
                FiringAlert.project_id == project_id, FiringAlert.fingerprint == fingerprint
            ).values(labels=labels, received_at=moment))
        else:
            db.session.add(FiringAlert(project_id=project_id, fingerprint=fingerprint,
                                       name=labels.get("alertname", "")[:255], labels=labels,
                                       started_at=moment, received_at=moment))
    woken = _wake_alert_watchers(project_id, moment)
    db.session.commit()
    return woken


def _fingerprint(labels: dict[str, str]) -> str:
    import hashlib

    text = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _wake_alert_watchers(project_id: int, moment) -> list:
    """Runs in a stage with an ALERT check are made due now (the gate decides in its own
    transaction with the run's compare-and-set). Returns their bells."""
    from webapp.services.engine import LEASE_GRACE, Bell

    guarded = select(StageHealthCheck.stage_id).where(StageHealthCheck.kind == "ALERT")
    rows = db.session.execute(select(PipelineRun.id, PipelineRun.version).where(
        PipelineRun.project_id == project_id, PipelineRun.ended_at.is_(None),
        PipelineRun.status.in_(("watching", "rolling_out")),
        PipelineRun.stage_id.in_(guarded))).all()
    for run_id, version in rows:
        db.session.execute(update(PipelineRun).where(
            PipelineRun.id == run_id, PipelineRun.version == version).values(
            due_at=moment, lease_until=moment + LEASE_GRACE, version=version + 1))
    return [Bell(run_id, version + 1, moment) for run_id, version in rows]


def firing_alerts(project_id: int) -> list[FiringAlert]:
    return list(db.session.scalars(select(FiringAlert).where(
        FiringAlert.project_id == project_id).order_by(FiringAlert.id)))
