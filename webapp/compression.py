"""HTML answers gzip-compressed for browsers that accept it.

The board's poll fragment is ~40 KB of repetitive markup every 2 s per open board; gzip takes
it to a few KB for ~0.3 ms of CPU at level 6. Only HTML is compressed: the SDK API's JSON is
served as cached bytes at thousands of requests per second, where compressing per request
would cost more than it saves on a data-centre link.
"""

import gzip

from flask import Flask, Response, request

MIN_SIZE = 500  # below one packet, the header costs more than gzip saves
LEVEL = 6


def register(app: Flask) -> None:
    app.after_request(compress)


def compress(response: Response) -> Response:
    if (response.mimetype != "text/html" or response.direct_passthrough
            or response.is_streamed or "Content-Encoding" in response.headers
            or response.status_code < 200 or response.status_code in (204, 304)):
        return response
    response.vary.add("Accept-Encoding")
    if not request.accept_encodings.quality("gzip"):
        return response
    body = response.get_data()
    if len(body) < MIN_SIZE:
        return response
    response.set_data(gzip.compress(body, compresslevel=LEVEL, mtime=0))
    response.headers["Content-Encoding"] = "gzip"
    etag, weak = response.get_etag()
    if etag:  # the same entity in another encoding is another representation
        response.set_etag(f"{etag}-gzip", weak=bool(weak))
    return response
