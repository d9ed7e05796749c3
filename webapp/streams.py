"""The realtime stream server: Flagsmith's `GET /sse/environments/<key>/stream`.

SDKs with realtime on (the JS SDK's `realtime: true`, the Python SDK's
`enable_realtime_updates=True`) keep this stream open and refetch their flags when an
`environment_updated` event says `{"updated_at": <epoch seconds>}` is newer than what they hold.

Why a process of its own, on asyncio: a stream stays open for hours and does nothing most of
the time. In the dashboard's gunicorn (2 workers x 4 threads) each stream would hold a thread,
so eight SDKs would take the dashboard down. Here a stream is one coroutine and a queue (a few
kilobytes); one Redis subscription fans every committed change out to the streams of its
environment, and the database is read once per connection (which environment a key opens).
No new dependency: asyncio and redis-py's asyncio client. `flask run-all` starts it.
"""

import asyncio
import json
import logging
import re
import signal
import threading
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio as aioredis
from flask import Flask

from webapp.services.platform import sdk_documents
from webapp.services.platform.realtime import CHANNEL, LAST_UPDATED

log = logging.getLogger(__name__)

STREAM_PATH = re.compile(r"^/sse/environments/([^/]{1,200})/stream/?$")
# A comment line this often: proxies keep the connection, and a gone client is noticed.
KEEPALIVE_SECONDS = 15.0
# How long a client may take to send its request head, and how big it may be.
REQUEST_TIMEOUT_SECONDS = 10.0
MAX_REQUEST_HEAD = 16 * 1024
STOP_TIMEOUT_SECONDS = 2.0
# How often the subscription thread looks up from Redis to see whether it should stop.
LISTEN_POLL_SECONDS = 0.5
# SDKs reconnect this soon after a dropped stream (the EventSource `retry` field).
RETRY_MS = 1000
CORS = (b"Access-Control-Allow-Origin: *\r\n"
        b"Access-Control-Allow-Headers: Accept, Cache-Control, Last-Event-ID\r\n")


def event(updated_at: float) -> bytes:
    data = json.dumps({"updated_at": updated_at})
    return f"event: environment_updated\ndata: {data}\n\n".encode()


def chunk(data: bytes) -> bytes:
    """One HTTP/1.1 chunk: clients (urllib3 under the Python SDK) hand each chunk over as it
    arrives, where a body without framing would wait for a full read buffer."""
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


class StreamServer:
    """Serves the streams of one app's environments (see the module docstring)."""

    def __init__(self, app: Flask):
        self.app = app
        self.streams: dict[int, set[asyncio.Queue[float]]] = {}
        self.port: int | None = None
        self._redis: aioredis.Redis | None = None
        self._handlers: set[asyncio.Task] = set()

    @property
    def open_streams(self) -> int:
        return sum(len(queues) for queues in self.streams.values())

    async def serve(self, host: str, port: int, started: threading.Event | None = None,
                    stop: asyncio.Event | None = None) -> None:
        """Serve until `stop` is set (forever without one)."""
        self._redis = aioredis.from_url(self.app.config["REDIS_URL"])
        server = await asyncio.start_server(self._handle, host, port, limit=MAX_REQUEST_HEAD,
                                            backlog=1024)
        self.port = server.sockets[0].getsockname()[1]
        stopping = threading.Event()
        listener = threading.Thread(target=self._listen, name="streams-redis", daemon=True,
                                    args=(asyncio.get_running_loop(), stopping))
        listener.start()
        if started is not None:
            started.set()
        try:
            await (stop.wait() if stop is not None else asyncio.Future())
        finally:
            stopping.set()
            server.close()
            for task in self._handlers:
                task.cancel()
            if self._handlers:
                await asyncio.wait(set(self._handlers), timeout=STOP_TIMEOUT_SECONDS)
            await server.wait_closed()
            await asyncio.to_thread(listener.join, STOP_TIMEOUT_SECONDS)
            await asyncio.wait_for(self._redis.aclose(), STOP_TIMEOUT_SECONDS)

    def _listen(self, loop: asyncio.AbstractEventLoop, stopping: threading.Event) -> None:
        """In a thread of its own (a blocking subscription, simple to stop): every published
        change to the streams of its environment. Resubscribes when Redis comes back, and then
        re-announces the last change to every open stream (it may have missed one)."""
        connection = redis.Redis.from_url(self.app.config["REDIS_URL"])
        while not stopping.is_set():
            try:
                with connection.pubsub(ignore_subscribe_messages=True) as pubsub:
                    pubsub.subscribe(CHANNEL)
                    open_environments = [str(env) for env in list(self.streams)]
                    if open_environments:
                        lasts = connection.hmget(LAST_UPDATED, open_environments)
                        for env, last in zip(open_environments, lasts, strict=True):
                            if last is not None:
                                loop.call_soon_threadsafe(self._deliver, int(env), float(last))
                    while not stopping.is_set():
                        message = pubsub.get_message(timeout=LISTEN_POLL_SECONDS)
                        if message is not None and message["type"] == "message":
                            change = json.loads(message["data"])
                            loop.call_soon_threadsafe(self._deliver,
                                                      int(change["environment_id"]),
                                                      float(change["updated_at"]))
            except (redis.RedisError, OSError, RuntimeError):  # RuntimeError: the loop closed
                if not stopping.is_set():
                    log.warning("streams: Redis subscription lost; retrying", exc_info=True)
                stopping.wait(1)
        connection.close()

    def _deliver(self, environment_id: int, updated_at: float) -> None:
        for queue in self.streams.get(environment_id, ()):
            queue.put_nowait(updated_at)

    def _environment_id(self, key: str) -> int | None:
        with self.app.app_context():
            ref = sdk_documents.find_environment(key)
        return None if ref is None else ref.id

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT_SECONDS)
            method, target, *_rest = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            await self._answer(method, urlsplit(target).path, reader, writer)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ConnectionError, ValueError):
            pass  # a client that went away or sent garbage: nothing to answer
        except Exception:
            log.exception("streams: request failed")
        finally:
            self._handlers.discard(task)
            writer.close()

    async def _answer(self, method: str, path: str, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        if method == "OPTIONS":
            return await _reply(writer, 204, b"", b"Access-Control-Allow-Methods: GET\r\n")
        match = STREAM_PATH.match(path)
        if match is None:
            return await _reply(writer, 404, b'{"detail": "Not found."}')
        if method != "GET":
            return await _reply(writer, 405, b'{"detail": "Use GET."}', b"Allow: GET\r\n")
        environment_id = await asyncio.to_thread(self._environment_id, unquote(match[1]))
        if environment_id is None:
            return await _reply(writer, 404, b'{"detail": "Unknown environment key."}')
        await self._stream(environment_id, reader, writer)

    async def _stream(self, environment_id: int, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[float] = asyncio.Queue()
        self.streams.setdefault(environment_id, set()).add(queue)
        gone = asyncio.create_task(reader.read())  # EOF (or anything) ends the stream
        try:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                         b"Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n"
                         b"Transfer-Encoding: chunked\r\nConnection: close\r\n" + CORS
                         + b"\r\n" + chunk(f"retry: {RETRY_MS}\n\n".encode()))
            assert self._redis is not None  # serve() connects before it accepts a stream
            last = await self._redis.hget(LAST_UPDATED, str(environment_id))
            if last is not None:
                writer.write(chunk(event(float(last))))
            await writer.drain()
            waiting: asyncio.Future[float] = asyncio.get_running_loop().create_future()
            while not gone.done():
                waiting = asyncio.create_task(queue.get())
                done, _pending = await asyncio.wait({waiting, gone}, timeout=KEEPALIVE_SECONDS,
                                                    return_when=asyncio.FIRST_COMPLETED)
                if waiting in done:
                    updated_at = waiting.result()
                    while not queue.empty():  # a burst of changes is one refetch
                        updated_at = max(updated_at, queue.get_nowait())
                    writer.write(chunk(event(updated_at)))
                else:
                    waiting.cancel()
                    if gone.done():
                        break
                    writer.write(chunk(b": keep-alive\n\n"))
                await writer.drain()
        finally:
            gone.cancel()
            waiting.cancel()
            queues = self.streams.get(environment_id)
            if queues is not None:
                queues.discard(queue)
                if not queues:
                    del self.streams[environment_id]


async def _reply(writer: asyncio.StreamWriter, status: int, body: bytes,
                 extra: bytes = b"") -> None:
    reason = {204: "No Content", 404: "Not Found", 405: "Method Not Allowed"}[status]
    writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(body)}\r\nConnection: close\r\n".encode()
                 + CORS + extra + b"\r\n" + body)
    await writer.drain()


def run(app: Flask, host: str, port: int) -> None:
    """Serve streams until SIGTERM/SIGINT (the `realtime` command)."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        server = StreamServer(app)
        await server.serve(host, port, stop=stop)

    asyncio.run(main())
