"""Liveness of the database and Redis."""

from flask import Blueprint, jsonify
from sqlalchemy import text

from webapp import redis_conn
from webapp.extensions import db

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    checks = {"database": "ok", "redis": "ok"}
    try:
        db.session.execute(text("SELECT 1"))
    except Exception as error:  # noqa: BLE001 - any failure means "down"
        checks["database"] = f"down: {type(error).__name__}"
        db.session.rollback()
    try:
        redis_conn.connection().ping()
    except Exception as error:  # noqa: BLE001
        checks["redis"] = f"down: {type(error).__name__}"
    healthy = all(value == "ok" for value in checks.values())
    return (jsonify({"status": "ok" if healthy else "unavailable", **checks}),
            200 if healthy else 503)
