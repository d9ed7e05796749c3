"""Reading the audit log: filters, keyset pages, masking for non-admins, CSV export in batches.

Recording lives in `webapp.services.governance.audit`; this module only reads. Every query is
scoped to one project, so an id from another project (a pipeline, a flag) simply matches nothing
here.
"""

import io
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Select, Text, cast, false, func, select, text

from webapp import csv_export
from webapp.extensions import db
from webapp.models import AuditEntry, Environment, Feature, ReleasePipeline
from webapp.services.governance import audit_reading, audit_wording
from webapp.services.governance.audit_names import Names
from webapp.services.governance.audit_reading import DiffLine

PAGE_SIZE = 50
EXPORT_BATCH = 1000
MASK = "••••••"
_SECRET_KEY = re.compile(r"key|token|secret|password", re.IGNORECASE)

# "event" and "description" are what the page shows (the event's words, the sentence with
# names); they come last so the columns before them keep their places for existing readers.
CSV_COLUMNS = ("id", "created_at", "actor", "event_type", "environment", "object_type",
               "object_id", "object_label", "message", "before", "after", "event", "description")

# Only what a page or a CSV row shows: no ORM objects, no lazy loads.
_COLUMNS = (
    AuditEntry.id, AuditEntry.created_at, AuditEntry.actor_type, AuditEntry.actor_label,
    AuditEntry.environment_id, AuditEntry.event_type, AuditEntry.object_type,
    AuditEntry.object_id, AuditEntry.object_label, AuditEntry.message, AuditEntry.before,
    AuditEntry.after, AuditEntry.pipeline_id, AuditEntry.feature_id,
    AuditEntry.change_request_id,
)


@dataclass(frozen=True)
class AuditFilter:
    """Combinable filters; None means "any". `since` is inclusive, `until` exclusive."""

    event_type: str | None = None
    pipeline_id: int | None = None
    feature_id: int | None = None
    environment_id: int | None = None
    actor: str | None = None  # an actor label: a user's email, "API key X", "Release pipeline Y"
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class EntryRow:
    id: int
    created_at: datetime
    actor_type: str
    actor_label: str
    environment_id: int | None
    event_type: str
    object_type: str
    object_id: int | None
    object_label: str
    message: str
    before: Any
    after: Any
    pipeline_id: int | None
    feature_id: int | None
    change_request_id: int | None
    diff: list[DiffLine] = field(default_factory=list)  # in words, names resolved
    label: str = ""  # the event type in words ("Change request opened")
    sentence: str = ""  # the entry as a sentence with names


@dataclass(frozen=True)
class Page:
    entries: list[EntryRow]
    newer_cursor: int | None  # ask for `after=<this>` to see newer entries
    older_cursor: int | None  # ask for `before=<this>` to see older entries


@dataclass(frozen=True)
class FilterChoices:
    """What the filter form offers: values present in the project's log and its objects."""

    event_types: list[str]
    actors: list[str]
    pipelines: list[tuple[int, str]]
    features: list[tuple[int, str]]
    environments: list[tuple[int, str]]


def filter_choices(project_id: int) -> FilterChoices:
    """The event types and actors present in the project's log (one index skip-scan each) and
    the project's pipelines (deleted ones too: history keeps them), flags and environments."""
    pipelines = db.session.execute(
        select(ReleasePipeline.id, ReleasePipeline.name, ReleasePipeline.deleted_at)
        .where(ReleasePipeline.project_id == project_id)
        .order_by(ReleasePipeline.name, ReleasePipeline.id)
    ).all()
    return FilterChoices(
        event_types=_distinct(project_id, "event_type"),
        actors=_distinct(project_id, "actor_label"),
        pipelines=[(p.id, p.name + (" (deleted)" if p.deleted_at else "")) for p in pipelines],
        features=[(row.id, row.name) for row in db.session.execute(
            select(Feature.id, Feature.name).where(Feature.project_id == project_id)
            .order_by(Feature.name))],
        environments=[(row.id, row.name) for row in db.session.execute(
            select(Environment.id, Environment.name).where(Environment.project_id == project_id)
            .order_by(Environment.position, Environment.id))],
    )


def _distinct(project_id: int, column: str) -> list[str]:
    """Distinct values of an indexed (project_id, column, id) column without reading every row:
    a recursive "next value greater than the last" walk, one index seek per distinct value."""
    column = {"event_type": "event_type", "actor_label": "actor_label"}[column]
    sql = text(f"""
        WITH RECURSIVE seen(value) AS (
            SELECT MIN({column}) FROM audit_entry WHERE project_id = :project_id
            UNION ALL
            SELECT (SELECT MIN({column}) FROM audit_entry
                    WHERE project_id = :project_id AND {column} > seen.value)
            FROM seen WHERE seen.value IS NOT NULL
        )
        SELECT value FROM seen WHERE value IS NOT NULL
    """)
    return list(db.session.scalars(sql, {"project_id": project_id}))


def _filtered(project_id: int, filters: AuditFilter) -> Select:
    """The project's entries matching `filters`.

    Only one filter is left for the database to search an index by: the most selective one
    present (each has a `(project_id, column, id)` index, walked newest first); the others are
    wrapped in a no-op COALESCE so they are checked on the rows found, never used to pick an
    index. Without statistics SQLite would otherwise pick any of them, e.g. the environment
    (a third of the log) over the flag (a sixtieth). A time range costs one more query.
    """
    equalities = [
        (AuditEntry.feature_id, filters.feature_id),
        (AuditEntry.pipeline_id, filters.pipeline_id),
        (AuditEntry.actor_label, filters.actor or None),
        (AuditEntry.event_type, filters.event_type or None),
        (AuditEntry.environment_id, filters.environment_id),
    ]
    present = [(column, value) for column, value in equalities if value is not None]
    query = select(*_COLUMNS).where(AuditEntry.project_id == project_id)
    for position, (column, value) in enumerate(present):
        query = query.where((column if position == 0 else _unindexed(column)) == value)
    if filters.since is None and filters.until is None:
        return query
    # A time range becomes the exact id range of its entries, read from the covering
    # (project_id, created_at) index, so whichever index is walked newest first seeks straight
    # to the range's newest entry and stops at its oldest, instead of sorting the whole range.
    span = select(func.min(AuditEntry.id), func.max(AuditEntry.id)).where(
        AuditEntry.project_id == project_id)
    created = _unindexed(AuditEntry.created_at)
    if filters.since is not None:
        span = span.where(AuditEntry.created_at >= filters.since)
        query = query.where(created >= filters.since)
    if filters.until is not None:
        span = span.where(AuditEntry.created_at < filters.until)
        query = query.where(created < filters.until)
    lowest, highest = db.session.execute(span).one()
    if lowest is None:
        return query.where(false())
    return query.where(AuditEntry.id.between(lowest, highest))


def count(project_id: int, filters: AuditFilter) -> int:
    """How many entries the filters match (the API's `count`)."""
    return db.session.execute(select(func.count()).select_from(
        _filtered(project_id, filters).with_only_columns(AuditEntry.id).subquery())).scalar_one()


def _unindexed(column):
    """The same value, hidden from the planner's index choice."""
    return func.coalesce(column, column, type_=column.type)


def page(
    project_id: int,
    filters: AuditFilter,
    *,
    masked: bool,
    before: int | None = None,
    after: int | None = None,
    size: int = PAGE_SIZE,
    readable: bool = True,
) -> Page:
    """One page of the project's log, newest first, by keyset on id: entries older than
    `before`, or newer than `after` (the next page up), else the newest. Two queries at most,
    however deep the page. `masked` hides secret-looking before/after values (non-admins).
    `readable` adds each entry's words (label, sentence, diff with names): a few more queries
    for the whole page, one per kind of object mentioned (audit_names)."""
    base = _filtered(project_id, filters)
    if after is not None:
        rows = db.session.execute(
            base.where(AuditEntry.id > after).order_by(AuditEntry.id.asc()).limit(size + 1)
        ).all()
        if len(rows) <= size:  # reached the top: show the newest page, full
            return page(project_id, filters, masked=masked, size=size, readable=readable)
        rows = rows[:size][::-1]
        has_newer = True
        has_older = _exists(base.where(AuditEntry.id <= after))
    else:
        query = base.order_by(AuditEntry.id.desc()).limit(size + 1)
        if before is not None:
            query = query.where(AuditEntry.id < before)
        rows = db.session.execute(query).all()
        has_older = len(rows) > size
        rows = rows[:size]
        has_newer = before is not None and _exists(base.where(AuditEntry.id >= before))
    entries = [_entry(row, masked) for row in rows]
    if readable:
        entries = described(project_id, entries)
    return Page(
        entries=entries,
        newer_cursor=entries[0].id if entries and has_newer else None,
        older_cursor=entries[-1].id if entries and has_older else None,
    )


def _exists(query: Select) -> bool:
    return db.session.execute(query.with_only_columns(AuditEntry.id).limit(1)).first() is not None


def _entry(row: Any, masked: bool) -> EntryRow:
    values = row._asdict()
    if masked:
        values["before"], values["after"] = mask(values["before"]), mask(values["after"])
    return EntryRow(**values)


def described(project_id: int, entries: list[EntryRow]) -> list[EntryRow]:
    """The entries with their words: label, sentence and diff, names resolved for all of them
    at once."""
    rows = [vars(entry) for entry in entries]
    names = Names.for_entries(project_id, rows)
    return [replace(entry, label=audit_wording.label(entry.event_type),
                    sentence=audit_reading.sentence(row, names),
                    diff=audit_reading.diff(entry.before, entry.after, names))
            for entry, row in zip(entries, rows, strict=True)]


def words(project_id: int, entries: Sequence[AuditEntry]) -> dict[int, tuple[str, str]]:
    """{entry id: (label, sentence)} for audit entries other pages show (a flag's history, a
    change request's), with the names resolved for all of them at once."""
    rows = [{column: getattr(entry, column) for column in _WORD_COLUMNS} for entry in entries]
    names = Names.for_entries(project_id, rows)
    return {row["id"]: (audit_wording.label(row["event_type"]),
                        audit_reading.sentence(row, names)) for row in rows}


_WORD_COLUMNS = ("id", "actor_label", "event_type", "environment_id", "object_type",
                 "object_id", "object_label", "message", "before", "after", "pipeline_id",
                 "feature_id", "change_request_id")


def mask(value: Any) -> Any:
    """A copy of a JSON value with every value under a secret-looking key (*key*, *token*,
    *secret*, *password*) replaced by a mask."""
    if isinstance(value, dict):
        return {
            k: (MASK if _SECRET_KEY.search(str(k)) and v is not None else mask(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [mask(item) for item in value]
    return value


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)


def export_csv(project_id: int, filters: AuditFilter, *, masked: bool,
               batch: int = EXPORT_BATCH) -> Iterator[str]:
    """The filtered log as CSV text chunks (header first), newest first, read `batch` rows per
    keyset query so memory stays flat however many entries match. Masks as `page` does."""
    environments = dict(db.session.execute(
        select(Environment.id, Environment.name).where(Environment.project_id == project_id)
    ).all())
    buffer = io.StringIO()
    writer = csv_export.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    yield _drain(buffer)
    # before/after as their stored JSON text (re-encoding 100,000s of documents would dominate
    # the export); they are parsed once, for the description, and only text that may hold a
    # secret is re-encoded (masked).
    query = (
        _filtered(project_id, filters)
        .with_only_columns(
            AuditEntry.id, AuditEntry.created_at, AuditEntry.actor_label, AuditEntry.event_type,
            AuditEntry.environment_id, AuditEntry.object_type, AuditEntry.object_id,
            AuditEntry.object_label, AuditEntry.message, cast(AuditEntry.before, Text),
            cast(AuditEntry.after, Text), AuditEntry.pipeline_id, AuditEntry.feature_id,
            AuditEntry.change_request_id)
        .order_by(AuditEntry.id.desc())
        .limit(batch)
    )
    last_id: int | None = None
    while True:
        page_query = query if last_id is None else query.where(AuditEntry.id < last_id)
        rows = db.session.execute(page_query).all()
        parsed = [_export_entry(tuple(row)) for row in rows]
        names = Names.for_entries(project_id, parsed)
        for row, entry in zip(rows, parsed, strict=True):
            (id_, created_at, actor, event_type, environment_id, object_type, object_id,
             object_label, message, before, after) = tuple(row)[:11]
            writer.writerow((
                id_, created_at.isoformat(), actor, event_type,
                environments.get(environment_id, ""), object_type,
                "" if object_id is None else object_id, object_label, message,
                _json_text(before, masked), _json_text(after, masked),
                audit_wording.label(event_type), audit_reading.sentence(entry, names),
            ))
        if rows:
            yield _drain(buffer)
        if len(rows) < batch:
            return
        last_id = rows[-1][0]


def _export_entry(row: tuple[Any, ...]) -> dict[str, Any]:
    """An export row as the fields a sentence reads (before/after parsed)."""
    return {"id": row[0], "actor_label": row[2], "event_type": row[3], "environment_id": row[4],
            "object_type": row[5], "object_id": row[6], "object_label": row[7],
            "message": row[8], "before": _parsed(row[9]), "after": _parsed(row[10]),
            "pipeline_id": row[11], "feature_id": row[12], "change_request_id": row[13]}


def _parsed(stored: str | None) -> Any:
    return None if stored is None else json.loads(stored)


def _json_text(stored: str | None, masked: bool) -> str:
    if stored is None or stored == "null":
        return ""
    if masked and _SECRET_KEY.search(stored):
        return _json(mask(json.loads(stored)))
    return stored


def _drain(buffer: io.StringIO) -> str:
    chunk = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return chunk
