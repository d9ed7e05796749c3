"""The audit log as people read it: each entry's label, its sentence with names, and its change
as a field-by-field list of "before → after" in words.

Pure functions of an entry and the page's `Names` (audit_names), so a page of 50 entries costs
a fixed number of queries however many ids they mention.
"""

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from webapp.services.governance import audit_wording
from webapp.services.governance.audit_names import (
    FEATURE_OBJECTS,
    LIFECYCLE_KIND,
    PIPELINE_OBJECTS,
    Names,
)

# Separates the parts of a field path ("Stage 2 · Action 1 · on/off"); builder sessions
# (pipelines.edit_sessions) write their fields so.
PATH = " · "
# Joins a builder session's edits in its message ("...: stage 1 (Dev) added; stage 1 ...").
EDITS_JOIN = "; "
# A builder session's sentence names this many of its edits (the diff lists every field).
NOTE_EDITS = 3
# A value longer than this is shown folded (its start, expandable to the whole).
FOLD_AT = 80


@dataclass(frozen=True)
class DiffLine:
    key: str  # what changed, in words; "" when the whole value changed
    before: str | None  # in words; None when there was nothing before
    after: str | None  # in words; None when it is gone

    @property
    def long(self) -> bool:
        """Whether a side is long enough to be folded on the page."""
        return any(len(side or "") > FOLD_AT for side in (self.before, self.after))


# Field names in words (the rest: underscores become spaces).
_KEY_WORDS = {
    "enabled": "on/off", "segment_id": "segment", "environment_id": "environment",
    "feature_id": "flag", "pipeline_id": "pipeline", "source_id": "copied from",
    "source_name": "copied from", "trigger_type": "trigger", "wait_seconds": "wait",
    "action_type": "action", "rollout_initial": "rollout starts at (%)",
    "rollout_step": "rollout step (%)", "rollout_interval_seconds": "rollout every",
    "percent": "rollout (%)", "remaining_seconds": "time left", "last_error": "last error",
    "due_at": "due", "site_admin": "site admin", "value_type": "value type",
    "default_enabled": "on by default", "default_value": "default value",
    "health_checks": "health checks", "stage": "stage",
    "minimum_change_request_approvals": "approvals needed",
}
_SECONDS = ("wait_seconds", "rollout_interval_seconds", "remaining_seconds")
_TRIGGERS = {"ON_ENTER": "when the flag enters the stage", "WAIT_FOR": "after a wait"}
# The builder's action types in words (pipelines.describe.ACTION_LABELS says the same; the
# audit log sits below the pipelines and reads old entries' types too).
_ACTIONS = {
    "TOGGLE_FEATURE": "Enable / disable for everyone",
    "UPDATE_FEATURE_VALUE": "Set the value for everyone",
    "TOGGLE_FEATURE_FOR_SEGMENT": "Enable / disable for a segment",
    "UPDATE_FEATURE_VALUE_FOR_SEGMENT": "Set the value for a segment",
    "PHASED_ROLLOUT": "Phased rollout",
}
_ID_KINDS = {"segment_id": "segment", "environment_id": "environment", "feature_id": "feature",
             "pipeline_id": "pipeline", "source_id": "pipeline"}


def key_words(key: str) -> str:
    """A field path in words: each part's field name replaced ("Stage 2 · segment")."""
    parts = key.split(PATH)
    last = parts[-1]
    parts[-1] = _KEY_WORDS.get(last, last.replace("_", " "))
    return PATH.join(parts)


def show(key: str, value: Any, names: Names) -> str:
    """One field's value in words."""
    field = key.split(PATH)[-1]
    if value is None:
        return "none"
    if isinstance(value, bool):
        if field in ("enabled", "default_enabled"):
            return "on" if value else "off"
        return "yes" if value else "no"
    if field in _ID_KINDS and isinstance(value, int):
        return names.name(_ID_KINDS[field], value)
    if field in _SECONDS and isinstance(value, int | float):
        return _duration(int(value))
    if field == "trigger_type" and isinstance(value, str):
        return _TRIGGERS.get(value, value)
    if field == "action_type" and isinstance(value, str):
        return _ACTIONS.get(value, value)
    if field == "value" and isinstance(value, str):
        return f"“{value}”"
    if value == "":
        return "empty"
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return ", ".join(map(str, value)) or "none"
    return json.dumps(value, ensure_ascii=False, default=str)


def _duration(seconds: int) -> str:
    """2 days, 1 hour, 30 minutes, 45 seconds: the largest whole unit, in words."""
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


def diff(before: Any, after: Any, names: Names) -> list[DiffLine]:
    """What changed, field by field in words: keys of two objects (nested objects as paths),
    each change of a change request's list, or the whole value."""
    if _changes_list(before) or _changes_list(after):
        lines = [line for change in (_changes_list(after) or _changes_list(before))
                 for line in _change_lines(change, names)]
        rest_before = {k: v for k, v in (before or {}).items() if k != "changes"}
        rest_after = {k: v for k, v in (after or {}).items() if k != "changes"}
        return lines + _object_lines("", rest_before or None, rest_after or None, names)
    if isinstance(before, dict | None) and isinstance(after, dict | None) and (before or after):
        return _object_lines("", before, after, names)
    if before == after:
        return []
    return [DiffLine("", None if before is None else show("", before, names),
                     None if after is None else show("", after, names))]


def _changes_list(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict) and isinstance(value.get("changes"), list):
        return [c for c in value["changes"] if isinstance(c, dict)]
    return []


def _object_lines(prefix: str, before: dict[str, Any] | None, after: dict[str, Any] | None,
                  names: Names) -> list[DiffLine]:
    old, new = before or {}, after or {}
    lines: list[DiffLine] = []
    for key in list(old) + [k for k in new if k not in old]:
        if key in old and key in new and old[key] == new[key]:
            continue
        path = f"{prefix}{key}"
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict | None) and isinstance(b, dict | None) and (a or b) \
                and (isinstance(a, dict) or isinstance(b, dict)):
            lines += _object_lines(path + PATH, a, b, names)
            continue
        lines.append(DiffLine(key_words(path),
                              show(path, a, names) if key in old else None,
                              show(path, b, names) if key in new else None))
    return lines


def _change_lines(change: Mapping[str, Any], names: Names) -> list[DiffLine]:
    """A change request's change: "Production · segment Beta testers · on/off: off → on"."""
    kind = change.get("kind")
    where = names.name("environment", change.get("environment_id"))
    if kind == "state":
        target = "everyone"
    elif kind == "rollout":
        target = "phased rollout"
    else:
        target = f"segment {names.name('segment', change.get('segment_id'))}"
    prefix = f"{where}{PATH}{target}{PATH}"
    before, after = change.get("before"), change.get("after")
    if kind == "remove_override":
        return [DiffLine(f"{where}{PATH}{target}", _state_words(before), "override removed")]
    return _object_lines(prefix, before if isinstance(before, dict) else None,
                         after if isinstance(after, dict) else None, names)


def _state_words(state: Any) -> str | None:
    if not isinstance(state, dict):
        return None
    words = "on" if state.get("enabled") else "off"
    if state.get("value") is not None:
        words += f", value “{state['value']}”"
    return words


# --- Sentences -----------------------------------------------------------------------------------


def fields(entry: Mapping[str, Any], names: Names) -> dict[str, str]:
    """The names and words an entry's sentence may use (see audit_wording)."""
    object_type, object_id = entry.get("object_type"), entry.get("object_id")
    label = entry.get("object_label") or ""
    stored_before, stored_after = entry.get("before"), entry.get("after")
    before: dict[str, Any] = stored_before if isinstance(stored_before, dict) else {}
    after: dict[str, Any] = stored_after if isinstance(stored_after, dict) else {}
    feature_id = entry.get("feature_id")
    if feature_id is None and object_type in FEATURE_OBJECTS:
        feature_id = object_id
    pipeline_id = entry.get("pipeline_id")
    if pipeline_id is None and object_type in PIPELINE_OBJECTS:
        pipeline_id = object_id
    # A lifecycle entry (created, renamed, deleted) speaks of its object by the name it had.
    own = {LIFECYCLE_KIND.get(str(entry.get("event_type"))): label} if label else {}
    segment_id = after.get("segment_id", before.get("segment_id"))
    if object_type == "segment" and not str(entry.get("event_type", "")).startswith("PHASED"):
        segment_id = object_id
    out = {
        "actor": entry.get("actor_label") or "",
        "feature": names.name("feature", feature_id,
                              label if object_type in FEATURE_OBJECTS else ""),
        "pipeline": names.name("pipeline", pipeline_id,
                               label if object_type in PIPELINE_OBJECTS else ""),
        "environment": names.name("environment", entry.get("environment_id"),
                                  label if object_type == "environment" else ""),
        "segment": names.name("segment", segment_id if isinstance(segment_id, int) else None,
                              label if object_type == "segment" else ""),
        "change_request": names.name("change_request", entry.get("change_request_id"), label),
        "object": label or (f"#{object_id}" if object_id is not None else ""),
        "target": "for everyone" if object_type == "feature_state" else "",
        "toggle": _toggle(entry.get("before"), entry.get("after")),
        "percent": _text(after.get("percent")),
        "old_percent": _text(before.get("percent")),
        "role": _text(after.get("role")),
        "old_role": _text(before.get("role")),
        "rotated": _text(after.get("rotated")) or "key",
        "source": (before.get("source_name")
                   or names.name("pipeline", before.get("source_id"))),
        "comment": f": “{after['comment']}”" if after.get("comment") else "",
        "reason": _reason(entry.get("message") or ""),
        "note": _note(entry),
    }
    for kind, name in own.items():
        if kind is not None:
            out[kind] = name
    if not out["target"]:
        out["target"] = f"for segment {out['segment']}" if segment_id else "for everyone"
    return out


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _toggle(before: Any, after: Any) -> str:
    """What a state or override change did to the flag, in a word or three."""
    if not isinstance(after, dict):
        return "no longer overridden"
    old = before if isinstance(before, dict) else {}
    enabled = after.get("enabled")
    value_changed = "value" in after and old.get("value") != after.get("value") and bool(old)
    if isinstance(enabled, bool) and (not old or old.get("enabled") != enabled):
        words = "enabled" if enabled else "disabled"
        return words + (" with a new value" if value_changed else "")
    if value_changed:
        return "given a new value"
    if "priority" in after and old.get("priority") != after.get("priority"):
        return "given a new priority"
    return "left as it was"


_CLOSED = re.compile(r"closed \((?P<reason>[^)]*)\)")


def _reason(message: str) -> str:
    found = _CLOSED.search(message)
    return f" ({found['reason']})" if found else ""


def _note(entry: Mapping[str, Any]) -> str:
    """The detail the writer's message carries after its subject (a reason, what an edit
    changed): the text after "Release pipeline <name>: ", else after the first ": "."""
    message = entry.get("message") or ""
    prefix = f"Release pipeline {entry.get('object_label') or ''}: "
    if message.startswith(prefix):  # a builder session: its edits, the first few named
        edits = message[len(prefix):].split(EDITS_JOIN)
        if len(edits) <= NOTE_EDITS:
            return EDITS_JOIN.join(edits)
        more = len(edits) - NOTE_EDITS
        named = EDITS_JOIN.join(edits[:NOTE_EDITS])
        return f"{named} and {more} more edit{'s' if more > 1 else ''}"
    head, colon, tail = message.partition(": ")
    return tail if colon else ""


def sentence(entry: Mapping[str, Any], names: Names) -> str:
    """The entry as one sentence with names (audit_wording's template for its event type)."""
    return audit_wording.sentence(entry.get("event_type") or "", fields(entry, names),
                                  entry.get("message") or "")
