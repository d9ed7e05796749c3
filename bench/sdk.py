"""SDK API throughput under the README's serving command, SQLite and PostgreSQL, against a
bare WSGI app that answers the same bytes under the same server set-up.

    .venv/bin/python bench/sdk.py [--rounds 3] [--duration 5] [--port 5107]
                                  [--databases sqlite,postgresql] [--endpoints flags,identities]

Why sync workers (the README's command): with keep-alive (gthread), each of a few long-lived
connections stays with the worker process that accepted it, and that accept race often hands
most of them to one process, so half the CPUs idle from one run to the next. Sync workers take
one request per connection, so every request goes to a free worker.

Data: one project with 100 flags, 50 segments (two conditions each), 20 segment overrides in
Development, 1,000 identities with traits. Servers: `gunicorn -w 2 -k sync` (the README's
command for SDK traffic) for Railyard on each database and for `bench/bare_wsgi.py`, which
answers the bytes Railyard answered. Load: `wrk -t1 -c16` (the target's shape), DURATION s
per run, after a 2 s warm-up, in ROUNDS interleaved rounds (bare, SQLite, PostgreSQL one after
the other, so each ratio compares runs taken under the same machine load).

- `GET /api/v1/flags/`: target ≥ 4,000 req/s on a quiet machine, p99 ≤ 20 ms, and ≥ 70 % of
  the bare app's rate in the same round.
- `POST /api/v1/identities/`: every request sends a random trait value (`seen`), so every
  request takes the write path (read, merge, store); target ≥ 1,500 req/s on PostgreSQL.
  Committed work is counted from another connection after each run: the identities whose
  stored `seen` changed.

Server CPU per request (gunicorn master and workers, user + system) holds still on a loaded
machine where rates do not; on PostgreSQL its backends' CPU per request (those connected to the
bench database, read from /proc) is printed beside it as "PG CPU". Load average is printed with
every figure; memory (RSS and PSS) per gunicorn process at the end.
PostgreSQL: a database `railyard_bench_sdk` is created and dropped at BENCH_POSTGRES's server
(default postgresql+psycopg://postgres@127.0.0.1:5432/postgres).
"""

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import support  # noqa: E402
from sqlalchemy import create_engine, insert, select  # noqa: E402

from webapp import create_app  # noqa: E402
from webapp.extensions import db  # noqa: E402
from webapp.models import Identity  # noqa: E402
from webapp.services.actors import SYSTEM  # noqa: E402
from webapp.services.platform import flag_changes, flags, projects, segments  # noqa: E402

PLANS = ["free", "pro", "team", "enterprise"]
IDENTITIES = 1000

WRK_POST = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local plans = {"free", "pro", "team", "enterprise"}
math.randomseed(os.time())
request = function()
  local n = math.random(0, %(identities)d - 1)
  local body = string.format(
    '{"identifier":"user-%%d","traits":[{"trait_key":"plan","trait_value":"%%s"},' ..
    '{"trait_key":"age","trait_value":%%d},{"trait_key":"seen","trait_value":%%d}]}',
    n, plans[math.random(1, 4)], math.random(18, 80), math.random(1, 2000000000))
  return wrk.format(nil, nil, nil, body)
end
"""


def build(url: str, folder: Path) -> str:
    """The bench data; returns Development's client key."""
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "REDIS_URL": "redis://unused",
                      "SECRET_KEY": "bench", "INSTANCE_PATH": str(folder)})
    with app.app_context():
        db.create_all()
        project = projects.create_project("Bench", SYSTEM)
        development = projects.environments_of(project.id)[0]
        features = [
            flags.create_feature(project, f"flag_{n:03d}", SYSTEM, commit=False,
                                 value_type="string" if n % 2 else "none",
                                 default_value=f"value {n}" if n % 2 else None,
                                 default_enabled=n % 3 == 0)
            for n in range(100)
        ]
        for n in range(50):
            rules = [{"type": "ALL", "rules": [], "conditions": [
                {"property": "plan", "operator": "EQUAL", "value": PLANS[n % 4]},
                {"property": "age", "operator": "GREATER_THAN_INCLUSIVE", "value": str(18 + n)},
            ]}]
            segment = segments.create_segment(project, f"segment_{n:02d}", rules, SYSTEM,
                                              commit=False)
            if n < 20:
                flag_changes.apply_change(
                    {"kind": "override", "environment_id": development.id,
                     "feature_id": features[(n * 7 + 3) % 100].id, "segment_id": segment.id,
                     "enabled": True}, SYSTEM, project_id=project.id,
                    event_type="SEGMENT_OVERRIDE_SET", message="bench")
        db.session.execute(insert(Identity), [
            {"environment_id": development.id, "identifier": f"user-{n}",
             "traits": {"plan": PLANS[n % 4], "age": 18 + n % 60, "seen": 0}}
            for n in range(IDENTITIES)])
        db.session.commit()
        key = development.client_key
        db.engine.dispose()
        return key


def gunicorn(port: int, env: dict, app: str, cwd: Path) -> subprocess.Popen:
    """The README's serving command for SDK traffic: `gunicorn -w 2 -k sync`."""
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", "2", "-k", "sync", "--bind",
         f"127.0.0.1:{port}", "--log-level", "warning", app],
        cwd=cwd, env={**os.environ, **env}, start_new_session=True)
    support.wait_http(f"http://127.0.0.1:{port}/api/v1/flags/")
    return process


def seen_snapshot(url: str) -> dict[str, object]:
    """Each identity's stored `seen` trait, read on a connection of our own."""
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(select(Identity.__table__.c.identifier,
                                   Identity.__table__.c.traits)).all()
    engine.dispose()
    return {identifier: (traits or {}).get("seen") for identifier, traits in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--port", type=int, default=5107, help="uses PORT, PORT+1, PORT+2")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--endpoints", default="flags,identities",
                        help="which of flags,identities to load (the bare app runs the same)")
    args = parser.parse_args()
    args.endpoints = [e for e in args.endpoints.split(",") if e]
    if not args.endpoints or set(args.endpoints) - {"flags", "identities"}:
        parser.error("--endpoints: flags, identities or both")
    kinds = [k for k in args.databases.split(",") if k]
    if "postgresql" in kinds and not support.postgres_available():
        print(f"PostgreSQL does not answer at {support.POSTGRES}: SQLite only")
        kinds.remove("postgresql")
    folder = Path(tempfile.mkdtemp(prefix="railyard-bench-sdk-"))
    with support.database("sqlite", folder, "sdk") as sqlite_url, \
            support.database("postgresql" if "postgresql" in kinds else "sqlite", folder,
                             "railyard_bench_sdk") as pg_url:
        urls = {"sqlite": sqlite_url, "postgresql": pg_url}
        urls = {kind: urls[kind] for kind in kinds}
        keys = {kind: build(url, folder) for kind, url in urls.items()}
        servers: dict[str, subprocess.Popen] = {}
        ports: dict[str, int] = {}
        try:
            for offset, (kind, url) in enumerate(urls.items(), start=1):
                ports[kind] = args.port + offset
                servers[kind] = gunicorn(ports[kind], {"DATABASE_URL": url, "SECRET_KEY": "bench",
                                                       "REDIS_URL": "redis://127.0.0.1:1/0"},
                                         "wsgi:app", ROOT)
            first = kinds[0]
            bodies = _sample_bodies(ports[first], keys[first], folder)
            ports["bare"] = args.port
            servers["bare"] = gunicorn(args.port, bodies, "bare_wsgi:app", ROOT / "bench")
            print(f"servers: gunicorn -w 2 -k sync; load: wrk -t1 -c16 -d{args.duration}s; "
                  f"{args.rounds} interleaved rounds; {support.load()}")
            results = _rounds(args, kinds, ports, keys, urls, folder, servers)
            _summary(results, kinds, args.endpoints)
            for name, server in servers.items():
                print(f"memory {name}: {support.format_memory(support.tree_memory(server.pid))}")
        finally:
            for server in servers.values():
                os.killpg(server.pid, signal.SIGTERM)
                server.wait(10)


def _sample_bodies(port: int, key: str, folder: Path) -> dict[str, str]:
    base = f"http://127.0.0.1:{port}/api/v1"
    flags_body = urllib.request.urlopen(urllib.request.Request(
        base + "/flags/", headers={"X-Environment-Key": key})).read()
    identity_body = urllib.request.urlopen(urllib.request.Request(
        base + "/identities/", method="POST", headers={"X-Environment-Key": key,
                                                        "Content-Type": "application/json"},
        data=b'{"identifier":"user-1","traits":[{"trait_key":"plan","trait_value":"pro"}]}'
    )).read()
    (folder / "flags.json").write_bytes(flags_body)
    (folder / "identity.json").write_bytes(identity_body)
    return {"BARE_FLAGS": str(folder / "flags.json"),
            "BARE_IDENTITY": str(folder / "identity.json")}


def _rounds(args, kinds, ports, keys, urls, folder, servers) -> list[tuple[int, str, str, dict]]:
    post_script = folder / "post.lua"
    post_script.write_text(WRK_POST % {"identities": IDENTITIES})
    plan = [(server, endpoint) for endpoint in args.endpoints for server in ("bare", *kinds)]
    results = []
    for round_ in range(1, args.rounds + 1):
        for server, endpoint in plan:
            key = keys[server if server != "bare" else kinds[0]]
            url = f"http://127.0.0.1:{ports[server]}/api/v1/{endpoint}/"
            script = str(post_script) if endpoint == "identities" else None
            headers = {"X-Environment-Key": key}
            if round_ == 1:
                support.wrk(url, 2, headers=headers, script=script)  # warm-up, not counted
            before = seen_snapshot(urls[server]) if server != "bare" and script else None
            postgresql = server == "postgresql"
            pg_cpu = support.postgres_backend_cpu(urls[server]) if postgresql else {}
            cpu = support.tree_cpu(servers[server].pid)
            result = support.wrk(url, args.duration, headers=headers, script=script)
            requests = max(1, result["requests"])
            result["cpu_ms"] = (support.tree_cpu(servers[server].pid) - cpu) * 1000 / requests
            extra = ""
            if postgresql:
                pg_after = support.postgres_backend_cpu(urls[server])
                result["pg_cpu_ms"] = sum(
                    spent - pg_cpu.get(pid, 0.0) for pid, spent in pg_after.items()
                ) * 1000 / requests
                extra += f"  PG CPU {result['pg_cpu_ms']:.2f} ms/request"
            if before is not None:
                after = seen_snapshot(urls[server])
                changed = sum(1 for k, v in after.items() if before.get(k) != v)
                extra += (f"  committed: {changed} of {len(after)} identities' stored traits "
                         "changed (read from another connection)")
            print(f"round {round_} {server:<10} {endpoint:<10} {result['rate']:>7.0f} req/s  "
                  f"p50 {result['p50']:6.2f} ms  p99 {result['p99']:6.2f} ms  "
                  f"server CPU {result['cpu_ms']:.2f} ms/request  "
                  f"non-2xx {result['non2xx']}  socket errors {result['socket_errors']}  "
                  f"[{result['load']}]{extra}", flush=True)
            results.append((round_, server, endpoint, result))
    return results


def _summary(results, kinds, endpoints) -> None:
    targets = {"flags": 4000, "identities": 1500}
    by = {}
    for round_, server, endpoint, result in results:
        by.setdefault((server, endpoint), []).append((round_, result))
    print("\nsummary (median of rounds; best in brackets; ratio = Railyard / bare in the same "
          "round, median)")
    for endpoint in endpoints:
        bare = dict(by[("bare", endpoint)])
        for server in ("bare", *kinds):
            rows = by[(server, endpoint)]
            rates = [r["rate"] for _round, r in rows]
            p99s = [r["p99"] for _round, r in rows]
            cpus = [r["cpu_ms"] for _round, r in rows]
            line = (f"{endpoint:<10} {server:<10} {statistics.median(rates):>7.0f} req/s "
                    f"[{max(rates):.0f}]  p99 median {statistics.median(p99s):.2f} ms  "
                    f"server CPU median {statistics.median(cpus):.2f} ms/request")
            if server == "postgresql":
                pg_cpus = [r["pg_cpu_ms"] for _round, r in rows]
                line += f"  PG CPU median {statistics.median(pg_cpus):.2f} ms/request"
            if server != "bare":
                ratios = [r["rate"] / bare[round_]["rate"] for round_, r in rows]
                line += (f"  ratio to bare {statistics.median(ratios):.0%} "
                         f"(rounds: {', '.join(f'{x:.0%}' for x in ratios)})")
                line += f"  target ≥ {targets[endpoint]} req/s"
                if endpoint == "flags":
                    line += ", ≥ 70 % of bare, p99 ≤ 20 ms"
            print(line)


if __name__ == "__main__":
    main()
