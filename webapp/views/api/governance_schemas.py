"""Request and response shapes of the change-request and audit endpoints (marshmallow), and
the parsing of the audit list's filters."""

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from marshmallow import ValidationError, fields, validate, validates_schema

from webapp.services.change_requests.workflow import MAX_COMMENT
from webapp.services.runs.approvals import STATUSES
from webapp.views.api.common import MAX_ID, MAX_PAGE_SIZE, Shape

# --- change requests ---

class ChangeRequestUserSchema(Shape):
    id = fields.Integer(required=True)
    email = fields.String(required=True)
    name = fields.String(required=True)


class ChangeRequestEnvironmentSchema(Shape):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    api_key = fields.String(required=True)


class ChangeRequestFeatureSchema(Shape):
    id = fields.Integer(required=True)
    name = fields.String(required=True)


class ChangeRequestChangeSchema(Shape):
    kind = fields.String(required=True, metadata={
        "description": "state, override, remove_override or rollout."})
    segment = fields.Integer(allow_none=True, required=True)
    segment_name = fields.String(allow_none=True, required=True)
    action_type = fields.String(allow_none=True, required=True, metadata={
        "description": "The pipeline stage's action that planned the change, if any."})
    before = fields.Dict(allow_none=True, required=True, metadata={
        "description": "enabled, value (and priority, percent) before; null: none yet."})
    after = fields.Dict(allow_none=True, required=True, metadata={
        "description": "The same once applied; null: the override is removed."})


class ChangeRequestReviewSchema(Shape):
    user = fields.Nested(ChangeRequestUserSchema, required=True)
    decision = fields.String(required=True, validate=validate.OneOf(("approved", "rejected")))
    comment = fields.String(required=True)
    created_at = fields.String(required=True)
    current = fields.Boolean(required=True, metadata={
        "description": "False when the changes were recomputed since: it no longer counts."})


class ChangeRequestApprovalSchema(Shape):
    user = fields.Nested(ChangeRequestUserSchema, required=True)
    approved_at = fields.String(required=True)
    comment = fields.String(required=True)
    current = fields.Boolean(required=True)


class ChangeRequestStageSchema(Shape):
    id = fields.Integer(required=True)
    name = fields.String(required=True)


class ChangeRequestRunSchema(Shape):
    id = fields.Integer(required=True)
    status = fields.String(required=True)


class ChangeRequestPipelineSchema(Shape):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    stage = fields.Nested(ChangeRequestStageSchema, allow_none=True, required=True)
    run = fields.Nested(ChangeRequestRunSchema, allow_none=True, required=True)


class ChangeRequestSummarySchema(Shape):
    id = fields.Integer(required=True)
    title = fields.String(required=True)
    description = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    project = fields.Integer(required=True)
    environment = fields.Nested(ChangeRequestEnvironmentSchema, required=True)
    feature = fields.Nested(ChangeRequestFeatureSchema, required=True)
    requested_by = fields.String(required=True, metadata={
        "description": "A person, or the release pipeline (and who added the flag)."})
    created_by = fields.Integer(allow_none=True, required=True)
    approval_count = fields.Integer(required=True, metadata={
        "description": "Approvals of the current changes."})
    approvals_needed = fields.Integer(required=True)
    created_at = fields.String(required=True)
    updated_at = fields.String(allow_none=True, required=True)
    committed_at = fields.String(allow_none=True, required=True)


class ChangeRequestSchema(ChangeRequestSummarySchema):
    changes = fields.List(fields.Nested(ChangeRequestChangeSchema), required=True)
    changes_hash = fields.String(required=True, metadata={
        "description": "Send it back when approving or rejecting: a review of changes that "
                       "were recomputed meanwhile is refused (409)."})
    approvals = fields.List(fields.Nested(ChangeRequestApprovalSchema), required=True)
    reviews = fields.List(fields.Nested(ChangeRequestReviewSchema), required=True)
    pipeline = fields.Nested(ChangeRequestPipelineSchema, allow_none=True, required=True)
    committed_by = fields.Nested(ChangeRequestUserSchema, allow_none=True, required=True)


class ChangeRequestReviewBodySchema(Shape):
    comment = fields.String(load_default="",
                            validate=[validate.Length(max=MAX_COMMENT)])
    changes_hash = fields.String(load_default=None, allow_none=True,
                                 validate=[validate.Length(min=1, max=64)])


class ChangeRequestOpenedSchema(Shape):
    """The answer of a flag change in an environment that needs approvals."""

    detail = fields.String(required=True)
    change_request = fields.Nested(ChangeRequestSchema, required=True)


# --- audit log ---

class AuditEntrySchema(Shape):
    id = fields.Integer(required=True)
    created_at = fields.String(required=True)
    event_type = fields.String(required=True)
    actor = fields.String(required=True, metadata={
        "description": "A user's email, `API key <name>`, `Release pipeline <name>`, ..."})
    actor_type = fields.String(required=True)
    message = fields.String(required=True)
    environment = fields.Integer(allow_none=True, required=True)
    feature = fields.Integer(allow_none=True, required=True)
    pipeline = fields.Integer(allow_none=True, required=True)
    change_request = fields.Integer(allow_none=True, required=True)
    object_type = fields.String(required=True)
    object_id = fields.Integer(allow_none=True, required=True)
    object_label = fields.String(required=True)
    before = fields.Raw(allow_none=True, required=True, metadata={
        "description": "Secret-looking values are masked unless you are a project admin."})
    after = fields.Raw(allow_none=True, required=True)


class UtcMoment(fields.Field):
    """An ISO 8601 date or date-time (UTC unless it says otherwise), loaded as the (start, end)
    of the time the text names: a day, an hour, a minute, a second..., so that "until
    2025-03-31" includes that whole day, as on the audit page."""

    _TIME = re.compile(r"^[^Tt ]+[Tt ](\d{2}):?(\d{2})?:?(\d{2})?([.,]\d+)?")
    _MESSAGE = ("Not a date or time: use 2025-03-31, 2025-03-31T14:30 (UTC) or "
                "2025-03-31T14:30:00+02:00.")

    def _deserialize(self, value: Any, attr, data, **kwargs) -> tuple[datetime, datetime]:
        text = value.strip() if isinstance(value, str) else ""
        try:
            moment = datetime.fromisoformat(text)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            moment = moment.astimezone(UTC)
            return moment, moment + self._span(text)
        except (ValueError, OverflowError):
            raise ValidationError(self._MESSAGE) from None

    def _span(self, text: str) -> timedelta:
        time = self._TIME.match(text)
        if time is None:
            return timedelta(days=1)
        if time.group(4):
            return timedelta(microseconds=1)
        if time.group(3):
            return timedelta(seconds=1)
        return timedelta(minutes=1) if time.group(2) else timedelta(hours=1)


def QueryId(**kwargs: Any) -> fields.Integer:  # noqa: N802  (a field factory)
    """An id in a query string (text, so not strict)."""
    return fields.Integer(validate=validate.Range(min=1, max=MAX_ID), **kwargs)


class AuditQuerySchema(Shape):
    project = QueryId(required=True)
    event_type = fields.String(validate=validate.Regexp(r"^[A-Za-z0-9_.:-]{1,64}$",
                                                        error="Not an event type."))
    actor = fields.String(validate=[validate.Length(min=1, max=320)])
    feature = QueryId()
    pipeline = QueryId()
    environment = QueryId()
    since = UtcMoment()
    until = UtcMoment()
    before = QueryId()
    after = QueryId()
    page_size = fields.Integer(validate=validate.Range(min=1, max=MAX_PAGE_SIZE))

    @validates_schema
    def _coherent(self, data: dict[str, Any], **kwargs) -> None:
        if "before" in data and "after" in data:
            raise ValidationError("Use before or after, not both.", "after")
        since, until = data.get("since"), data.get("until")
        if since and until and until[1] <= since[0]:
            raise ValidationError("Must not be before since.", "until")
