"""Segment REGEX patterns: which ones Railyard takes, and matching them in linear time.

A REGEX condition is evaluated on trait values that anyone holding a (public) client key sends,
so a pattern must never let a value make evaluation slow:

- Railyard matches with RE2 (`google-re2`), whose time is linear in the value's length,
  whatever the pattern. Patterns RE2 cannot take (backreferences, lookarounds) are refused.
- The SDKs evaluate the same patterns locally with backtracking engines (Python's `re`,
  JavaScript's RegExp), where a repetition of something that can itself match in several ways,
  like `(a+)+$` or `(a|ab)*`, takes exponential time on a value that almost matches. Those
  patterns are refused too, and the environment document leaves out the segments that still
  hold one (saved before this rule), so no SDK is handed a pattern Railyard refused.

Polynomial cases for backtracking engines (`.*.*.*x`) are not refused (telling them apart
soundly needs an automaton analysis): Railyard itself matches them in linear time, and an SDK
evaluating locally runs them on its own application's trait values.
"""

import re
import re._constants as sre  # the parse tree of Python's own engine: what a Python SDK runs
import re._parser as sre_parser
from functools import lru_cache
from typing import Any

import re2

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a refused pattern is answered with a 422, not logged to stderr

_REPEATS = (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT)


@lru_cache(maxsize=1024)
def refusal(pattern: str) -> str | None:
    """Why Railyard refuses this REGEX pattern (a sentence for the segment form), or None."""
    try:
        tree = sre_parser.parse(pattern)
    except re.error as error:
        return f"Not a valid regular expression: {error}."
    except RecursionError:
        return "This regular expression nests too deeply."
    try:
        re2.compile(pattern, _OPTIONS)
    except re2.error as error:
        reason = error.args[0].decode(errors="replace") if error.args and isinstance(
            error.args[0], bytes) else str(error)
        return (f"Railyard matches with RE2, which cannot take this pattern ({reason}); "
                "backreferences and lookarounds are not supported.")
    if _ambiguous_repeat(tree, inside_repeat=False):
        return ("A repetition of something that can itself match in several ways, like (a+)+ "
                "or (a|ab)*, takes exponential time in the SDKs' local evaluation; write it "
                "without the nesting, e.g. a+ or [ab]*.")
    return None


def matches(pattern: str, text: str) -> bool:
    """Whether `pattern` matches at the start of `text` (Python's `re.match`), in linear time.
    A pattern RE2 cannot take never matches."""
    compiled = _compiled(pattern)
    if compiled is None:
        return False
    try:
        return compiled.match(text) is not None
    except UnicodeEncodeError:  # a lone surrogate stored before the input guard refused them
        return False


def refused_in(rules: list[dict[str, Any]]) -> bool:
    """Whether a stored rule tree holds a REGEX condition whose pattern Railyard refuses."""
    return any(
        any(condition.get("operator") == "REGEX"
            and refusal(str(condition.get("value") or "")) is not None
            for condition in rule.get("conditions") or [])
        or refused_in(rule.get("rules") or [])
        for rule in rules or [])


@lru_cache(maxsize=1024)
def _compiled(pattern: str) -> Any:
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error:
        return None


def _ambiguous_repeat(items: Any, *, inside_repeat: bool) -> bool:
    """Whether a repetition (up to more than once) holds something that can match a varying
    number of ways: another variable repetition or an alternation (star height > 1)."""
    for op, arg in items:
        if op in _REPEATS:
            low, high, body = arg
            variable = low != high
            if inside_repeat and variable:
                return True
            if _ambiguous_repeat(body, inside_repeat=inside_repeat or high > 1):
                return True
        elif op is sre.BRANCH:
            if inside_repeat:
                return True
            if any(_ambiguous_repeat(branch, inside_repeat=False) for branch in arg[1]):
                return True
        elif op is sre.SUBPATTERN:
            if _ambiguous_repeat(arg[-1], inside_repeat=inside_repeat):
                return True
        elif op in (sre.ASSERT, sre.ASSERT_NOT):
            if _ambiguous_repeat(arg[1], inside_repeat=inside_repeat):
                return True
        elif op is sre.GROUPREF_EXISTS:
            for branch in arg[1:]:
                if branch is not None and _ambiguous_repeat(branch, inside_repeat=inside_repeat):
                    return True
        elif op is sre.ATOMIC_GROUP and _ambiguous_repeat(arg, inside_repeat=inside_repeat):
            return True
    return False
