"""The rows behind a pipeline's board: counts per stage and status, each column's first cards,
the Launched column. A fixed number of statements whatever the number of flags.

PostgreSQL and SQLite read them differently, because what is cheap differs:

- First cards. One ordered, limited read of the board index per column. SQLite gets it as a
  UNION ALL of one SELECT per column (it plans that in microseconds). PostgreSQL plans each
  branch of such a union separately: 30 columns took 16 ms of planning for 0.2 ms of work, so
  there the columns come from `unnest(positions, limits)` with a LATERAL subquery per row, one
  plan whatever the number of columns.
- A search by name (a substring: no index helps). On SQLite each statement filters. On
  PostgreSQL the filter runs once, in a CTE both the counts and the first cards read
  (numbering each column's matches with a window over the matches only), then one more
  statement reads the chosen cards by id. A per-column LATERAL with the filter is planned as
  "sort every match of the column", 30 times over (400 ms at 10,000 flags).
"""

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, TypeVarTuple

from sqlalchemy import (
    Integer,
    Select,
    bindparam,
    func,
    literal_column,
    select,
    true,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Row
from sqlalchemy.sql.selectable import CompoundSelect

from webapp.extensions import db
from webapp.models import RUN_ACTIVE_STATUSES, ChangeRequest, Feature, PipelineRun
from webapp.orm import UTCDateTime

CARD_COLUMNS = (
    PipelineRun.id, PipelineRun.feature_id, PipelineRun.status, PipelineRun.stage_position,
    PipelineRun.entered_at, PipelineRun.due_at, PipelineRun.rollout_percent,
    PipelineRun.paused_remaining_seconds, PipelineRun.last_error, PipelineRun.ended_at,
    PipelineRun.hold_kind, PipelineRun.hold_id, PipelineRun.held_since, PipelineRun.held_due_at,
    Feature.name,
)
Columns = TypeVarTuple("Columns")


@dataclass(frozen=True)
class BoardRows:
    counts: dict[int, dict[str, int]]  # stage position -> status -> runs (matching the search)
    in_flight: int  # runs in flight in the whole pipeline, whatever the search
    cards: list[Row]  # each column's first cards (CARD_COLUMNS), in no particular order
    launched: list[Row]  # the Launched column's first cards, latest first
    launched_count: int  # launched within the window (matching the search)


def pattern(query: str) -> str:
    """A LIKE pattern matching `query` anywhere, case-insensitive (its % _ \\ taken literally)."""
    escaped = query.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def read(pipeline_id: int, query: str, limits: dict[int, int], launched_limit: int,
         launched_total: int, since: datetime, now: datetime) -> BoardRows:
    """The board's rows. `limits`: cards wanted per stage position; `launched_total`: launches
    in [since, now] (the board has counted them per day already); `query`: a name search."""
    postgres = db.session.get_bind().dialect.name == "postgresql"
    if query and postgres:
        return _search_postgres(pipeline_id, pattern(query), limits, launched_limit, since, now)
    counts: dict[int, dict[str, int]] = {}
    for position, status, number in db.session.execute(
        _filtered(select(PipelineRun.stage_position, PipelineRun.status, func.count()), query)
        .where(PipelineRun.pipeline_id == pipeline_id,
               PipelineRun.status.in_(RUN_ACTIVE_STATUSES))
        .group_by(PipelineRun.stage_position, PipelineRun.status)
    ):
        counts.setdefault(position, {})[status] = number
    in_flight = sum(sum(c.values()) for c in counts.values())
    if query:
        in_flight = _in_flight(pipeline_id)
    wanted = {position: limit for position, limit in limits.items() if counts.get(position)}
    cards: list[Row] = []
    if wanted:
        params: dict[str, Any] = {"pipeline_id": pipeline_id}
        if postgres:
            params["positions"], params["limits"] = list(wanted), list(wanted.values())
            cards = list(db.session.execute(_first_cards_lateral(), params))
        else:
            if query:
                params["pattern"] = pattern(query)
            for n, (position, limit) in enumerate(wanted.items()):
                params[f"p{n}"], params[f"l{n}"] = position, limit
            cards = list(db.session.execute(_first_cards_union(len(wanted), bool(query)), params))
    launched = list(db.session.execute(
        _filtered(select(*CARD_COLUMNS), query, joined=True)
        .where(PipelineRun.pipeline_id == pipeline_id, PipelineRun.status == "launched",
               PipelineRun.ended_at >= since, PipelineRun.ended_at <= now)
        .order_by(PipelineRun.ended_at.desc(), PipelineRun.id.desc()).limit(launched_limit)))
    launched_count = launched_total
    if query:
        launched_count = db.session.scalar(
            _filtered(select(func.count()).select_from(PipelineRun), query)
            .where(PipelineRun.pipeline_id == pipeline_id, PipelineRun.status == "launched",
                   PipelineRun.ended_at >= since, PipelineRun.ended_at <= now)) or 0
    return BoardRows(counts, in_flight, cards, launched, launched_count)


def open_requests(run_ids: list[int]) -> dict[int, int]:
    """The open change request each run waits for (the latest when several): one query."""
    if not run_ids:
        return {}
    return {run_id: request_id for run_id, request_id in db.session.execute(
        select(ChangeRequest.run_id, func.max(ChangeRequest.id))
        .where(ChangeRequest.run_id.in_(run_ids), ChangeRequest.status == "open")
        .group_by(ChangeRequest.run_id)) if run_id is not None}


def _in_flight(pipeline_id: int) -> int:
    return db.session.scalar(
        select(func.count()).select_from(PipelineRun)
        .where(PipelineRun.pipeline_id == pipeline_id,
               PipelineRun.status.in_(RUN_ACTIVE_STATUSES))) or 0


def _filtered(statement: Select[*Columns], query: str,
              joined: bool = False) -> Select[*Columns]:
    """Join the flag's name when a search or the cards need it."""
    if query or joined:
        statement = statement.join(Feature, Feature.id == PipelineRun.feature_id)
    if query:
        statement = statement.where(func.lower(Feature.name).like(pattern(query), escape="\\"))
    return statement


def _column(position: Any, limit: Any, search: bool) -> Select:
    """One column's first cards: an ordered, limited read of the board index."""
    part = (select(*CARD_COLUMNS).join(Feature, Feature.id == PipelineRun.feature_id)
            .where(PipelineRun.pipeline_id == bindparam("pipeline_id"),
                   PipelineRun.stage_position == position, PipelineRun.ended_at.is_(None)))
    if search:
        part = part.where(func.lower(Feature.name).like(bindparam("pattern"), escape="\\"))
    return part.order_by(PipelineRun.entered_at, PipelineRun.id).limit(limit)


@lru_cache(maxsize=256)
def _first_cards_union(columns: int, search: bool) -> Select | CompoundSelect:
    """SQLite: one SELECT per column, in a UNION ALL. Built once per shape with bound
    parameters, so SQLAlchemy's compiled cache serves every poll."""
    parts = [select(_column(bindparam(f"p{n}"), bindparam(f"l{n}"), search).subquery())
             for n in range(columns)]
    return parts[0] if columns == 1 else union_all(*parts)


def _wanted_columns() -> Any:
    """unnest(:positions, :limits) AS w(pos, lim): the columns asked for and their limits."""
    return (func.unnest(bindparam("positions", type_=ARRAY(Integer)),
                        bindparam("limits", type_=ARRAY(Integer)))
            .table_valued("pos", "lim").render_derived(name="w"))


@lru_cache(maxsize=1)
def _first_cards_lateral() -> Select:
    """PostgreSQL: every column's first cards from one plan (see the module's docstring)."""
    wanted = _wanted_columns()
    column = _column(wanted.c.pos, wanted.c.lim, search=False).lateral("c")
    return select(*column.c).select_from(wanted).join(column, true())


def _search_postgres(pipeline_id: int, like: str, limits: dict[int, int], launched_limit: int,
                     since: datetime, now: datetime) -> BoardRows:
    counts: dict[int, dict[str, int]] = {}
    launched_count = 0
    chosen: list[int] = []
    for kind, position, status, number in db.session.execute(
        _search_statement(),
        {"pipeline_id": pipeline_id, "pattern": like, "since": since, "now": now,
         "positions": list(limits), "limits": list(limits.values()),
         "launched_limit": launched_limit},
    ):
        if kind == "count":
            counts.setdefault(position, {})[status] = number
        elif kind == "launched":
            launched_count = number
        else:
            chosen.append(number)
    rows = list(db.session.execute(
        select(*CARD_COLUMNS).join(Feature, Feature.id == PipelineRun.feature_id)
        .where(PipelineRun.id.in_(chosen)))) if chosen else []
    cards = [row for row in rows if row.ended_at is None]
    launched = sorted((row for row in rows if row.ended_at is not None),
                      key=lambda row: (row.ended_at, row.id), reverse=True)
    return BoardRows(counts, _in_flight(pipeline_id), cards, launched, launched_count)


@lru_cache(maxsize=1)
def _search_statement() -> CompoundSelect[str, int, str, int]:
    """One pass of the name filter over the pipeline's runs (in flight, or launched in the
    window), then from those matches: counts per stage and status ("count"), the launched
    count ("launched"), and the ids of each column's first cards and the Launched column's
    ("card")."""
    in_window = ((PipelineRun.status == "launched")
                 & (PipelineRun.ended_at >= bindparam("since", type_=UTCDateTime))
                 & (PipelineRun.ended_at <= bindparam("now", type_=UTCDateTime)))
    matches = (
        select(PipelineRun.id, PipelineRun.stage_position, PipelineRun.status,
               PipelineRun.entered_at, PipelineRun.ended_at)
        .join(Feature, Feature.id == PipelineRun.feature_id)
        .where(PipelineRun.pipeline_id == bindparam("pipeline_id"),
               PipelineRun.ended_at.is_(None) | in_window,
               func.lower(Feature.name).like(bindparam("pattern"), escape="\\"))
        .cte("m")
    )
    counts = (select(literal_column("'count'"), matches.c.stage_position, matches.c.status,
                     func.count())
              .where(matches.c.status.in_(RUN_ACTIVE_STATUSES))
              .group_by(matches.c.stage_position, matches.c.status))
    launched_count: Select = (select(literal_column("'launched'"), literal_column("-1"),
                                     literal_column("'launched'"), func.count())
                              .where(matches.c.ended_at.is_not(None)))
    ranked = (select(matches.c.id, matches.c.stage_position, matches.c.status,
                     func.row_number().over(partition_by=matches.c.stage_position,
                                            order_by=(matches.c.entered_at, matches.c.id))
                     .label("rn"))
              .where(matches.c.ended_at.is_(None)).subquery("ranked"))
    wanted = _wanted_columns()
    first = (select(literal_column("'card'"), ranked.c.stage_position, ranked.c.status,
                    ranked.c.id)
             .join(wanted, wanted.c.pos == ranked.c.stage_position)
             .where(ranked.c.rn <= wanted.c.lim))
    latest = (select(matches.c.id).where(matches.c.ended_at.is_not(None))
              .order_by(matches.c.ended_at.desc(), matches.c.id.desc())
              .limit(bindparam("launched_limit")).subquery("latest"))
    launched = select(literal_column("'card'"), literal_column("-1"),
                      literal_column("'launched'"), latest.c.id)
    return union_all(counts, launched_count, first, launched)


__all__ = ["BoardRows", "CARD_COLUMNS", "open_requests", "pattern", "read"]
