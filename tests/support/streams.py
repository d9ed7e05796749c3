"""The realtime stream server (webapp/streams.py) on a free loopback port, in a thread."""

import asyncio
import threading

import pytest

from webapp.streams import StreamServer


@pytest.fixture
def stream_server(app):
    """The stream server on a free loopback port, in a thread; yields (base URL, server)."""
    server = StreamServer(app)
    started = threading.Event()
    loop = asyncio.new_event_loop()
    stop: list[asyncio.Event] = []

    async def _serve():
        stop.append(asyncio.Event())
        await server.serve("127.0.0.1", 0, started=started, stop=stop[0])

    thread = threading.Thread(target=loop.run_until_complete, args=(_serve(),), daemon=True)
    thread.start()
    assert started.wait(10), "the stream server did not start"
    yield f"http://127.0.0.1:{server.port}/", server
    loop.call_soon_threadsafe(stop[0].set)
    thread.join(10)
    assert not thread.is_alive(), "the stream server did not stop"
    loop.close()
