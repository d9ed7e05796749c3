"""What the progress boards show: flags per stage of a published pipeline, the project's
pipelines at a glance, a flag's track through its pipeline, and launches per day.

Reads only. Every reader runs a fixed number of statements whatever the number of flags: the
board's counts and first cards come from board_reads (one GROUP BY, one statement for every
column's first cards, or one filter pass for a search), so a board with 10,000 flags in flight
costs what a board with 10 costs.
"""

from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import func, select

from webapp.clock import now as clock_now
from webapp.extensions import db
from webapp.models import (
    RUN_ACTIVE_STATUSES,
    AuditEntry,
    ChangeRequest,
    Environment,
    PipelineRun,
    PipelineStage,
    ReleasePipeline,
    Segment,
    StageAction,
    StageExecution,
)
from webapp.services import analytics, board_reads, gates
from webapp.services.errors import NotFound
from webapp.services.pipelines import describe_action

LAUNCHED_DAYS = 30
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


# --- The pipeline's shape, in words ------------------------------------------------------------


@dataclass(frozen=True)
class StageInfo:
    id: int
    position: int
    name: str
    environment: str
    approvals: int
    trigger_type: str
    wait_seconds: int
    actions: tuple[str, ...]
    rollout_step: int | None
    rollout_interval: int | None
    environment_id: int | None = None

    @property
    def trigger(self) -> str:
        if self.trigger_type == "WAIT_FOR":
            return f"after {short_duration(self.wait_seconds)}"
        return "at once"


def load_stages(pipeline_id: int) -> list[StageInfo]:
    """The pipeline's stages in words, read with two plain selects (no ORM graph to build)."""
    actions: dict[int, list[Any]] = {}
    for row in db.session.execute(
        select(StageAction.stage_id, StageAction.action_type, StageAction.enabled,
               StageAction.value, StageAction.sets_value, StageAction.rollout_initial,
               StageAction.rollout_step, StageAction.rollout_interval_seconds,
               Segment.name.label("segment_name"))
        .join(PipelineStage, PipelineStage.id == StageAction.stage_id)
        .outerjoin(Segment, Segment.id == StageAction.segment_id)
        .where(PipelineStage.pipeline_id == pipeline_id).order_by(StageAction.position)
    ):
        segment = SimpleNamespace(name=row.segment_name) if row.segment_name is not None else None
        action = SimpleNamespace(**row._asdict(), segment=segment)
        actions.setdefault(row.stage_id, []).append(action)
    stages = []
    for row in db.session.execute(
        select(PipelineStage.id, PipelineStage.position, PipelineStage.name,
               PipelineStage.trigger_type, PipelineStage.wait_seconds,
               PipelineStage.environment_id, Environment.name.label("environment"),
               Environment.minimum_change_request_approvals.label("approvals"))
        .outerjoin(Environment, Environment.id == PipelineStage.environment_id)
        .where(PipelineStage.pipeline_id == pipeline_id).order_by(PipelineStage.position)
    ):
        own = actions.get(row.id, [])
        rollout = next((a for a in own if a.action_type == "PHASED_ROLLOUT"), None)
        stages.append(StageInfo(
            id=row.id, position=row.position, name=row.name or f"Stage {row.position + 1}",
            environment=row.environment or "?", approvals=row.approvals or 0,
            trigger_type=row.trigger_type, wait_seconds=row.wait_seconds or 0,
            actions=tuple(describe_action(a) for a in own),
            rollout_step=rollout.rollout_step if rollout else None,
            rollout_interval=rollout.rollout_interval_seconds if rollout else None,
            environment_id=row.environment_id))
    return stages


def stage_snapshot(pipeline_id: int) -> list[dict[str, Any]]:
    """The pipeline's stages in words, as JSON to keep in a run that starts now."""
    return [{**asdict(stage), "actions": list(stage.actions)} for stage in load_stages(pipeline_id)]


def _stages_of(run: PipelineRun) -> list[StageInfo]:
    """The stages the run went through as they were when it started (today's pipeline only for
    runs started before runs kept them)."""
    if run.stages is None:
        return load_stages(run.pipeline_id)
    return [StageInfo(**{**stage, "actions": tuple(stage["actions"])}) for stage in run.stages]


def short_duration(seconds: float | None) -> str:
    """2d 3h, 5h 10m, 4m 30s, 12s (the two largest units)."""
    seconds = max(0, int(round(seconds or 0)))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        amount, seconds = divmod(seconds, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return " ".join(parts[:2]) or "0s"


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

    @property
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
    where = {card.run_id: stage for card in cards
             if (stage := _changed_stage(card, stages)) and stage.environment_id is not None}
    found = analytics.recent((card.feature_id, where[card.run_id].environment_id)
                             for card in cards if card.run_id in where)
    return {card.run_id: (where[card.run_id].environment,
                          found.get((card.feature_id, where[card.run_id].environment_id), 0))
            for card in cards if card.run_id in where}


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


@dataclass(frozen=True)
class Board:
    pipeline: ReleasePipeline
    stages: list[StageInfo]
    columns: list[Column]
    in_flight: int  # in the whole pipeline, whatever the search
    query: str
    limits: dict[str, int]
    per_column: int
    launches: "Launches"

    @property
    def live(self) -> bool:
        """Something can still move, so the page should keep asking."""
        return self.in_flight > 0


def per_column_default(stage_count: int) -> int:
    """The first cards per column: up to PAGE, fewer on wide pipelines (the page stays small)."""
    return max(2, min(PAGE, CARD_BUDGET // (stage_count + 1)))


def pipeline_board(project_id: int, pipeline_id: int, *, query: str = "",
                   limits: dict[str, int] | None = None) -> Board:
    """The board of a published pipeline: per stage its count (by status) and first cards,
    then the flags launched in the last 30 days. `query` filters flags by name (substring,
    case-insensitive); `limits` asks for more cards in some columns ({"s3": 40, "launched": 40}).

    Refuses (NotFound) a deleted pipeline or one of another project. Fixed statement count.
    """
    pipeline = published_pipeline(project_id, pipeline_id)
    stages = load_stages(pipeline.id)
    query = (query or "").strip()[:SEARCH_MAX]
    default = per_column_default(len(stages))
    limits = {k: max(1, min(MAX_CARDS, v)) for k, v in (limits or {}).items()}
    now = clock_now()

    launches = launched_per_day(pipeline.id, now=now)
    launched_limit = limits.get("launched", default)
    rows = board_reads.read(
        pipeline.id, query, {s.position: limits.get(f"s{s.position}", default) for s in stages},
        launched_limit, launches.total, launches.since, now)
    counts, in_flight = rows.counts, rows.in_flight
    cards: dict[int, list[Card]] = {}
    for row in rows.cards:
        cards.setdefault(row.stage_position, []).append(_card(row, stages, now))
    launched_cards = [_card(r, stages, now) for r in rows.launched]
    launched_count = rows.launched_count
    requests = board_reads.open_requests(
        [c.run_id for column in cards.values() for c in column if c.status == "awaiting_approval"])
    for position, column in cards.items():
        column.sort(key=lambda c: (c.entered_at, c.run_id))
        cards[position] = [replace(c, change_request_id=requests[c.run_id])
                           if c.run_id in requests else c for c in column]
    cards = _with_checks(cards)

    reads = _reads([*launched_cards, *(c for column in cards.values() for c in column)], stages)
    launched_cards = [replace(c, reads=reads.get(c.run_id)) for c in launched_cards]
    cards = {position: [replace(c, reads=reads.get(c.run_id)) for c in column]
             for position, column in cards.items()}
    columns = [
        Column(f"s{s.position}", s, sum(counts.get(s.position, {}).values()),
               cards.get(s.position, []), limits.get(f"s{s.position}", default),
               counts.get(s.position, {}))
        for s in stages
    ]
    columns.append(Column("launched", None, launched_count, launched_cards, launched_limit))
    return Board(pipeline, stages, columns, in_flight, query, limits, default, launches)


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


# --- Launches per day -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Launches:
    since: datetime
    days: list[tuple[date, int]]

    @property
    def total(self) -> int:
        return sum(n for _, n in self.days)

    @property
    def peak(self) -> int:
        return max((n for _, n in self.days), default=0)


def launched_per_day(pipeline_id: int, *, days: int = LAUNCHED_DAYS,
                     now: datetime | None = None) -> Launches:
    """Flags launched per UTC day over the last `days` days (today included), zeros kept."""
    now = now or clock_now()
    today = now.date()
    first = today - timedelta(days=days - 1)
    since = now.replace(year=first.year, month=first.month, day=first.day,
                                         hour=0, minute=0, second=0, microsecond=0)
    day = func.date(PipelineRun.ended_at)
    found: dict[str, int] = {}
    for value, number in db.session.execute(
        select(day, func.count())
        .where(PipelineRun.pipeline_id == pipeline_id, PipelineRun.status == "launched",
               PipelineRun.ended_at >= since, PipelineRun.ended_at <= now)
        .group_by(day)
    ):
        found[str(value)[:10]] = number
    series = [(first + timedelta(days=n), 0) for n in range(days)]
    return Launches(since, [(d, found.get(d.isoformat(), 0)) for d, _ in series])


# --- The project's pipelines at a glance ----------------------------------------------------------


@dataclass(frozen=True)
class PipelineGlance:
    pipeline: ReleasePipeline
    stages: list[tuple[str, str, int]]  # (stage name, environment, flags in it)
    in_flight: int
    launched: int

    @property
    def peak(self) -> int:
        return max((n for _, _, n in self.stages), default=0)


def overview(project_id: int) -> list[PipelineGlance]:
    """Every published pipeline of the project with flags per stage, in flight and launched in
    the last 30 days. Four statements, whatever the number of pipelines and flags."""
    pipelines = list(db.session.scalars(
        select(ReleasePipeline).where(ReleasePipeline.project_id == project_id,
                                      ReleasePipeline.status == "published",
                                      ReleasePipeline.deleted_at.is_(None))
        .order_by(ReleasePipeline.name, ReleasePipeline.id)))
    ids = [p.id for p in pipelines]
    if not ids:
        return []
    stages: dict[int, list[tuple[int, str, str]]] = {}
    for pid, position, name, env in db.session.execute(
        select(PipelineStage.pipeline_id, PipelineStage.position, PipelineStage.name,
               Environment.name)
        .outerjoin(Environment, Environment.id == PipelineStage.environment_id)
        .where(PipelineStage.pipeline_id.in_(ids)).order_by(PipelineStage.position)
    ):
        stages.setdefault(pid, []).append((position, name or f"Stage {position + 1}", env or "?"))
    counts = {(pid, pos): n for pid, pos, n in db.session.execute(
        select(PipelineRun.pipeline_id, PipelineRun.stage_position, func.count())
        .where(PipelineRun.pipeline_id.in_(ids), PipelineRun.status.in_(RUN_ACTIVE_STATUSES))
        .group_by(PipelineRun.pipeline_id, PipelineRun.stage_position))}
    now = clock_now()
    since = now - timedelta(days=LAUNCHED_DAYS)
    launched = dict(db.session.execute(
        select(PipelineRun.pipeline_id, func.count())
        .where(PipelineRun.pipeline_id.in_(ids), PipelineRun.status == "launched",
               PipelineRun.ended_at >= since, PipelineRun.ended_at <= now)
        .group_by(PipelineRun.pipeline_id)).all())
    glances = []
    for p in pipelines:
        per_stage = [(name, env, counts.get((p.id, pos), 0))
                     for pos, name, env in stages.get(p.id, [])]
        glances.append(PipelineGlance(p, per_stage, sum(n for _, _, n in per_stage),
                                      launched.get(p.id, 0)))
    return glances


# --- A flag's track through its pipeline ----------------------------------------------------------


@dataclass(frozen=True)
class TrackStop:
    stage: StageInfo
    state: str  # done | current | next | skipped
    entered_at: datetime | None
    applied_at: datetime | None
    completed_at: datetime | None


@dataclass(frozen=True)
class HistoryItem:
    at: datetime
    who: str
    what: str
    kind: str  # stage | audit


@dataclass(frozen=True)
class Track:
    run: PipelineRun
    pipeline: ReleasePipeline
    card: Card | None
    stops: list[TrackStop]
    history: list[HistoryItem]


def flag_track(project_id: int, feature_id: int, run_id: int | None = None) -> Track | None:
    """The flag's run in flight (else its latest run, or `run_id`) as a track of the pipeline's
    stages, with what happened at each and the run's full history (stage executions and audit
    entries). None when the flag was never in a pipeline."""
    statement = select(PipelineRun).where(PipelineRun.project_id == project_id,
                                          PipelineRun.feature_id == feature_id)
    if run_id is not None:
        statement = statement.where(PipelineRun.id == run_id)
    run = db.session.scalar(
        statement.order_by(PipelineRun.ended_at.is_not(None), PipelineRun.id.desc()).limit(1))
    if run is None:
        return None
    pipeline = db.session.scalar(
        select(ReleasePipeline).where(ReleasePipeline.id == run.pipeline_id))
    stages = _stages_of(run)
    executions = {e.stage_id: e for e in db.session.scalars(
        select(StageExecution).where(StageExecution.run_id == run.id))}
    stops = []
    for stage in stages:
        execution = executions.get(stage.id)
        if execution is not None and execution.completed_at is not None:
            state = "done"
        elif stage.position == run.stage_position and run.ended_at is None:
            state = "current"
        elif run.ended_at is not None and run.status != "launched" and execution is None:
            state = "skipped"
        else:
            state = "next"
        stops.append(TrackStop(stage, state, execution.entered_at if execution else None,
                               execution.applied_at if execution else None,
                               execution.completed_at if execution else None))
    history = [HistoryItem(e.created_at, e.actor_label, e.message, "audit")
               for e in db.session.scalars(
                   select(AuditEntry).where(AuditEntry.project_id == project_id,
                                            AuditEntry.feature_id == feature_id,
                                            AuditEntry.run_id == run.id))]
    names = {s.id: s for s in stages}
    for execution in executions.values():
        stage = names.get(execution.stage_id)
        label = (f"{stage.name} ({stage.environment})" if stage
                 else f"stage {execution.position + 1}")
        history.append(HistoryItem(execution.entered_at, "", f"Entered {label}", "stage"))
        if execution.completed_at is not None:
            history.append(HistoryItem(execution.completed_at, "", f"Completed {label}", "stage"))
    history.sort(key=lambda item: (item.at, item.kind != "stage"), reverse=True)
    card = None
    if stages and (run.ended_at is None or run.status == "launched"):
        row = _RunRow(run, run.feature.name)
        card = _with_requests([_card(row, stages, clock_now())])[0]
        if run.ended_at is None:
            card = _with_checks({0: [card]})[0][0]
    return Track(run, pipeline, card, stops, history)


def _with_checks(cards: dict[int, list[Card]]) -> dict[int, list[Card]]:
    """Cards of runs in guarded stages carry their checks' states (one query for all)."""
    views = gates.check_views([c.run_id for column in cards.values() for c in column])
    if not views:
        return cards
    return {key: [replace(c, checks=tuple(views.get(c.run_id, ()))) for c in column]
            for key, column in cards.items()}


class _RunRow:
    """A run read like a board row (the card builder reads these attributes)."""

    def __init__(self, run: PipelineRun, name: str):
        self._run, self.name = run, name

    def __getattr__(self, item: str) -> Any:
        return getattr(self._run, item)


__all__ = ["Board", "Card", "Column", "Launches", "PipelineGlance", "Track", "flag_track",
           "launched_per_day", "overview", "pipeline_board", "published_pipeline",
           "short_duration"]
