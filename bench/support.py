"""What every bench script shares: databases it creates and drops, the machine's load, memory
per process (RSS and PSS), wrk runs and their parsing, percentiles; and the setup the engine
benches make before they measure (a published pipeline, flags in bulk).

Figures on a shared machine are noisy: every figure is printed with the load average at the
moment it was taken, and the scripts run interleaved rounds so ratios compare like with like.
"""

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
from sqlalchemy import create_engine, insert, select, text

from webapp.clock import now
from webapp.extensions import db
from webapp.models import Feature, FeatureState, PipelineStage, ReleasePipeline, StageAction
from webapp.services.runs import planning

ROOT = Path(__file__).resolve().parent.parent
POSTGRES = os.environ.get("BENCH_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def load() -> str:
    """The 1-minute load average and the CPU count, for printing next to a figure."""
    return f"load {os.getloadavg()[0]:.2f}/{os.cpu_count()} CPUs"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def postgres_available() -> bool:
    try:
        engine = create_engine(POSTGRES)
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception:  # noqa: BLE001 (any failure means: no PostgreSQL here)
        return False


@contextmanager
def database(kind: str, folder: Path, name: str):
    """A fresh database URL: a SQLite file in `folder`, or a PostgreSQL database `name`_<pid>
    that is created here and dropped on exit."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / (name + '.db')}"
        return
    name = f"{name}_{os.getpid()}"  # two benches at once never drop each other's database
    admin = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield POSTGRES.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def databases(kinds: str, name: str, keep: str | None = None
              ) -> Iterator[tuple[str, str, Path]]:
    """(kind, database URL, folder) for each of the comma-separated kinds: a fresh database
    (see database()) and a folder of its own, removed after unless `keep` names it or the
    bench failed (its logs are there). PostgreSQL is skipped, with a line, when none answers."""
    for kind in kinds.split(","):
        if kind == "postgresql" and not postgres_available():
            print(f"PostgreSQL does not answer at {POSTGRES}: skipped")
            continue
        folder = Path(keep) if keep else Path(tempfile.mkdtemp(prefix=f"{name}-"))
        folder.mkdir(parents=True, exist_ok=True)
        with database(kind, folder, name) as url:
            yield kind, url, folder
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)


def memory(pid: int) -> dict[str, float]:
    """RSS and PSS in MiB of one process (PSS shares pages among the processes mapping them,
    so PSS figures of a parent and its forked children add up honestly; RSS figures do not)."""
    info = psutil.Process(pid).memory_full_info()
    return {"rss": info.rss / 2**20, "pss": getattr(info, "pss", info.rss) / 2**20}


def tree_memory(pid: int) -> list[tuple[int, str, dict[str, float]]]:
    """(pid, role, memory) for a process and all its descendants."""
    root = psutil.Process(pid)
    rows = []
    for process in [root, *root.children(recursive=True)]:
        try:
            rows.append((process.pid, _role(process), memory(process.pid)))
        except psutil.Error:
            continue
    return rows


def _role(process: psutil.Process) -> str:
    words = [w for w in process.cmdline() if not w.startswith("-")]
    if len(words) >= 3 and words[1] == "flask":
        words = words[3:]  # python -m flask --app wsgi <command>
    name = " ".join(Path(w).name for w in words[-2:])
    return f"{name}, child of {process.ppid()}"


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and its descendants: requests per
    CPU second hold still on a loaded machine where requests per second do not."""
    root = psutil.Process(pid)
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            continue
    return total


def postgres_backend_cpu(url: str) -> dict[int, float]:
    """CPU seconds (user + system) used so far by each PostgreSQL backend connected to url's
    database (this query's own excepted), by pid: the database's share of a request's cost,
    which tree_cpu does not see. Needs PostgreSQL on this machine (it reads /proc)."""
    engine = create_engine(url)
    with engine.connect() as conn:
        pids = conn.execute(text("SELECT pid FROM pg_stat_activity WHERE datname = "
                                 "current_database() AND pid <> pg_backend_pid()")).scalars()
        cpu = {}
        for pid in pids:
            try:
                times = psutil.Process(pid).cpu_times()
            except psutil.Error:
                continue
            cpu[pid] = times.user + times.system
    engine.dispose()
    return cpu


def format_memory(rows) -> str:
    parts = [f"pid {pid} ({role}) RSS {m['rss']:.0f} MiB PSS {m['pss']:.0f} MiB"
             for pid, role, m in rows]
    total = sum(m["pss"] for _pid, _role, m in rows)
    return "; ".join(parts) + f"; PSS total {total:.0f} MiB"


def wrk(url: str, seconds: int, connections: int = 16, headers: dict | None = None,
        script: str | None = None) -> dict:
    """One `wrk -t1 -cN` run: rate, p50/p99 in ms, non-2xx/3xx count, socket errors."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    if script:
        command += ["-s", script]
    output = subprocess.run(command + [url], capture_output=True, text=True, check=True).stdout
    if "Requests/sec" not in output or "99%" not in output:
        raise SystemExit(f"unexpected wrk output:\n{output}")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       output)
    return {
        "rate": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "requests": int(re.search(r"(\d+) requests in", output).group(1)),
        "p50": _ms(re.search(r"^\s+50%\s+(\S+)", output, re.M).group(1)),
        "p99": _ms(re.search(r"^\s+99%\s+(\S+)", output, re.M).group(1)),
        "non2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": sum(int(n) for n in socket.groups()) if socket else 0,
        "load": load(),
    }


def _ms(text_: str) -> float:
    number, unit = re.match(r"([\d.]+)(us|ms|s)", text_).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wait_http(url: str, timeout: float = 30) -> None:
    """Until something answers at url (any HTTP status)."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"nothing answered at {url}")


# --- Setup of the engine benches (not measured) ---------------------------------------------------


def published_pipeline(project_id: int, user_id: int, name: str, envs: dict[str, int],
                       stages: list[tuple[str, str, int | None]]) -> int:
    """A published pipeline written straight to the database: one stage per (environment name,
    trigger, wait seconds), each turning the flag on."""
    row = ReleasePipeline(project_id=project_id, name=name, status="published",
                          created_by_id=user_id, published_at=now())
    for position, (env, trigger, wait) in enumerate(stages):
        stage = PipelineStage(position=position, name=f"{name} {position + 1}",
                              environment_id=envs[env], trigger_type=trigger, wait_seconds=wait)
        stage.actions.append(StageAction(position=0, action_type="TOGGLE_FEATURE", enabled=True))
        row.stages.append(stage)
    db.session.add(row)
    db.session.commit()
    return row.id


def bulk_flags(project_id: int, env_ids: list[int], prefix: str, count: int) -> list[int]:
    """`count` flags named `prefix`_<n>, each with an off state in every environment, in bulk
    INSERTs; their ids."""
    planning.start_writing()  # a worker may write meanwhile: take the writer lock up front
    moment = now()
    db.session.execute(insert(Feature.__table__), [
        {"project_id": project_id, "name": f"{prefix}_{n}", "description": "",
         "value_type": "none", "default_enabled": False, "default_value": None, "tags": [],
         "created_at": moment} for n in range(count)])
    ids = list(db.session.scalars(select(Feature.id).where(
        Feature.project_id == project_id, Feature.name.like(f"{prefix}\\_%", escape="\\"))))
    db.session.execute(insert(FeatureState.__table__), [
        {"feature_id": fid, "environment_id": env, "enabled": False, "value": None,
         "updated_at": moment} for fid in ids for env in env_ids])
    db.session.commit()
    return ids
