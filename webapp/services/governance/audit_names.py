"""Names for the ids an audit page mentions, looked up once per page (never once per entry).

Entries store ids (a flag, a segment, an environment...) and sometimes the name at the time
(`object_label`). `Names.for_entries` collects every id the entries mention, reads each kind's
current names in one query, and for the ids that no longer exist reads the name recorded by the
log's own lifecycle entries (FEATURE_DELETED, SEGMENT_DELETED... keep the last name) in one more
query. What is still unknown reads "#id (deleted)".
"""

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from webapp.extensions import db
from webapp.models import AuditEntry, ChangeRequest, Environment, Feature, ReleasePipeline, Segment

# Object types whose object_id is a flag's id (state and override entries name the flag).
FEATURE_OBJECTS = ("feature", "feature_state", "segment_override")
PIPELINE_OBJECTS = ("release_pipeline", "pipeline")

# Keys inside before/after (and change requests' lists of changes) that hold ids.
_ID_KEYS = {"segment_id": "segment", "environment_id": "environment", "feature_id": "feature",
            "pipeline_id": "pipeline", "source_id": "pipeline"}

# The log's entries that record an object's name when it is created, renamed or deleted:
# where a deleted object's last name is found.
_LIFECYCLE = {
    "feature": ("FEATURE_CREATED", "FEATURE_UPDATED", "FEATURE_DELETED"),
    "segment": ("SEGMENT_CREATED", "SEGMENT_UPDATED", "SEGMENT_DELETED"),
    "pipeline": ("RELEASE_PIPELINE_CREATED", "RELEASE_PIPELINE_CLONED",
                 "RELEASE_PIPELINE_DELETED"),
    "environment": ("ENVIRONMENT_CREATED", "ENVIRONMENT_UPDATED"),
}
LIFECYCLE_KIND = {event: kind for kind, events in _LIFECYCLE.items() for event in events}


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def walk_ids(value: Any) -> Iterator[tuple[str, int]]:
    """(kind, id) for every id-holding key anywhere in a JSON value."""
    if isinstance(value, dict):
        for key, item in value.items():
            kind = _ID_KEYS.get(str(key))
            if kind is not None and _is_id(item):
                yield kind, item
            else:
                yield from walk_ids(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk_ids(item)


def mentioned(entry: Mapping[str, Any]) -> Iterator[tuple[str, int]]:
    """(kind, id) for every object an entry mentions: its columns and its before/after."""
    object_type, object_id = entry.get("object_type"), entry.get("object_id")
    for kind, column in (("feature", "feature_id"), ("pipeline", "pipeline_id"),
                         ("environment", "environment_id"),
                         ("change_request", "change_request_id")):
        value = entry.get(column)
        if isinstance(value, int) and not isinstance(value, bool):
            yield kind, value
    if isinstance(object_id, int) and not isinstance(object_id, bool):
        if object_type in FEATURE_OBJECTS:
            yield "feature", object_id
        elif object_type in PIPELINE_OBJECTS:
            yield "pipeline", object_id
        elif object_type == "segment":
            yield "segment", object_id
        elif object_type == "environment":
            yield "environment", object_id
    yield from walk_ids(entry.get("before"))
    yield from walk_ids(entry.get("after"))


@dataclass
class Names:
    """Current names by (kind, id); `recorded` holds the last names of deleted objects."""

    current: dict[tuple[str, int], str] = field(default_factory=dict)
    recorded: dict[tuple[str, int], str] = field(default_factory=dict)

    @classmethod
    def for_entries(cls, project_id: int, entries: Iterable[Mapping[str, Any]]) -> "Names":
        """Every name the entries mention: one query per kind present, one more for the
        deleted ones. Scoped to the project: another project's id reads as unknown."""
        wanted: dict[str, set[int]] = {}
        for entry in entries:
            for kind, object_id in mentioned(entry):
                wanted.setdefault(kind, set()).add(object_id)
        names = cls()
        for kind, ids in wanted.items():
            names.current.update({(kind, i): n for i, n in _current(kind, project_id, ids)})
        missing = {(kind, i) for kind, ids in wanted.items() for i in ids
                   if (kind, i) not in names.current and kind in _LIFECYCLE}
        if missing:
            names.recorded = _recorded(project_id, missing)
        return names

    def name(self, kind: str, object_id: int | None, fallback: str = "") -> str:
        """The object's name now; a deleted one's last recorded name (or `fallback`, the
        entry's own label) marked "(deleted)"; else "#id (deleted)"."""
        if object_id is None:
            return fallback
        found = self.current.get((kind, object_id))
        if found is not None:
            return found
        last = self.recorded.get((kind, object_id)) or fallback
        return f"{last} (deleted)" if last else f"#{object_id} (deleted)"


def _current(kind: str, project_id: int, ids: set[int]) -> Sequence[tuple[int, str]]:
    if kind == "pipeline":
        rows = db.session.execute(
            select(ReleasePipeline.id, ReleasePipeline.name, ReleasePipeline.deleted_at)
            .where(ReleasePipeline.project_id == project_id, ReleasePipeline.id.in_(ids))).all()
        return [(i, n + (" (deleted)" if gone else "")) for i, n, gone in rows]
    if kind == "change_request":
        return [(i, f"#{i} “{title}”") for i, title in db.session.execute(
            select(ChangeRequest.id, ChangeRequest.title).where(
                ChangeRequest.project_id == project_id, ChangeRequest.id.in_(ids)))]
    models: dict[str, type[Feature] | type[Segment] | type[Environment]] = {
        "feature": Feature, "segment": Segment, "environment": Environment}
    model = models.get(kind)
    if model is None:
        return []
    return [(i, n) for i, n in db.session.execute(
        select(model.id, model.name).where(model.project_id == project_id, model.id.in_(ids)))]


def _recorded(project_id: int, missing: set[tuple[str, int]]) -> dict[tuple[str, int], str]:
    """The last name the log recorded for each missing object, from its lifecycle entries
    (read through the (project_id, event_type, id) index: few rows, whatever the log's size)."""
    events = [event for kind in {k for k, _ in missing} for event in _LIFECYCLE[kind]]
    ids = {object_id for _, object_id in missing}
    found: dict[tuple[str, int], str] = {}
    for event_type, object_id, label in db.session.execute(
            select(AuditEntry.event_type, AuditEntry.object_id, AuditEntry.object_label)
            .where(AuditEntry.project_id == project_id, AuditEntry.event_type.in_(events),
                   AuditEntry.object_id.in_(ids))
            .order_by(AuditEntry.id)):
        key = (LIFECYCLE_KIND[event_type], object_id)
        if key in missing and label:
            found[key] = label
    return found
