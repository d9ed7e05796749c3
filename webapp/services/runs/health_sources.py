"""Asking a health check's source: the project's firing alerts (ALERT checks) or a PromQL
query over HTTP (PROMETHEUS checks). Each answer is a planning.Result: healthy, failing, or
unknown when the source is away or answers something that is not a clear number."""

import json
import math
import operator
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from sqlalchemy import select

from webapp.extensions import db
from webapp.models.health import FiringAlert
from webapp.services.runs.planning import CheckInfo, Result

# Prometheus must answer within this; a slow answer is "unknown" rather than a stuck worker.
QUERY_TIMEOUT_SECONDS = 2.0
_COMPARE = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
            "==": operator.eq, "!=": operator.ne}


def alert_result(ctx, check: CheckInfo) -> Result:
    """ALERT checks: failing while a firing alert of the project matches this run."""
    matching = [a for a in db.session.scalars(select(FiringAlert).where(
        FiringAlert.project_id == ctx.pipeline.project_id))
        if alert_matches(a.labels or {}, check, ctx.feature_name, ctx.pipeline.name,
                         ctx.stage.environment_name)]
    if matching:
        names = ", ".join(sorted({a.name or a.fingerprint for a in matching}))
        return Result("failing", float(len(matching)), f"{len(matching)} alert(s) firing: {names}")
    return Result("healthy", 0.0, "no matching alert firing")


def alert_matches(labels: dict[str, str], check: CheckInfo, flag: str, pipeline: str,
                  environment: str) -> bool:
    """An alert concerns the run when its railyard_* labels (where present) name this flag,
    pipeline and environment, it carries the check's selector, and it names at least one of
    them (an alert with none of these labels concerns no flag)."""
    named = {"railyard_flag": flag, "railyard_pipeline": pipeline,
             "railyard_environment": environment}
    for label, wanted in named.items():
        if label in labels and labels[label] != wanted:
            return False
    selector = check.selector or {}
    if any(labels.get(k) != v for k, v in selector.items()):
        return False
    return bool(selector) or "railyard_flag" in labels or "railyard_pipeline" in labels


def query_prometheus(prometheus: tuple[str, str] | None, check: CheckInfo, flag: str,
                     environment: str) -> Result:
    """Evaluate a PROMETHEUS check now. Never raises: anything but a clear number is unknown."""
    if prometheus is None:
        return Result("unknown", None, "no Prometheus URL in the project's integrations")
    url, auth = prometheus
    promql = render_query(check.query or "", flag, environment)
    request = urllib.request.Request(
        f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": promql}),
        headers={"Authorization": auth} if auth else {})
    try:
        with urllib.request.urlopen(request, timeout=QUERY_TIMEOUT_SECONDS) as response:
            body = json.loads(response.read(1_000_000))
    except (OSError, ValueError) as error:  # URLError, timeouts, HTTP errors, bad JSON
        return Result("unknown", None, f"Prometheus unreachable: {error}"[:500])
    value = _single_value(body)
    if isinstance(value, str):
        return Result("unknown", None, value)
    threshold = check.threshold or 0.0  # every PROMETHEUS check has one (check_inputs)
    ok = _COMPARE[check.comparison or "<"](value, threshold)
    detail = f"{value:g} {'meets' if ok else 'breaks'} {check.comparison} {threshold:g}"
    return Result("healthy" if ok else "failing", value, detail)


def render_query(query: str, flag: str, environment: str) -> str:
    """Fill `{{ flag }}` and `{{ environment }}` (spaces optional); quotes are escaped for
    PromQL string literals."""

    def quoted(text: str) -> str:
        return text.replace("\\", "\\\\").replace('"', '\\"')

    query = re.sub(r"\{\{\s*flag\s*\}\}", lambda _m: quoted(flag), query)
    return re.sub(r"\{\{\s*environment\s*\}\}", lambda _m: quoted(environment), query)


def _single_value(body: Any) -> float | str:
    """The worst (largest) sample of a vector or a scalar; a string says why there is none."""
    if not isinstance(body, dict) or body.get("status") != "success":
        error = body.get("error") if isinstance(body, dict) else body
        return f"Prometheus answered an error: {str(error)[:300]}"
    data = body.get("data") or {}
    kind = data.get("resultType")
    result: Any = data.get("result")  # whatever it is: a wrong shape is caught below
    try:
        if kind == "scalar":
            samples = [float(result[1])]
        elif kind == "vector":
            samples = [float(item["value"][1]) for item in result]
        else:
            return f"Prometheus answered a {kind}, not a number"
    except (TypeError, ValueError, KeyError, IndexError):
        return "Prometheus answered something that is not a number"
    samples = [s for s in samples if not math.isnan(s)]
    if not samples:
        return "no data for the query"
    return max(samples)
