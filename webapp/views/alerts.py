"""The Alertmanager-compatible alert receiver: POST /hooks/alerts/<secret>, or POST /hooks/alerts
with `Authorization: Bearer <secret>`. The secret is the project's (Settings → Integrations)."""

from flask import Blueprint, abort, jsonify, request

from jobs import transitions
from webapp.extensions import csrf
from webapp.services.errors import Invalid
from webapp.services.runs import alerts

bp = Blueprint("alerts", __name__, url_prefix="/hooks/alerts")
csrf.exempt(bp)
MAX_BODY = 1_000_000


@bp.post("", defaults={"secret": ""})
@bp.post("/<secret>")
def receive(secret: str):
    if not secret:
        header = request.headers.get("Authorization", "")
        secret = header[7:].strip() if header.lower().startswith("bearer ") else ""
    project_id = alerts.project_for_secret(secret)
    if project_id is None:
        abort(404)
    if (request.content_length or 0) > MAX_BODY:
        return jsonify({"detail": "Body too large."}), 413
    payload = request.get_json(silent=True)
    try:
        bells = alerts.receive_alerts(project_id, payload)
    except Invalid as error:
        return jsonify({"detail": error.message, "errors": error.field_errors}), 400
    transitions.ring(bells)
    return jsonify({"status": "ok", "runs_woken": len(bells)})
