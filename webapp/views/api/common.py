"""What every admin API resource uses: the authenticated principal, request bodies validated
by marshmallow schemas, paginated lists, and the `operation` decorator the OpenAPI document is
generated from."""

from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from flask import abort, g, request, url_for
from marshmallow import EXCLUDE, INCLUDE, Schema, ValidationError, fields, validate
from sqlalchemy import Select, func, select
from werkzeug.exceptions import TooManyRequests

from webapp import throttle
from webapp.extensions import db
from webapp.services.errors import Invalid
from webapp.services.lookups import MAX_ID
from webapp.services.platform import api_auth
from webapp.services.platform.api_auth import Principal

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500

ERROR_STATUSES = (400, 401, 403, 404, 409, 422)


@dataclass
class Operation:
    summary: str
    tag: str
    body: type[Schema] | None = None
    response: type[Schema] | None = None
    many: bool = False
    paginated: bool = False
    status: int = 200
    query: dict[str, dict[str, Any]] = field(default_factory=dict)
    auth: str = "admin"  # admin | environment | none
    errors: tuple[int, ...] = ERROR_STATUSES
    # Other success answers, e.g. {202: ChangeRequestOpenedSchema} where approvals are needed.
    also: dict[int, type[Schema]] = field(default_factory=dict)


OPERATIONS: dict[str, Operation] = {}


def operation(summary: str, tag: str, **kwargs: Any) -> Callable:
    """Describe a view for the OpenAPI document (webapp/views/api/openapi.py)."""
    def decorate(view: Callable) -> Callable:
        OPERATIONS[f"api.{view.__name__}"] = Operation(summary, tag, **kwargs)
        return view
    return decorate


def principal() -> Principal:
    """The request's principal from `Authorization` (401 JSON without a valid key)."""
    if "api_principal" not in g:
        check = (throttle.API_AUTH_ADDRESS, request.remote_addr or "")
        wait = throttle.retry_after(check)
        if wait:
            raise TooManyRequests(
                "Too many failed authentications from this address: try again in "
                f"{throttle.in_words(wait)}.", retry_after=wait)
        try:
            g.api_principal = api_auth.authenticate(request.headers.get("Authorization"))
        except api_auth.Unauthenticated:
            throttle.note_failure(check)
            raise
    return g.api_principal


def body(schema: type[Schema], *, partial: bool = False,
         optional: bool = False) -> dict[str, Any]:
    """The JSON body loaded by `schema`: 400 when it is not a JSON object, 422 per field.
    With `optional`, a request without a body loads as `{}` (the schema's defaults)."""
    try:
        return schema().load(json_object(optional=optional), partial=partial)
    except ValidationError as error:
        raise Invalid("Invalid input.", field_messages(error)) from None


def json_object(*, optional: bool = False) -> dict[str, Any]:
    """The request's JSON object body (400 otherwise); `{}` for no body when `optional`."""
    if optional and not request.get_data(cache=True):
        return {}
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict):
        abort(400, "Send a JSON object body (Content-Type: application/json).")
    return payload


def field_messages(error: ValidationError) -> dict[str, list[str]]:
    """marshmallow's messages as {field: [message, ...]}."""
    return {key: value if isinstance(value, list) else [str(value)]
            for key, value in error.normalized_messages().items()}


def wire_errors(renames: dict[str, str]):
    """Re-raise a service's Invalid with field names as the API spells them."""

    @contextmanager
    def _renaming():
        try:
            yield
        except Invalid as error:
            raise Invalid(error.message, {renames.get(k, k): v for k, v in
                                          error.field_errors.items()}) from None
    return _renaming()


def int_arg(name: str, default: int | None = None, *, minimum: int = 1,
            maximum: int | None = None) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Invalid(f"{name} must be a whole number.", {name: ["A whole number."]}) from None
    maximum = MAX_ID if maximum is None else maximum
    if value < minimum or value > maximum:
        raise Invalid(f"{name} out of range.", {name: [f"Between {minimum} and {maximum}."]})
    return value


def page_and_size() -> tuple[int, int]:
    """?page= and ?page_size= (both have defaults)."""
    page = int_arg("page", 1) or 1
    size = int_arg("page_size", DEFAULT_PAGE_SIZE, maximum=MAX_PAGE_SIZE) or DEFAULT_PAGE_SIZE
    return page, size


def paginate(query: Select, serialize: Callable[[Any], dict], **url_values: Any) -> dict:
    """{count, next, previous, results} for a select(), with ?page= and ?page_size=."""
    page, size = page_and_size()
    count = db.session.scalar(
        select(func.count()).select_from(query.order_by(None).subquery())) or 0
    rows: list[Any] = list(db.session.scalars(query.limit(size).offset((page - 1) * size)))
    return page_of(rows, count, page, size, serialize, **url_values)


def paginate_list(items: Iterable[Any], serialize: Callable[[Any], dict],
                  **url_values: Any) -> dict:
    items = list(items)
    page, size = page_and_size()
    return page_of(items[(page - 1) * size: page * size], len(items), page, size, serialize,
                   **url_values)


def url_here(**values: Any) -> str:
    """The absolute URL of the endpoint serving this request, with `values`."""
    assert request.endpoint is not None  # only a routed request reaches a view
    return url_for(request.endpoint, **values, _external=True)


def page_of(rows: list, count: int, page: int, size: int, serialize: Callable,
            **url_values: Any) -> dict:
    args = {**request.args.to_dict(), **url_values, "page_size": size}

    def link(number: int) -> str:
        return url_here(**{**args, "page": number})

    return {
        "count": count,
        "next": link(page + 1) if page * size < count else None,
        "previous": link(page - 1) if page > 1 else None,
        "results": [serialize(row) for row in rows],
    }


def iso(moment) -> str | None:
    if moment is None:
        return None

    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.isoformat()


class Shape(Schema):
    """Base of the API's schemas: unknown request fields are ignored (as Flagsmith's API does),
    and documented objects may grow new fields."""

    class Meta:
        unknown = EXCLUDE


def Id(**kwargs: Any) -> fields.Integer:  # noqa: N802  (a field factory, used like a class)
    return fields.Integer(strict=True, validate=validate.Range(min=1, max=MAX_ID), **kwargs)


class PageSchema(Shape):
    count = fields.Integer(required=True)
    next = fields.String(allow_none=True, required=True)
    previous = fields.String(allow_none=True, required=True)


class ErrorSchema(Schema):
    """`detail`, plus per-field message lists on 422."""

    class Meta:
        unknown = INCLUDE

    detail = fields.String(required=True)
