"""The project's integrations settings (Prometheus, the alert receiver) and the
Alertmanager-compatible alert receiver: firing alerts are stored and the runs watching for them
are made due.
"""

import hashlib
import re
import secrets
from typing import Any

from sqlalchemy import delete, select, update

from webapp.clock import now
from webapp.database import compare_and_set
from webapp.extensions import db
from webapp.models import PipelineRun, Project, User
from webapp.models.health import (
    FiringAlert,
    ProjectIntegration,
    StageHealthCheck,
)
from webapp.orm import fit
from webapp.services.actors import Actor
from webapp.services.errors import Forbidden, Invalid, NotFound
from webapp.services.governance import audit
from webapp.services.platform import access
from webapp.services.runs import planning
from webapp.services.runs.planning import LEASE_GRACE, Bell

# --- Project integrations ------------------------------------------------------------------------


def integration(project_id: int) -> ProjectIntegration | None:
    return db.session.get(ProjectIntegration, project_id)


def _require_admin(project: Project, actor: Actor) -> None:
    if actor.kind == "user":

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
        fingerprint = fit(FiringAlert.fingerprint,
                          str(alert.get("fingerprint") or _fingerprint(labels)))
        if status == "firing":
            firing[fingerprint] = labels
            resolved.discard(fingerprint)
        else:
            resolved.add(fingerprint)
            firing.pop(fingerprint, None)

    planning.start_writing()
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
                                       name=fit(FiringAlert.name, labels.get("alertname", "")),
                                       labels=labels,
                                       started_at=moment, received_at=moment))
    woken = _wake_alert_watchers(project_id, moment)
    db.session.commit()
    return woken


def _fingerprint(labels: dict[str, str]) -> str:

    text = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _wake_alert_watchers(project_id: int, moment) -> list:
    """Runs in a stage with an ALERT check are made due now (the gate decides in its own
    transaction with the run's compare-and-set). Returns their bells."""

    guarded = select(StageHealthCheck.stage_id).where(StageHealthCheck.kind == "ALERT")
    rows = db.session.execute(select(PipelineRun.id, PipelineRun.version).where(
        PipelineRun.project_id == project_id, PipelineRun.ended_at.is_(None),
        PipelineRun.status.in_(("watching", "rolling_out")),
        PipelineRun.stage_id.in_(guarded))).all()
    for run_id, version in rows:
        compare_and_set(PipelineRun, run_id, version, due_at=moment,
                        lease_until=moment + LEASE_GRACE)
    return [Bell(run_id, version + 1, moment) for run_id, version in rows]


def firing_alerts(project_id: int) -> list[FiringAlert]:
    return list(db.session.scalars(select(FiringAlert).where(
        FiringAlert.project_id == project_id).order_by(FiringAlert.id)))
