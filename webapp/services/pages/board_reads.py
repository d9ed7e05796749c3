"""The rows behind a pipeline's board: counts per stage and status, each column's first cards,
the Launched column. One statement per board, whatever the number of flags, built once (bound
parameters) so a poll spends no time building SQL: boards poll every few seconds. Its rows
are cards (CARD_COLUMNS) and counts in the cards' shape (a UNION; see _tally).

PostgreSQL and SQLite read them differently, because what is cheap differs:

- First cards. One ordered, limited read of the board index per column. SQLite gets it as a
  UNION ALL of one SELECT per column (it plans that in microseconds). PostgreSQL plans each
  branch of such a union separately: 30 columns took 16 ms of planning for 0.2 ms of work, so
  there the columns come from `unnest(positions, limits)` with a LATERAL subquery per row, one
  plan whatever the number of columns.
- A search by name (a substring: no index helps). The filter runs once, in a CTE that the
  counts and the first cards both read (numbering each column's matches with a window over the
  matches only). A per-column LATERAL with the filter is planned as "sort every match of the
  column", 30 times over (400 ms at 10,000 flags). PostgreSQL hashes the matching flags and
  scans the pipeline's runs; SQLite goes from the matching flags to their runs by index
  (scanning 10,000 runs and looking up each one's flag took it twice as long).
- Case-insensitive matching: lower(name) LIKE on PostgreSQL; plain LIKE on SQLite, whose LIKE
  already ignores ASCII case and whose lower() folds ASCII only (the same matches, without a
  lower() per flag).

Each card comes with the open change request it waits for and whether its stage has health
checks, so the board asks for requests not at all and for checks only when some card has them.
"""

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    Integer,
    Select,
    bindparam,
    case,
    exists,
    func,
    literal_column,
    null,
    select,
    true,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Row
from sqlalchemy.sql.selectable import CompoundSelect

from webapp.extensions import db
from webapp.models import (
    RUN_ACTIVE_STATUSES,
    ChangeRequest,
    Feature,
    PipelineRun,
    StageHealthCheck,
)
from webapp.orm import UTCDateTime

# The open change request a run waits for (the latest when several). By project and status
# first: that index narrows change requests to the project's open ones.
_OPEN_REQUEST = (select(func.max(ChangeRequest.id))
                 .where(ChangeRequest.project_id == PipelineRun.project_id,
                        ChangeRequest.status == "open", ChangeRequest.run_id == PipelineRun.id)
                 .scalar_subquery())

CARD_COLUMNS = (
    PipelineRun.id, PipelineRun.feature_id, PipelineRun.status, PipelineRun.stage_position,
    PipelineRun.entered_at, PipelineRun.due_at, PipelineRun.rollout_percent,
    PipelineRun.paused_remaining_seconds, PipelineRun.last_error, PipelineRun.ended_at,
    PipelineRun.hold_kind, PipelineRun.hold_id, PipelineRun.held_since, PipelineRun.held_due_at,
    Feature.name,
    case((PipelineRun.status == "awaiting_approval", _OPEN_REQUEST)).label("change_request_id"),
    exists().where(StageHealthCheck.stage_id == PipelineRun.stage_id).label("guarded"),
)


@dataclass(frozen=True)
class BoardRows:
    counts: dict[int, dict[str, int]]  # stage position -> status -> runs (matching the search)
    in_flight: int  # runs in flight in the whole pipeline, whatever the search
    cards: list[Row[Any]]  # each column's first cards (CARD_COLUMNS), in no particular order
    launched: list[Row[Any]]  # the Launched column's first cards, latest first
    launched_count: int  # launched within the window (matching the search)


def pattern(query: str) -> str:
    """A LIKE pattern matching `query` anywhere, case-insensitive (its % _ \\ taken literally)."""
    escaped = query.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def read(project_id: int, pipeline_id: int, query: str, limits: dict[int, int],
         launched_limit: int, since: datetime, now: datetime) -> BoardRows:
    """The board's rows, in one statement. `limits`: cards wanted per stage position;
    [since, now]: the Launched column's window; `query`: a name search."""
    postgres = db.session.get_bind().dialect.name == "postgresql"
    params: dict[str, Any] = {"pipeline_id": pipeline_id, "since": since, "now": now,
                              "launched_limit": launched_limit}
    if query:
        params["project_id"], params["pattern"] = project_id, pattern(query)
    if postgres:
        params["positions"], params["limits"] = list(limits), list(limits.values())
        statement = _search_postgres() if query else _board_postgres()
    else:
        for n, (position, limit) in enumerate(limits.items()):
            params[f"p{n}"], params[f"l{n}"] = position, limit
        statement = _search_sqlite(len(limits)) if query else _board_sqlite(len(limits))
    counts: dict[int, dict[str, int]] = {}
    cards: list[Row[Any]] = []
    launched: list[Row[Any]] = []
    totals: dict[str, int] = {}
    for row in _rows(statement, params):
        if row.kind == "card":
            (cards if row.ended_at is None else launched).append(row)
        elif row.kind == "count":
            counts.setdefault(row.stage_position, {})[row.status] = row.id
        else:  # "launched", and "in_flight" when the counts are a search's
            totals[row.kind] = row.id
    launched.sort(key=lambda row: (row.ended_at, row.id), reverse=True)
    in_flight = totals.get("in_flight", sum(sum(c.values()) for c in counts.values()))
    return BoardRows(counts, in_flight, cards, launched, totals.get("launched", 0))


def _rows(statement: Any, params: dict[str, Any]) -> list[Row[Any]]:
    """Rows of a statement built once, on the session's connection: plain rows, without the
    ORM's per-row processing (these are columns, not entities), fetched at once (iterating a
    result fetches row by row)."""
    return list(db.session.connection().execute(statement, params).all())


def _in_window() -> Any:
    return ((PipelineRun.status == "launched")
            & (PipelineRun.ended_at >= bindparam("since", type_=UTCDateTime))
            & (PipelineRun.ended_at <= bindparam("now", type_=UTCDateTime)))


def _tally(kind: str, number: Any, status: Any = None, position: Any = None) -> Select[Any]:
    """A count in the cards' shape, for a UNION with them: `kind`, then the count in the id
    column, its status and stage position in theirs (CARD_COLUMNS begin with id, feature_id,
    status, stage_position), the rest NULL."""
    rest = [null()] * (len(CARD_COLUMNS) - 4)
    return select(literal_column(f"'{kind}'"), number, null(), status, position, *rest)


def _board(cards: Any) -> CompoundSelect[Any]:
    """The unfiltered board: each column's first cards (given), the Launched column's (latest
    first), the runs in flight per stage position and status ("count") and the launches of
    the window ("launched")."""
    latest = (select(*CARD_COLUMNS).join(Feature, Feature.id == PipelineRun.feature_id)
              .where(PipelineRun.pipeline_id == bindparam("pipeline_id"), _in_window())
              .order_by(PipelineRun.ended_at.desc(), PipelineRun.id.desc())
              .limit(bindparam("launched_limit", type_=Integer)).subquery("latest"))
    counts = (_tally("count", func.count(), PipelineRun.status, PipelineRun.stage_position)
              .where(PipelineRun.pipeline_id == bindparam("pipeline_id"),
                     PipelineRun.status.in_(RUN_ACTIVE_STATUSES))
              .group_by(PipelineRun.stage_position, PipelineRun.status))
    launched_count = (_tally("launched", func.count())
                      .where(PipelineRun.pipeline_id == bindparam("pipeline_id"), _in_window()))
    # The cards first: the union's columns take their types (aware datetimes) from them.
    return union_all(*cards, select(_card_kind(), *latest.c), counts, launched_count)


def _card_kind() -> Any:
    return literal_column("'card'").label("kind")


def _column(position: Any, limit: Any) -> Select[Any]:
    """One column's first cards: an ordered, limited read of the board index."""
    return (select(*CARD_COLUMNS).join(Feature, Feature.id == PipelineRun.feature_id)
            .where(PipelineRun.pipeline_id == bindparam("pipeline_id"),
                   PipelineRun.stage_position == position, PipelineRun.ended_at.is_(None))
            .order_by(PipelineRun.entered_at, PipelineRun.id).limit(limit))


@lru_cache(maxsize=256)
def _board_sqlite(columns: int) -> CompoundSelect[Any]:
    """SQLite: one SELECT per column. Built once per shape with bound parameters, so
    SQLAlchemy's compiled cache serves every poll."""
    parts = [_column(bindparam(f"p{n}"), bindparam(f"l{n}")).subquery() for n in range(columns)]
    return _board([select(_card_kind(), *part.c) for part in parts])


def _wanted_columns() -> Any:
    """unnest(:positions, :limits) AS w(pos, lim): the columns asked for and their limits."""
    return (func.unnest(bindparam("positions", type_=ARRAY(Integer)),
                        bindparam("limits", type_=ARRAY(Integer)))
            .table_valued("pos", "lim").render_derived(name="w"))


def _wanted_columns_sqlite(columns: int) -> Any:
    """SELECT :p0 AS pos, :l0 AS lim UNION ALL ...: the same for SQLite, one shape per count."""
    parts = [select(bindparam(f"p{n}", type_=Integer).label("pos"),
                    bindparam(f"l{n}", type_=Integer).label("lim")) for n in range(columns)]
    return (parts[0] if columns == 1 else union_all(*parts)).subquery("w")


@lru_cache(maxsize=1)
def _board_postgres() -> CompoundSelect[Any]:
    """PostgreSQL: every column's first cards from one plan (see the module's docstring)."""
    wanted = _wanted_columns()
    column = _column(wanted.c.pos, wanted.c.lim).lateral("c")
    return _board([select(_card_kind(), *column.c).select_from(wanted).join(column, true())])


@lru_cache(maxsize=1)
def _search_postgres() -> CompoundSelect[Any]:
    """The search on PostgreSQL: its runs in flight or launched in the window whose flag's
    name matches, in one pass (a hash of the matching flags)."""
    matches = (
        select(PipelineRun.id, PipelineRun.stage_position, PipelineRun.status,
               PipelineRun.entered_at, PipelineRun.ended_at)
        .join(Feature, Feature.id == PipelineRun.feature_id)
        .where(PipelineRun.pipeline_id == bindparam("pipeline_id"),
               PipelineRun.ended_at.is_(None) | _in_window(),
               func.lower(Feature.name).like(bindparam("pattern"), escape="\\"))
        .cte("m")
    )
    return _search_statement(matches, _wanted_columns())


@lru_cache(maxsize=256)
def _search_sqlite(columns: int) -> CompoundSelect[Any]:
    """The search on SQLite: from the project's matching flags to their runs, by index (the
    run in flight of a flag is unique), and the launched runs of the window among them."""
    flags = (select(Feature.id).where(Feature.project_id == bindparam("project_id"),
                                      Feature.name.like(bindparam("pattern"), escape="\\"))
             .cte("f"))
    run = (PipelineRun.id, PipelineRun.stage_position, PipelineRun.status,
           PipelineRun.entered_at, PipelineRun.ended_at)
    matches = union_all(
        select(*run).select_from(flags)
        .join(PipelineRun, (PipelineRun.feature_id == flags.c.id) & PipelineRun.ended_at.is_(None))
        .where(PipelineRun.pipeline_id == bindparam("pipeline_id")),
        select(*run).where(PipelineRun.pipeline_id == bindparam("pipeline_id"), _in_window(),
                           PipelineRun.feature_id.in_(select(flags.c.id))),
    ).cte("m")
    return _search_statement(matches, _wanted_columns_sqlite(columns))


def _search_statement(matches: Any, wanted: Any) -> CompoundSelect[Any]:
    """From the matches, in one statement: each column's first cards and the Launched
    column's ("card" rows: CARD_COLUMNS), counts per stage and status ("count"), the launched
    count ("launched") and the pipeline's runs in flight whatever the search ("in_flight").
    A count travels in the `id` column, its stage and status in theirs."""
    ranked = (select(matches.c.id, matches.c.stage_position,
                     func.row_number().over(partition_by=matches.c.stage_position,
                                            order_by=(matches.c.entered_at, matches.c.id))
                     .label("rn"))
              .where(matches.c.ended_at.is_(None)).subquery("ranked"))
    latest = (select(matches.c.id).where(matches.c.ended_at.is_not(None))
              .order_by(matches.c.ended_at.desc(), matches.c.id.desc())
              .limit(bindparam("launched_limit")).subquery("latest"))
    chosen = union_all(
        select(ranked.c.id).join(wanted, wanted.c.pos == ranked.c.stage_position)
        .where(ranked.c.rn <= wanted.c.lim),
        select(latest.c.id),
    ).cte("chosen")
    cards = (select(_card_kind(), *CARD_COLUMNS)
             .select_from(chosen).join(PipelineRun, PipelineRun.id == chosen.c.id)
             .join(Feature, Feature.id == PipelineRun.feature_id))

    counts = (_tally("count", func.count(), matches.c.status, matches.c.stage_position)
              .where(matches.c.status.in_(RUN_ACTIVE_STATUSES))
              .group_by(matches.c.stage_position, matches.c.status))
    launched_count = _tally("launched", func.count()).where(matches.c.ended_at.is_not(None))
    in_flight = (_tally("in_flight", func.count()).select_from(PipelineRun)
                 .where(PipelineRun.pipeline_id == bindparam("pipeline_id"),
                        PipelineRun.status.in_(RUN_ACTIVE_STATUSES)))
    # The cards first: the union's columns take their types (aware datetimes) from them.
    return union_all(cards, counts, launched_count, in_flight)


__all__ = ["BoardRows", "CARD_COLUMNS", "pattern", "read"]
