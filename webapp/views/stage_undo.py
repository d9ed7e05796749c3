"""Undo for a removed stage: the answer to a removal carries the removed stage signed, and the
Undo form posts it back (no row is kept for it: the token holds everything needed)."""

from typing import Any

from flask import current_app, request
from itsdangerous import BadSignature, URLSafeTimedSerializer

# Undo is offered for an hour after the removal: long enough to notice, short enough that a
# stale tab does not resurrect a stage someone forgot.
UNDO_SECONDS = 3600


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="stage-undo")


def sign(pipeline_id: int, stage: dict[str, Any]) -> str:
    """The token an Undo form carries for a stage removed from the pipeline."""
    return _serializer().dumps({"pipeline_id": pipeline_id, "stage": stage})


def offer(pipeline_id: int, token: str) -> tuple[str, str] | None:
    """(token, the removed stage's name) for the Undo banner, if the token still holds."""
    stage = undone(pipeline_id, token) if token else None
    return (token, str(stage.get("name", ""))) if stage else None


def undone(pipeline_id: int, token: str | None = None) -> dict[str, Any] | None:
    """The removed stage the Undo form carries, if its signature holds, it is recent and it was
    removed from this pipeline."""
    try:
        data = _serializer().loads(
            token if token is not None else request.form.get("undo", ""), max_age=UNDO_SECONDS)
    except BadSignature:
        return None
    if not isinstance(data, dict) or data.get("pipeline_id") != pipeline_id:
        return None
    return data.get("stage")
