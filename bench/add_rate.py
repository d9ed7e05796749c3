"""Adds through the admin API, alone and while SDK reads poll, under `make run`.

    .venv/bin/python bench/add_rate.py [--databases sqlite,postgresql] [--block 150]
                                       [--port 5118]

`flask run-all` with its defaults, the pipeline of bench/e2e.py (Development ON_ENTER, Staging
WAIT_FOR 3 s, Production ON_ENTER). Blocks of BLOCK flags are added one per request, as fast as
the API takes them, alternately alone and while Staging's and Production's flags documents are
read in rounds 20 ms apart (e2e.py's watcher): the add rate, the time per add request, and the
CPU per add of the web server (the add, and the reads when they run) and of the worker. The
difference between the two kinds of block is what the polling costs the adds.
"""

import argparse
import os
import signal
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import e2e  # noqa: E402
import support  # noqa: E402
from sqlalchemy import create_engine, func, select  # noqa: E402

from webapp.models import PipelineRun  # noqa: E402

BLOCKS = (False, True, False, True)  # with reads?


class Reader(threading.Thread):
    """Staging's and Production's flags documents, round after round, until stopped."""

    def __init__(self, api: e2e.Api, env_keys: list[str]):
        super().__init__(daemon=True)
        self.api, self.env_keys = api, env_keys
        self.stop = threading.Event()
        self.rounds: list[float] = []

    def run(self) -> None:
        while not self.stop.is_set():
            began = time.time()
            for key in self.env_keys:
                e2e.enabled_in(self.api, key)
            self.rounds.append(time.time() - began)
            time.sleep(0.02)


def block(api: e2e.Api, ctx: dict, names: list[str], reads: bool, root: int, label: str) -> None:
    reader = Reader(api, [ctx["envs"]["Staging"][1], ctx["envs"]["Production"][1]])
    if reads:
        reader.start()
    path = f"/projects/{ctx['project']}/release-pipelines/{ctx['pipeline']}/add-feature/"
    cpu_before = e2e.cpu_by_role(root)
    times = []
    started = time.time()
    for name in names:
        began = time.time()
        api.call("POST", path, {"feature_id": ctx["ids"][name]})
        times.append(time.time() - began)
    took = time.time() - started
    cpu_after = e2e.cpu_by_role(root)
    reader.stop.set()
    if reads:
        reader.join()
    web, worker = ((cpu_after[role] - cpu_before[role]) / len(names) * 1000
                   for role in ("web", "worker"))
    polled = (f"; a round of reads took {statistics.median(reader.rounds) * 1000:.0f} ms median"
              if reader.rounds else "")
    print(f"{label} {'with reads' if reads else 'adds alone'}: {len(names)} adds in {took:.1f} s "
          f"({len(names) / took:.1f}/s), per request p50 "
          f"{statistics.median(times) * 1000:.0f} ms, p90 "
          f"{support.percentile(times, 0.9) * 1000:.0f} ms; CPU per add: web {web:.1f} ms, "
          f"worker {worker:.1f} ms{polled}  [{support.load()}]", flush=True)


def launched(engine, feature_ids: list[int], timeout: float = 120) -> None:
    """Until the block's flags have left the pipeline: the next block's adds run alone."""
    deadline = time.monotonic() + timeout
    while True:
        with engine.connect() as conn:  # a new transaction each time: SQLite's snapshot moves
            in_flight = conn.scalar(select(func.count()).select_from(PipelineRun).where(
                PipelineRun.feature_id.in_(feature_ids), PipelineRun.ended_at.is_(None)))
        if not in_flight:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"{in_flight} flags still in the pipeline after {timeout:.0f} s")
        time.sleep(0.1)


def run(kind: str, url: str, folder: Path, args) -> None:
    process = e2e.start(url, folder, args.port)
    engine = create_engine(url)
    try:
        api = e2e.Api(f"http://127.0.0.1:{args.port}/api/v1", e2e.api_key(url))
        ctx = e2e.setup(engine, api, args.block * len(BLOCKS), 3)
        for n, reads in enumerate(BLOCKS):
            names = [f"e2e_{i}" for i in range(n * args.block, (n + 1) * args.block)]
            block(api, ctx, names, reads, process.pid, kind)
            launched(engine, [ctx["ids"][name] for name in names])
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(30)
        except Exception:  # noqa: BLE001 (it would not stop: kill it)
            os.killpg(process.pid, signal.SIGKILL)
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--block", type=int, default=150)
    parser.add_argument("--port", type=int, default=5118)
    args = parser.parse_args()
    for kind, url, folder in support.databases(args.databases, "railyard_bench_add_rate"):
        run(kind, url, folder, args)


if __name__ == "__main__":
    main()
