"""Finding one row by the id a URL or a request body names, within the scope the caller may see
(a project, an environment): the row, or NotFound. Ids beyond any row (and beyond what SQLite
binds) are simply not found."""

from typing import Any, TypeVar

from sqlalchemy import select

from webapp.extensions import db
from webapp.services.errors import NotFound

MAX_ID = 2**31 - 1
Row = TypeVar("Row")


def one_in(model: type[Row], row_id: int, message: str, *conditions: Any, **scope: Any) -> Row:
    """Row `row_id` of `model` whose columns equal `scope` (e.g. project_id=3) and that meets
    `conditions`; NotFound(`message`) otherwise."""
    if not 0 < row_id <= MAX_ID:
        raise NotFound(message)
    columns: Any = model
    found = db.session.scalar(select(model).where(
        columns.id == row_id, *conditions,
        *(getattr(columns, name) == value for name, value in scope.items())))
    if found is None:
        raise NotFound(message)
    return found
