"""The flags table: each flag of a project with its state per environment, a page at a time
(searchable by name), in a fixed number of queries however many flags there are."""

from dataclasses import dataclass

from sqlalchemy import func, select

from webapp.extensions import db
from webapp.models import Environment, Feature, FeatureState


@dataclass
class FlagRow:
    """A feature and its state in each environment (in the environments' order; None if missing)."""

    feature: Feature
    states: list[FeatureState | None]


def flag_rows(project_id: int, environments: list[Environment],
              feature_ids: list[int] | None = None) -> list[FlagRow]:
    """The project's features by name, each with its state per environment: two queries in all."""
    query = select(Feature).where(Feature.project_id == project_id)
    if feature_ids is not None:
        query = query.where(Feature.id.in_(feature_ids))
    features = list(db.session.scalars(query.order_by(Feature.name, Feature.id)))
    states: dict[tuple[int, int], FeatureState] = {}
    if features:
        for state in db.session.scalars(select(FeatureState).where(
                FeatureState.feature_id.in_([f.id for f in features]))):
            states[(state.feature_id, state.environment_id)] = state
    return [FlagRow(f, [states.get((f.id, env.id)) for env in environments]) for f in features]


FLAGS_PER_PAGE = 100


@dataclass(frozen=True)
class FlagPage:
    """One page of the flags table: its rows, and where it sits among the matching flags."""

    rows: list[FlagRow]
    total: int  # flags matching the search
    page: int  # 1-based, within 1..pages
    pages: int
    query: str

    @property
    def first(self) -> int:
        return (self.page - 1) * FLAGS_PER_PAGE + 1 if self.rows else 0

    @property
    def last(self) -> int:
        return self.first + len(self.rows) - 1 if self.rows else 0


def flag_page(project_id: int, environments: list[Environment], *, page: int = 1,
              query: str = "") -> FlagPage:
    """The flags whose name contains `query` (any case), by name, FLAGS_PER_PAGE a page: a
    project of 10,000 flags answers as fast as one of a hundred."""
    where = [Feature.project_id == project_id]
    if query:
        where.append(func.lower(Feature.name).contains(query.lower(), autoescape=True))
    total = db.session.scalar(select(func.count()).select_from(Feature).where(*where)) or 0
    pages = max(1, -(-total // FLAGS_PER_PAGE))
    page = min(max(page, 1), pages)
    ids = list(db.session.scalars(
        select(Feature.id).where(*where).order_by(Feature.name, Feature.id)
        .offset((page - 1) * FLAGS_PER_PAGE).limit(FLAGS_PER_PAGE)))
    rows = flag_rows(project_id, environments, ids) if ids else []
    return FlagPage(rows, total, page, pages, query)
