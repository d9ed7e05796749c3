"""The shapes of the release calendar's admin API (webapp/views/api/calendar.py): request
bodies and answers, as the OpenAPI document describes them."""

from marshmallow import fields, validate

from webapp.services.runs import calendar
from webapp.views.api.common import MAX_ID, Id, Shape


class WindowSchema(Shape):
    weekday = fields.Raw(required=True, metadata={
        "description": "0 (Monday) to 6 (Sunday), or the English name of the day."})
    opens = fields.String(required=True, metadata={"description": "HH:MM, local time."})
    closes = fields.String(required=True, metadata={
        "description": "HH:MM, local time, after `opens` (24:00 closes at midnight)."})


class ScheduleSchema(Shape):
    environment_id = fields.Integer(required=True)
    environment = fields.String(required=True)
    timezone = fields.String(required=True, metadata={"description": "IANA time zone."})
    windows = fields.List(fields.Nested(WindowSchema), required=True, metadata={
        "description": "Weekly opening hours; none: always open."})
    open_now = fields.Boolean(required=True)
    next_opening = fields.String(allow_none=True, required=True, metadata={
        "description": "When a stage may next apply (windows, freezes, the stop switch); null "
                       "while the line is stopped."})
    note = fields.String(allow_none=True, required=True, metadata={
        "description": "e.g. \"Production: next window Monday 09:00\"; null when open."})


class ScheduleBodySchema(Shape):
    timezone = fields.String(required=True, validate=validate.Length(min=1, max=64))
    windows = fields.List(fields.Dict(), required=True, validate=validate.Length(
        max=calendar.MAX_WINDOWS))


class FreezeSchema(Shape):
    id = fields.Integer(required=True)
    scope = fields.String(required=True, metadata={"description": "project | organisation"})
    organisation_id = fields.Integer(required=True)
    project_id = fields.Integer(allow_none=True, required=True)
    starts_at = fields.String(required=True)
    ends_at = fields.String(required=True)
    reason = fields.String(required=True)
    all_environments = fields.Boolean(required=True)
    environments = fields.List(fields.Integer(), required=True, metadata={
        "description": "Environment ids frozen when not all_environments."})
    created_by = fields.String(required=True)
    created_at = fields.String(required=True)
    lifted_at = fields.String(allow_none=True, required=True)
    lifted_by = fields.String(allow_none=True, required=True)
    version = fields.Integer(required=True)
    state = fields.String(required=True, metadata={
        "description": "scheduled | active | ended | lifted"})


class FreezeListSchema(Shape):
    count = fields.Integer(required=True)
    results = fields.List(fields.Nested(FreezeSchema), required=True)


class FreezeCreateSchema(Shape):
    starts_at = fields.AwareDateTime(required=True, metadata={
        "description": "ISO 8601 with a zone, e.g. 2030-12-20T00:00:00Z."})
    ends_at = fields.AwareDateTime(required=True)
    reason = fields.String(required=True, validate=validate.Length(
        min=1, max=calendar.MAX_REASON))
    environments = fields.List(Id(), allow_none=True, load_default=None,
                               validate=validate.Length(min=1, max=500), metadata={
                                   "description": "Environment ids; omit or null for all."})


class FreezeUpdateSchema(Shape):
    starts_at = fields.AwareDateTime()
    ends_at = fields.AwareDateTime()
    reason = fields.String(validate=validate.Length(min=1, max=calendar.MAX_REASON))
    environments = fields.List(Id(), allow_none=True, validate=validate.Length(min=1, max=500),
                               metadata={"description": "Environment ids; null for all."})
    version = fields.Integer(strict=True, validate=validate.Range(min=1, max=MAX_ID), metadata={
        "description": "The version you read: a stale edit answers 409."})


class ReleaseSchema(Shape):
    resumed = fields.Integer(required=True, metadata={
        "description": "Flags that resume with the time they had left."})
    still_held = fields.Integer(required=True, metadata={
        "description": "Flags another freeze or stop still holds."})
    first_due = fields.String(allow_none=True, required=True)
    last_due = fields.String(allow_none=True, required=True, metadata={
        "description": "Their due work is spread: this is when the last one is due."})


class FreezeChangeSchema(Shape):
    freeze = fields.Nested(FreezeSchema, required=True)
    released = fields.Nested(ReleaseSchema, required=True)


class StopSchema(Shape):
    id = fields.Integer(required=True)
    scope = fields.String(required=True)
    organisation_id = fields.Integer(required=True)
    project_id = fields.Integer(allow_none=True, required=True)
    reason = fields.String(required=True)
    stopped_by = fields.String(required=True)
    stopped_at = fields.String(required=True)
    lifted_at = fields.String(allow_none=True, required=True)
    lifted_by = fields.String(allow_none=True, required=True)
    active = fields.Boolean(required=True)


class HoldSchema(Shape):
    kind = fields.String(required=True, metadata={"description": "stop | freeze | window"})
    scope = fields.String(required=True)
    id = fields.Integer(allow_none=True, required=True)
    who = fields.String(required=True)
    why = fields.String(required=True)
    since = fields.String(allow_none=True, required=True)
    until = fields.String(allow_none=True, required=True)
    text = fields.String(required=True)


class StopStateSchema(Shape):
    stopped = fields.Boolean(required=True, metadata={
        "description": "Whether this scope's own switch is pulled."})
    stop = fields.Nested(StopSchema, allow_none=True, required=True)
    holds = fields.List(fields.Nested(HoldSchema), required=True, metadata={
        "description": "What holds transitions now (a project: its stop or the "
                       "organisation's, then active freezes)."})


class StopBodySchema(Shape):
    reason = fields.String(required=True, validate=validate.Length(
        min=1, max=calendar.MAX_REASON))


class StopResultSchema(Shape):
    stop = fields.Nested(StopSchema, required=True)
    held = fields.Integer(required=True, metadata={"description": "Flags held in place."})


class LiftResultSchema(Shape):
    stop = fields.Nested(StopSchema, required=True)
    released = fields.Nested(ReleaseSchema, required=True)
