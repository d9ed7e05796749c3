"""Whole numbers typed into query strings, form fields and builder operations.

`str.isdigit()` is no guard for `int()`: it is true for "²" (which `int` refuses) and for
Arabic-Indic digits (which `int` takes), and says nothing of length, while ids and limits end
up in 64-bit database columns. Everything that reads an id or a count from a request goes
through `ascii_int`.
"""

import re
from typing import Any

# ASCII digits only, at most 18 of them: every such number fits a signed 64-bit column.
_WHOLE = re.compile(r"[0-9]{1,18}")


def ascii_int(raw: Any, *, below: int | None = None) -> int | None:
    """The non-negative whole number `raw` spells in ASCII digits (surrounding spaces allowed),
    or None for anything else (empty, signs, other scripts' digits, too long, `below` or more).
    """
    text = "" if raw is None else str(raw).strip()
    if not _WHOLE.fullmatch(text):
        return None
    number = int(text)
    return number if below is None or number < below else None
