"""What the progress boards show: flags per stage of a published pipeline, the project's
pipelines at a glance, a flag's track through its pipeline, and launches per day.

Reads only. Every reader runs a fixed number of statements whatever the number of flags: the
board's counts and first cards come from board_reads (one GROUP BY, one statement for every
column's first cards, or one filter pass for a search), so a board with 10,000 flags in flight
costs what a board with 10 costs.
"""

from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import cached_property
from typing import Any

from sqlalchemy import func, select

from webapp.clock import now as clock_now
from webapp.extensions import db
from webapp.models import (
    ChangeRequest,
    PipelineRun,
    ReleasePipeline,
)
from webapp.services.errors import NotFound
from webapp.services.pages import board_reads, calendar_holds
from webapp.services.pages.overview import Launches, launch_window, launched_per_day
from webapp.services.pipelines.describe import StageInfo, load_stages, short_duration
from webapp.services.platform import analytics
from webapp.services.runs import gates

PAGE = 20  # cards added by one "show more"
MAX_CARDS = 1000  # per column, whatever the URL asks for
# First cards on the whole board: wide pipelines show fewer per column (a 30-stage board's
# poll stays under 40 KB); "show more" and the search reach the rest.
CARD_BUDGET = 64
SEARCH_MAX = 100

STATUS_WORDS = {
    "waiting": "Waiting",
    "applying": "Applying",
    "awaiting_approval": "Awaiting approval",
    "rolling_out": "Rolling out",
    "watching": "Watching health",
    "paused": "Paused",
    "halted": "Halted",
    "launched": "Launched",
    "removed": "Removed",
    "rolled_back": "Rolled back",
}


def _stages_of(run: PipelineRun) -> list[StageInfo]:
    """The stages the run went through as they were when it started (today's pipeline only for
    runs started before runs kept them)."""
    if run.stages is None:
        return load_stages(run.pipeline_id)
    return [StageInfo(**{**stage, "actions": tuple(stage["actions"])}) for stage in run.stages]


# --- Cards -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Card:
    run_id: int
    feature_id: int
    feature_name: str
    status: str
    stage_position: int
    entered_at: datetime
    remaining: float | None  # seconds until the next step (None: nothing scheduled)
    status_text: str
    done: str
    next: str
    ended_at: datetime | None = None
    change_request_id: int | None = None  # the open request an awaiting card waits for
    # (environment, evaluations since yesterday) where the flag last changed: is it read there?
    reads: tuple[str, int] | None = None
    checks: tuple = ()  # gates.CheckView of a guarded stage: state, last value, when
    hold: calendar_holds.HoldNote | None = None  # why the release calendar holds it

    @cached_property  # a card shows it up to three times
    def countdown(self) -> str:
        if self.remaining is None:
            return ""
        return "due now" if self.remaining <= 0 else short_duration(self.remaining)


def _card(row: Any, stages: list[StageInfo], now: datetime) -> Card:
    """What one card says: status, what is done, what comes next and when."""
    status = row.status
    total = len(stages)
    if status == "launched":
        return Card(row.id, row.feature_id, row.name, status, total, row.entered_at, None,
                    "Launched", f"All {total} stages", "Nothing: it is launched", row.ended_at)
    stage = stages[min(row.stage_position, total - 1)]
    after = (f"then {stages[stage.position + 1].name}" if stage.position + 1 < total
             else "then launch")
    remaining = None
    if status in ("waiting", "rolling_out", "applying") and row.due_at is not None:
        remaining = (row.due_at - now).total_seconds()
    done = f"{stage.position} of {total} stages"
    text = STATUS_WORDS.get(status, status)
    if status == "waiting":
        next_ = (f"Acts in {stage.environment} {'now' if stage.trigger_type == 'ON_ENTER' else ''}"
                 .strip() + f", {after}")
    elif status == "rolling_out":
        percent = row.rollout_percent or 0
        text = f"Rolling out at {percent} %"
        done = f"{percent} % in {stage.environment}"
        step = min(100, percent + (stage.rollout_step or 0))
        next_ = f"{step} % in {stage.environment}" + (", then complete" if step >= 100 else "")
    elif status == "awaiting_approval":
        done = f"Change request opened in {stage.environment}"
        next_ = f"Applies when approved, {after}"
    elif status == "paused":
        remaining = None
        left = short_duration(row.paused_remaining_seconds)
        text = f"Paused ({left} left)"
        next_ = f"Resume to continue in {stage.environment}"
    elif status == "halted":
        text = f"Halted: {row.last_error or 'unknown error'}"
        next_ = "Retry, or remove the flag"
    elif status == "applying":
        next_ = f"Finishing the actions in {stage.environment}, {after}"
    elif status == "watching":
        next_ = f"Completes once healthy for the whole bake in {stage.environment}, {after}"
    else:
        next_ = after
    return Card(row.id, row.feature_id, row.name, status, row.stage_position, row.entered_at,
                remaining, text, done, next_)


def _changed_stage(card: Card, stages: list[StageInfo]) -> StageInfo | None:
    """The stage whose environment the flag changed last (None before the first applies)."""
    if card.status == "launched":
        return stages[-1] if stages else None
    if card.status in ("rolling_out", "applying"):
        return stages[min(card.stage_position, len(stages) - 1)]
    return stages[card.stage_position - 1] if 0 < card.stage_position <= len(stages) else None


def _reads(cards: list[Card], stages: list[StageInfo]) -> dict[int, tuple[str, int]]:
    """Per card (run id), its flag's evaluations since yesterday where it last changed: one
    query for the whole board."""
    where = {card.run_id: (card.feature_id, stage.environment, stage.environment_id)
             for card in cards
             if (stage := _changed_stage(card, stages)) and stage.environment_id is not None}
    found = analytics.recent((feature_id, environment_id)
                             for feature_id, _, environment_id in where.values())
    return {run_id: (environment, found.get((feature_id, environment_id), 0))
            for run_id, (feature_id, environment, environment_id) in where.items()}


# --- The board of one pipeline -------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    key: str  # "s<position>" or "launched"
    stage: StageInfo | None  # None: the Launched column
    count: int
    cards: list[Card]
    limit: int
    by_status: dict[str, int] = field(default_factory=dict)

    @property
    def more(self) -> int:
        return max(0, self.count - len(self.cards))

    @property
    def status_summary(self) -> str:
        """"2 halted · 1 paused · 9 waiting": the column's count by status, A to Z."""
        return " · ".join(f"{n} {status.replace('_', ' ')}"
                          for status, n in sorted(self.by_status.items()))


@dataclass(frozen=True)
class Board:
    pipeline: ReleasePipeline
    stages: list[StageInfo]
    columns: list[Column]
    in_flight: int  # in the whole pipeline, whatever the search
    query: str
    limits: dict[str, int]
    per_column: int
    launches: Launches | None  # None: not asked for (see pipeline_board)

    @property
    def live(self) -> bool:
        """Something can still move, so the page should keep asking."""
        return self.in_flight > 0


def per_column_default(stage_count: int) -> int:
    """The first cards per column: up to PAGE, fewer on wide pipelines (the page stays small)."""
    return max(2, min(PAGE, CARD_BUDGET // (stage_count + 1)))


def pipeline_board(project_id: int, pipeline_id: int, *, query: str = "",
                   limits: dict[str, int] | None = None, chart: bool = True) -> Board:
    """The board of a published pipeline: per stage its count (by status) and first cards,
    then the flags launched in the last 30 days. `query` filters flags by name (substring,
    case-insensitive); `limits` asks for more cards in some columns ({"s3": 40, "launched": 40}).
    `chart`: also count the launches per day (the page's launch chart; the board's own block,
    which the poll asks for, draws none).

    Refuses (NotFound) a deleted pipeline or one of another project. Fixed statement count.
    """
    pipeline = published_pipeline(project_id, pipeline_id)
    stages = load_stages(pipeline.id)
    query = (query or "").strip()[:SEARCH_MAX]
    default = per_column_default(len(stages))
    limits = {k: max(1, min(MAX_CARDS, v)) for k, v in (limits or {}).items()}
    now = clock_now()

    launches = launched_per_day(pipeline.id, now=now) if chart else None
    launched_limit = limits.get("launched", default)
    rows = board_reads.read(
        project_id, pipeline.id, query,
        {s.position: limits.get(f"s{s.position}", default) for s in stages},
        launched_limit, launch_window(now), now)
    counts, in_flight = rows.counts, rows.in_flight
    cards: dict[int, list[Card]] = {}
    for row in rows.cards:
        card = _card(row, stages, now)
        if row.change_request_id is not None:
            card = replace(card, change_request_id=row.change_request_id)
        cards.setdefault(row.stage_position, []).append(card)
    launched_cards = [_card(r, stages, now) for r in rows.launched]
    launched_count = rows.launched_count
    for column in cards.values():
        column.sort(key=lambda c: (c.entered_at, c.run_id))
    cards = _with_checks(cards, {row.id for row in rows.cards if row.guarded})
    cards = with_holds(cards, [r for r in rows.cards if r.hold_kind], stages, now)

    reads = _reads([*launched_cards, *(c for column in cards.values() for c in column)], stages)
    launched_cards = [_with_reads(c, reads) for c in launched_cards]
    cards = {position: [_with_reads(c, reads) for c in column]
             for position, column in cards.items()}
    columns = [
        Column(f"s{s.position}", s, sum(counts.get(s.position, {}).values()),
               cards.get(s.position, []), limits.get(f"s{s.position}", default),
               counts.get(s.position, {}))
        for s in stages
    ]
    columns.append(Column("launched", None, launched_count, launched_cards, launched_limit))
    return Board(pipeline, stages, columns, in_flight, query, limits, default, launches)


def _with_reads(card: Card, reads: dict[int, tuple[str, int]]) -> Card:
    found = reads.get(card.run_id)
    return replace(card, reads=found) if found is not None else card


def _with_requests(cards: list[Card]) -> list[Card]:
    """Cards awaiting approval, with the open change request each waits for (one query)."""
    waiting = [c.run_id for c in cards if c.status == "awaiting_approval"]
    if not waiting:
        return cards
    found = dict(db.session.execute(
        select(ChangeRequest.run_id, func.max(ChangeRequest.id))
        .where(ChangeRequest.run_id.in_(waiting), ChangeRequest.status == "open")
        .group_by(ChangeRequest.run_id)).all())
    return [replace(c, change_request_id=found.get(c.run_id)) if c.run_id in found else c
            for c in cards]


def published_pipeline(project_id: int, pipeline_id: int) -> ReleasePipeline:
    """A live pipeline of the project (NotFound otherwise), without its stages."""
    pipeline = db.session.get(ReleasePipeline, pipeline_id)
    if pipeline is None or pipeline.project_id != project_id or pipeline.deleted_at is not None:
        raise NotFound("Pipeline not found.")
    return pipeline


def with_holds(cards: dict[int, list[Card]], held: list[Any], stages: list[StageInfo],
               now: datetime) -> dict[int, list[Card]]:
    """Cards of runs the release calendar holds say why and until when (a few reads for all;
    `held` are their rows: hold columns and stage position)."""
    if not held:
        return cards
    notes = calendar_holds.hold_notes([
        calendar_holds.HeldRun.of(row, stages[min(row.stage_position, len(stages) - 1)]
                                    .environment_id) for row in held], now)
    return {key: [replace(c, hold=notes[c.run_id]) if c.run_id in notes else c for c in column]
            for key, column in cards.items()}


def _with_checks(cards: dict[int, list[Card]],
                 guarded: set[int] | None = None) -> dict[int, list[Card]]:
    """Cards of runs in guarded stages carry their checks' states (one query for all; none
    when `guarded`, the runs whose stage has checks, is given and empty)."""
    views = gates.check_views([c.run_id for column in cards.values() for c in column
                               if guarded is None or c.run_id in guarded])
    if not views:
        return cards
    return {key: [replace(c, checks=tuple(views.get(c.run_id, ()))) for c in column]
            for key, column in cards.items()}
