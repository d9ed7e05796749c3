"""Which of a request's inputs its view read: the names it asked the query string or the form
for, or `ALL` when it looked at them all (iterated them, read the raw body or JSON, or the URL
with its query string). The route walk (tests/views/test_route_walk.py) sends a route one
hostile value after another; a route whose view read none of them gets no more.

    recording(app)             # from now on, the app's requests record what their views read
    client.get(...)
    READS.viewed, READS.names  # whether a view ran, and what it read

Only the view counts (and what runs after it): the app-wide guards before it (the text guard,
CSRF) read every input of every route, so the walk's other routes already give them every value.
"""

import threading
from typing import Any

from flask import Flask, Request
from werkzeug.datastructures import ImmutableMultiDict


class _All:
    def __repr__(self) -> str:
        return "ALL"


ALL = _All()


class _Reads(threading.local):
    def __init__(self) -> None:
        self.names: set[Any] = set()
        self.viewed = False

    def reset(self, viewed: bool) -> None:
        self.names, self.viewed = set(), viewed


READS = _Reads()


def _looks_at_all(name: str) -> Any:
    def method(self: ImmutableMultiDict, *args: Any, **kwargs: Any) -> Any:
        if dict.__len__(self):  # an empty one (the files the walk never sends) holds no input
            READS.names.add(ALL)
        return getattr(ImmutableMultiDict, name)(self, *args, **kwargs)
    return method


class _RecordingValues(ImmutableMultiDict):
    """A query string's or a form's values, noting each name asked for and any look at all."""

    def __getitem__(self, key: Any) -> Any:
        READS.names.add(key)
        return super().__getitem__(key)

    def get(self, key: Any, default: Any = None, type: Any = None) -> Any:  # noqa: A002
        READS.names.add(key)
        return super().get(key, default, type)

    def getlist(self, key: Any, type: Any = None) -> Any:  # noqa: A002
        READS.names.add(key)
        return super().getlist(key, type)

    def __contains__(self, key: object) -> bool:
        READS.names.add(key)
        return super().__contains__(key)

    __iter__ = _looks_at_all("__iter__")
    __len__ = _looks_at_all("__len__")
    keys = _looks_at_all("keys")
    values = _looks_at_all("values")
    items = _looks_at_all("items")
    lists = _looks_at_all("lists")
    listvalues = _looks_at_all("listvalues")
    to_dict = _looks_at_all("to_dict")
    copy = _looks_at_all("copy")


class _RecordingRequest(Request):
    parameter_storage_class = _RecordingValues

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        READS.reset(viewed=False)
        super().__init__(*args, **kwargs)

    def get_data(self, *args: Any, **kwargs: Any) -> Any:
        READS.names.add(ALL)
        return super().get_data(*args, **kwargs)

    def get_json(self, *args: Any, **kwargs: Any) -> Any:
        READS.names.add(ALL)
        return super().get_json(*args, **kwargs)

    @property
    def full_path(self) -> str:
        READS.names.add(ALL)
        return super().full_path

    @property
    def url(self) -> str:
        READS.names.add(ALL)
        return super().url


def recording(app: Flask) -> None:
    """From now on, READS tells what the last request's view read."""
    app.request_class = _RecordingRequest
    dispatch = app.dispatch_request

    def dispatch_recording() -> Any:
        READS.reset(viewed=True)
        return dispatch()

    app.dispatch_request = dispatch_recording  # type: ignore[method-assign]


def read_any(names: set[str]) -> bool:
    """Whether the last request's view read any of these names (or all of its input); True when
    no view ran (a guard refused the request first), since then nothing is known."""
    return not READS.viewed or bool(READS.names & (names | {ALL}))
