"""Live view of the classification loop over HTTP, standard library only (``http.server``).

Endpoints: ``/`` the page (``static/serve.html``, no external scripts), ``/stream.mjpg`` an MJPEG stream
(``multipart/x-mixed-replace``) of the frames with the top-k labels drawn on them, ``/api/status`` JSON with the
latest result, the running summary and the recent per-frame timings.

The loop hands every frame to :meth:`LiveView.publish`, which only swaps references under a lock. Each stream client
has its own thread that waits for a frame newer than the one it sent last, so a slow client skips frames instead of
queueing them, and a stalled or vanished one ends its own thread: the loop never waits for the network. Frames are
JPEG-encoded on demand by the client threads, once per frame however many clients watch, and not at all when
nobody does.
"""

from __future__ import annotations

import collections
import io
import ipaddress
import json
import logging
import math
import socket
import threading
import time
from collections.abc import Callable, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .classify import FrameResult
from .sources import Frame

logger = logging.getLogger(__name__)

__all__ = ["PAGE", "LiveServer", "LiveView", "is_loopback", "render_frame"]

PAGE = Path(__file__).parent / "static" / "serve.html"
BOUNDARY = "bhvitframe"
MAX_SIDE = 800  # stream frames are shrunk to fit this box: bandwidth, not accuracy, matters here
JPEG_QUALITY = 80
HISTORY = 120  # frames of per-frame timings in /api/status, for the page's chart
HISTORY_KEYS = ("frame", "capture_ms", "preprocess_ms", "inference_ms", "postprocess_ms", "total_ms", "fps", "rss_mb")
WILDCARDS = ("", "0.0.0.0", "::")


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses; anything else may be reachable from the network."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def render_frame(
    image: np.ndarray | Image.Image,
    topk: Sequence[tuple[str, float]],
    max_side: int = MAX_SIDE,
    quality: int = JPEG_QUALITY,
) -> bytes:
    """JPEG of an RGB frame shrunk to fit ``max_side``, with the labels and probabilities in a box at the top left."""
    picture = (image if isinstance(image, Image.Image) else Image.fromarray(np.ascontiguousarray(image))).convert("RGB")
    picture.thumbnail((max_side, max_side))  # convert() made a copy, so the frame itself is untouched
    font = ImageFont.load_default(size=max(10, picture.height // 20))
    draw = ImageDraw.Draw(picture)
    text = "\n".join(f"{label} {p:.2f}" for label, p in topk)
    pad = max(2, picture.height // 80)
    left, top, right, bottom = draw.multiline_textbbox((pad, pad), text, font=font)
    box = (0, 0, min(picture.width, right + pad), min(picture.height, bottom + pad))
    picture.paste(Image.blend(picture.crop(box), Image.new("RGB", (box[2], box[3])), 0.6), box)
    draw.multiline_text((pad, pad), text, font=font, fill=(255, 255, 255))
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=quality)
    return out.getvalue()


class LiveView:
    """The latest frame, result and summary: written by the loop, read by the HTTP threads.

    ``info`` is static (source, model, options) and goes into every status document. ``summary`` is the running
    summary; it runs in the loop thread, at most every ``summary_every_s``.
    """

    def __init__(self, info: dict[str, Any], summary: Callable[[], dict], summary_every_s: float = 0.5) -> None:
        self.info = info
        self._summary_fn = summary
        self._summary_every_s = summary_every_s
        self._summary_at = -math.inf
        self._cond = threading.Condition()
        self._seq = 0
        self._frame: tuple[np.ndarray | Image.Image, tuple[tuple[str, float], ...]] | None = None
        self._latest: dict | None = None
        self._history: collections.deque[dict] = collections.deque(maxlen=HISTORY)
        self._summary: dict = {}
        self._running = True
        self._closed = False
        self._viewers = 0
        self._jpeg_lock = threading.Lock()
        self._jpeg: tuple[int, bytes] = (0, b"")

    @property
    def closed(self) -> bool:
        return self._closed

    def publish(self, frame: Frame, result: FrameResult) -> None:
        """Make ``frame`` and its result the latest (the loop's per-frame hook); wakes the stream clients."""
        record = result.to_record()
        now = time.monotonic()
        summary = None
        if now - self._summary_at >= self._summary_every_s:
            summary, self._summary_at = self._summary_fn(), now
        with self._cond:
            self._seq += 1
            self._frame = (frame.image, result.topk)
            self._latest = record
            self._history.append({key: record[key] for key in HISTORY_KEYS})
            if summary is not None:
                self._summary = summary
            self._cond.notify_all()

    def finish(self, summary: dict) -> None:
        """The loop has ended: keep the last frame, show the final summary."""
        with self._cond:
            self._running = False
            self._summary = summary
            self._cond.notify_all()

    def close(self) -> None:
        """End every stream (the server is shutting down)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def status(self) -> dict:
        """The JSON document of ``/api/status``."""
        with self._cond:
            return self.info | {
                "running": self._running,
                "frames": self._seq,
                "viewers": self._viewers,
                "latest": self._latest,
                "summary": self._summary,
                "history": list(self._history),
            }

    def next_jpeg(self, after: int, timeout: float) -> tuple[int, bytes] | None:
        """The newest frame if it is newer than frame number ``after`` (waiting up to ``timeout`` s for one) as
        (number, JPEG); None on timeout or once closed."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._closed or self._seq > after, timeout) or self._closed:
                return None
            seq, (image, topk) = self._seq, self._frame
        with self._jpeg_lock:  # the first client to ask encodes, the others reuse it
            if self._jpeg[0] != seq:
                self._jpeg = (seq, render_frame(image, topk))
            return self._jpeg

    def add_viewer(self, delta: int) -> None:
        with self._cond:
            self._viewers += delta


class _Handler(BaseHTTPRequestHandler):
    server: LiveServer
    server_version = "bhvit-serve"
    timeout = 10.0  # a client that has not taken a whole frame after this long is dropped
    wait_s = 0.5  # how often a waiting stream checks for shutdown

    def do_GET(self) -> None:  # noqa: N802  (http.server's name)
        routes = {"/": self._page, "/index.html": self._page, "/stream.mjpg": self._stream, "/api/status": self._status}
        route = routes.get(urlsplit(self.path).path)
        if route is None:
            self.send_error(HTTPStatus.NOT_FOUND, explain="this server has /, /stream.mjpg and /api/status")
        else:
            route()

    def _send(self, body: bytes, content_type: str) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _page(self) -> None:
        self._send(self.server.page, "text/html; charset=utf-8")

    def _status(self) -> None:
        self._send(json.dumps(self.server.live.status()).encode(), "application/json")

    def _stream(self) -> None:
        live = self.server.live
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        live.add_viewer(1)
        sent = 0
        try:
            while not live.closed:
                got = live.next_jpeg(sent, self.wait_s)
                if got is None:
                    continue
                sent, jpeg = got
                head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                self.wfile.write(head.encode() + jpeg + b"\r\n")
        except OSError as err:  # gone (broken pipe, reset) or stalled past ``timeout``
            logger.debug("stream client %s dropped: %s", self.client_address[0], err)
        finally:
            live.add_viewer(-1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  (http.server's signature)
        logger.debug("%s %s", self.client_address[0], format % args)


class LiveServer(ThreadingHTTPServer):
    """The HTTP server of a :class:`LiveView`; ``start`` serves from a daemon thread, leaving the context stops it."""

    daemon_threads = True

    def __init__(self, live: LiveView, host: str, port: int) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, port), _Handler)
        self.live = live
        self.page = PAGE.read_bytes()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Where to point a browser (a wildcard address is replaced by this machine's name)."""
        host, port = self.server_address[:2]
        host = socket.gethostname() if host in WILDCARDS else host
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, args=(0.2,), name="bhvit-serve", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the streams, stop accepting and close the socket."""
        self.live.close()
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
            self._thread = None
        self.server_close()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that vanished mid-response is routine: log it at debug level instead of printing a traceback."""
        logger.debug("error serving %s", client_address, exc_info=True)
