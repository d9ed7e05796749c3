"""How the audit log reads: every event type's label (the filter's words) and sentence.

The stored entry keeps what the writer recorded (its `message`, ids, before/after JSON); the
page, the CSV export and the API show the sentence rendered here at read time, with names that
`audit_names` resolved for the whole page at once.

Adding an event type is one line in `WORDING`:

    "RELEASE_SLOT_BOOKED": Wording("Release slot booked", "Release slot {object} booked"),

A sentence is a `str.format` template over the fields of `Fields` (names already resolved;
`{message}` is the writer's own text), or
a function of those fields when the words depend on the values. tests/audit/test_wording.py
renders every event type, and fails for an event type written anywhere in webapp/ or jobs/
that has no line here.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

_Sentence = str | Callable[[Mapping[str, str]], str]


@dataclass(frozen=True)
class Wording:
    label: str  # a few human words, capitalised: the filter's option and the entry's tag
    sentence: _Sentence


def _rollout(fields: Mapping[str, str]) -> str:
    where = f" in {fields['environment']}" if fields.get("environment") else ""
    if fields.get("percent") and fields.get("old_percent"):
        return (f"Phased rollout of {fields['feature']} raised from {fields['old_percent']}% "
                f"to {fields['percent']}%{where}")
    return f"Phased rollout of {fields['feature']} complete: its hidden segment removed{where}"


def _as_told(label: str) -> "Wording":
    """Wording whose sentence is the writer's own message, for writers whose message already is
    a sentence with names and times (the release calendar's); the label when it is empty."""
    return Wording(label, lambda fields: fields.get("message") or label)


def _role(fields: Mapping[str, str]) -> str:
    was = f" (was {fields['old_role']})" if fields.get("old_role") else ""
    return f"{fields['object']} is now {fields['role'] or 'a member'} in the project{was}"


WORDING: dict[str, Wording] = {
    # Flags and their states
    "FEATURE_CREATED": Wording("Flag created", "Flag {feature} created"),
    "FEATURE_UPDATED": Wording("Flag edited", "Description and tags of flag {feature} edited"),
    "FEATURE_DELETED": Wording("Flag deleted", "Flag {feature} deleted"),
    "FEATURE_STATE_UPDATED": Wording(
        "Flag changed", "{feature} {toggle} for everyone in {environment}"),
    "FEATURE_STATE_UPDATED_BY_RELEASE_PIPELINE": Wording(
        "Flag changed by a pipeline",
        "{feature} {toggle} {target} in {environment} by pipeline {pipeline}"),
    "FEATURE_STATE_ROLLED_BACK": Wording(
        "Flag restored by a rollback",
        "{feature} restored {target} in {environment} by rolling back pipeline {pipeline}"),
    "SEGMENT_OVERRIDE_CREATED": Wording(
        "Segment override added",
        "{feature} {toggle} for segment {segment} in {environment} (new override)"),
    "SEGMENT_OVERRIDE_UPDATED": Wording(
        "Segment override changed", "{feature} {toggle} for segment {segment} in {environment}"),
    "SEGMENT_OVERRIDE_DELETED": Wording(
        "Segment override removed",
        "Override of {feature} for segment {segment} removed in {environment}"),
    "PHASED_ROLLOUT_STATE_CREATED": Wording(
        "Phased rollout started",
        "Phased rollout of {feature} started at {percent}% in {environment} by pipeline "
        "{pipeline}"),
    "PHASED_ROLLOUT_STATE_UPDATED": Wording("Phased rollout moved on", _rollout),
    # Segments
    "SEGMENT_CREATED": Wording("Segment created", "Segment {segment} created"),
    "SEGMENT_UPDATED": Wording("Segment edited", "Segment {segment} edited"),
    "SEGMENT_DELETED": Wording("Segment deleted", "Segment {segment} deleted"),
    # Release pipelines
    "RELEASE_PIPELINE_CREATED": Wording("Pipeline created", "Pipeline {pipeline} created"),
    "RELEASE_PIPELINE_CLONED": Wording(
        "Pipeline cloned", "Pipeline {pipeline} created as a copy of {source}"),
    "RELEASE_PIPELINE_UPDATED": Wording("Pipeline edited", "Pipeline {pipeline} edited: {note}"),
    "RELEASE_PIPELINE_PUBLISHED": Wording("Pipeline published", "Pipeline {pipeline} published"),
    "RELEASE_PIPELINE_UNPUBLISHED": Wording(
        "Pipeline unpublished", "Pipeline {pipeline} turned back into a draft"),
    "RELEASE_PIPELINE_DELETED": Wording("Pipeline deleted", "Pipeline {pipeline} deleted"),
    "RELEASE_PIPELINE_FEATURE_ADDED": Wording(
        "Flag added to a pipeline", "{feature} added to pipeline {pipeline}"),
    "RELEASE_PIPELINE_FEATURE_REMOVED": Wording(
        "Flag taken out of a pipeline",
        "{feature} taken out of pipeline {pipeline}; its states stay as they are"),
    "RELEASE_PIPELINE_FEATURE_PAUSED": Wording(
        "Flag paused", "{feature} paused in pipeline {pipeline}"),
    "RELEASE_PIPELINE_FEATURE_RESUMED": Wording(
        "Flag resumed", "{feature} resumed in pipeline {pipeline}"),
    "RELEASE_PIPELINE_FEATURE_ADVANCED": Wording(
        "Flag moved on early", "{feature} moved on without waiting in pipeline {pipeline}"),
    "RELEASE_PIPELINE_FEATURE_RETRIED": Wording(
        "Flag retried", "{feature} retried in pipeline {pipeline}"),
    "RELEASE_PIPELINE_FEATURE_HELD": Wording(
        "Flag held", "{feature} held in pipeline {pipeline}: {note}"),
    "RELEASE_PIPELINE_FEATURE_RELEASED": _as_told("Flag released by the calendar"),
    "RELEASE_PIPELINE_FEATURE_HALTED": Wording(
        "Flag halted", "{feature} halted in pipeline {pipeline}: {note}"),
    "RELEASE_PIPELINE_FEATURE_LAUNCHED": Wording(
        "Flag launched", "{feature} launched: it completed every stage of pipeline {pipeline}"),
    "RELEASE_PIPELINE_FEATURE_ROLLED_BACK": Wording(
        "Flag rolled back", "{feature} rolled back and taken out of pipeline {pipeline}"),
    "RELEASE_PIPELINE_FEATURE_ROLLED_BACK_AUTOMATICALLY": Wording(
        "Flag rolled back automatically",
        "{feature} rolled back automatically and taken out of pipeline {pipeline}"),
    "HEALTH_CHECK_FAILED": Wording(
        "Health check failed", "A health check of {feature} failed in pipeline {pipeline}: "
        "{note}"),
    "HEALTH_CHECK_RECOVERED": Wording(
        "Health check recovered", "A health check of {feature} recovered in pipeline "
        "{pipeline}: {note}"),
    # Change requests
    "CHANGE_REQUEST_OPENED": Wording(
        "Change request opened",
        "Change request {change_request} opened for {feature} in {environment}"),
    "CHANGE_REQUEST_APPROVED": Wording(
        "Change request approved", "Change request {change_request} approved{comment}"),
    "CHANGE_REQUEST_REJECTED": Wording(
        "Change request rejected", "Change request {change_request} rejected{comment}"),
    "CHANGE_REQUEST_COMMITTED": Wording(
        "Change request committed",
        "Change request {change_request} committed: {feature} changed in {environment}"),
    "CHANGE_REQUEST_CLOSED": Wording(
        "Change request closed", "Change request {change_request} closed{reason}"),
    "CHANGE_REQUEST_REOPENED": Wording(
        "Change request re-opened",
        "Change request {change_request} re-opened, earlier approvals void"),
    "CHANGE_REQUEST_UPDATED": Wording(
        "Change request recomputed",
        "Change request {change_request} recomputed: {feature} changed since it was opened"),
    # Projects, environments, keys, people
    "PROJECT_CREATED": Wording("Project created", "Project {object} created"),
    "PROJECT_INTEGRATIONS_UPDATED": Wording(
        "Integrations changed", "Integrations (metrics and alerts) of the project changed"),
    "ENVIRONMENT_CREATED": Wording("Environment created", "Environment {environment} created"),
    "ENVIRONMENT_UPDATED": Wording("Environment edited", "Environment {environment} edited"),
    "ENVIRONMENT_KEY_ROTATED": Wording(
        "Environment key rotated", "The {rotated} of {environment} rotated"),
    "SERVER_KEY_CREATED": Wording(
        "Server-side key created", "Server-side key {object} created in {environment}"),
    "SERVER_KEY_DELETED": Wording(
        "Server-side key deleted", "Server-side key {object} deleted in {environment}"),
    "MEMBER_ROLE_SET": Wording("Member role set", _role),
    "MEMBER_REMOVED": Wording("Member removed", "{object} removed from the project"),
    "USER_CREATED": Wording("User created", "User {object} created"),
    "USER_REMOVED": Wording("User removed", "User {object} removed"),
    "USER_PASSWORD_CHANGED": Wording("Password changed", "Password of {object} changed"),
    "API_KEY_CREATED": Wording("API key created", "API key {object} created"),
    "API_KEY_REVOKED": Wording("API key revoked", "API key {object} revoked"),
    # Webhooks
    "WEBHOOK_CREATED": Wording("Webhook added", "Webhook {object} added"),
    "WEBHOOK_UPDATED": Wording("Webhook edited", "Webhook {object} edited"),
    "WEBHOOK_DELETED": Wording("Webhook removed", "Webhook {object} removed"),
    "SLACK_WEBHOOK_SET": Wording("Slack webhook set", "Slack incoming webhook set"),
    "WEBHOOK_DELIVERY_RESENT": Wording(
        "Webhook delivery sent again", "A delivery to webhook {object} sent again"),
    # Release calendar: its writer's message is already the sentence, with names and times.
    "DEPLOYMENT_WINDOWS_UPDATED": _as_told("Deployment windows set"),
    "FREEZE_CREATED": _as_told("Freeze planned"),
    "FREEZE_UPDATED": _as_told("Freeze changed"),
    "FREEZE_LIFTED": _as_told("Freeze lifted"),
    "FREEZE_STARTED": _as_told("Freeze started"),
    "FREEZE_ENDED": _as_told("Freeze ended"),
    "LINE_STOPPED": _as_told("Line stopped"),
    "LINE_LIFTED": _as_told("Line stop lifted"),
    "CHANGE_REQUEST_BREAK_GLASS": _as_told("Break-glass commit"),
}

# What a field shows when its name could not be found at all.
UNKNOWN = "(unknown)"


class _Fields(dict[str, str]):
    """Template fields: one that is missing reads as UNKNOWN instead of raising."""

    def __missing__(self, key: str) -> str:
        return UNKNOWN


def label(event_type: str) -> str:
    """The event type in a few words ("Change request opened"); an event type with no wording
    (an old entry's) reads as its words in sentence case."""
    wording = WORDING.get(event_type)
    if wording is not None:
        return wording.label
    return humanise(event_type)


def humanise(constant: str) -> str:
    """FEATURE_STATE_UPDATED -> "Feature state updated"."""
    words = constant.replace("_", " ").replace(".", " ").strip().lower()
    return words[:1].upper() + words[1:]


def sentence(event_type: str, fields: Mapping[str, Any], message: str = "") -> str:
    """The entry as a sentence. `fields` holds the names resolved for it; without wording for
    the event type, the message the writer stored."""
    wording = WORDING.get(event_type)
    if wording is None:
        return message or humanise(event_type)
    values = _Fields({key: "" if value is None else str(value) for key, value in fields.items()})
    values.setdefault("message", message)
    text = (wording.sentence(values) if callable(wording.sentence)
            else wording.sentence.format_map(values))
    # Names keep their case ("dark_mode enabled..."): templates start with a capital or a name.
    return text.rstrip().removesuffix(":").rstrip()
