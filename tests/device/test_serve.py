"""bhvit-device serve: frame rendering, the HTTP endpoints (urllib), slow and vanished stream clients, the CLI
(port in use, exposure warning, camera stopped on SIGTERM, serving on after the source ends) and the page in a
real headless Chromium driven by playwright against the installed script on a generated video.

Only loopback addresses and OS-chosen free ports are used; every wait has a deadline. The exposure warning is
checked without listening on a public address (``is_loopback`` is patched for that one test).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import bhvit_device_testlib as testlib  # registered by conftest.py
import numpy as np
import pytest
from bhvit.device import cli, serve
from bhvit.device.classify import FrameResult
from bhvit.device.sources import Frame
from click.testing import CliRunner
from PIL import Image

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _until(condition: Callable[[], object], timeout: float = 30.0, what: str = "condition") -> object:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _get(url: str, timeout: float = 10.0) -> tuple[str, bytes]:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.headers["Content-Type"], response.read()


def _status(url: str) -> dict:
    return json.loads(_get(url + "api/status")[1])


def _mjpeg_frames(url: str, count: int, timeout: float = 20.0) -> list[bytes]:
    """The first ``count`` JPEG parts of ``url``stream.mjpg, parsed by their Content-Length headers."""
    with urllib.request.urlopen(url + "stream.mjpg", timeout=timeout) as response:
        kind = response.headers["Content-Type"]
        assert kind.startswith("multipart/x-mixed-replace; boundary="), kind
        boundary = kind.split("boundary=")[1].encode()
        frames = []
        while len(frames) < count:
            assert response.readline().strip() == b"--" + boundary
            headers = {}
            while line := response.readline().strip():
                key, _, value = line.decode().partition(":")
                headers[key.lower()] = value.strip()
            assert headers["content-type"] == "image/jpeg"
            frames.append(response.read(int(headers["content-length"])))
            assert response.readline() == b"\r\n"
    return frames


def _result(frame: int, topk=(("Bengal", 0.7), ("pug", 0.2))) -> FrameResult:
    return FrameResult(frame, "test", tuple(topk), 1.0, 2.0, 3.0, 0.5, 5.5, 20.0, 100.0)


# -- rendering --------------------------------------------------------------------------------------------------


def test_render_frame_draws_labels_top_left_and_leaves_the_frame_untouched():
    rgb = testlib.chelsea()
    before = rgb.copy()
    jpeg = serve.render_frame(rgb, [("Bengal", 0.91), ("pug", 0.05)])
    assert np.array_equal(rgb, before)
    image = np.asarray(Image.open(io.BytesIO(jpeg)))
    assert image.shape == rgb.shape  # already inside the 800 px box
    corner = np.abs(image[:20, :40].astype(int) - rgb[:20, :40]).mean()
    rest = np.abs(image[-100:, -100:].astype(int) - rgb[-100:, -100:]).mean()
    assert corner > 20 > 4 > rest  # the label box changed the corner, elsewhere only JPEG noise


def test_render_frame_shrinks_large_frames_and_takes_pil_and_grayscale():
    big = serve.render_frame(Image.new("RGB", (1600, 1200), "green"), [("a", 1.0)])
    assert Image.open(io.BytesIO(big)).size == (800, 600)
    gray = serve.render_frame(np.zeros((60, 80), np.uint8), [("a", 1.0)])
    assert Image.open(io.BytesIO(gray)).mode == "RGB"


def test_is_loopback_only_for_this_machine():
    assert all(serve.is_loopback(h) for h in ("127.0.0.1", "127.0.0.2", "::1", "localhost"))
    assert not any(serve.is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.5", "raspberrypi.local"))


# -- the server in this process, fed synthetic frames ------------------------------------------------------------


@pytest.fixture
def live_server() -> Iterator[tuple[serve.LiveView, str]]:
    live = serve.LiveView({"source": "test"}, lambda: {"frames": -1})
    with serve.LiveServer(live, "127.0.0.1", 0) as server:
        server.start()
        yield live, server.url


def test_endpoints_serve_page_status_stream_and_404(live_server):
    live, url = live_server
    kind, page = _get(url)
    assert kind.startswith("text/html") and b"stream.mjpg" in page and b"api/status" in page
    assert b"http://" not in page and b"https://" not in page  # nothing fetched from elsewhere: works offline
    status = _status(url)
    assert status["running"] and status["latest"] is None and status["frames"] == 0
    image = testlib.chelsea()
    for i in range(3):
        live.publish(Frame(i, "test", image), _result(i))
    status = _status(url)
    assert status["frames"] == 3 and status["latest"]["topk"] == [["Bengal", 0.7], ["pug", 0.2]]
    assert status["source"] == "test" and status["summary"] == {"frames": -1}
    assert [h["frame"] for h in status["history"]] == [0, 1, 2] and status["history"][0]["inference_ms"] == 3.0
    (jpeg,) = _mjpeg_frames(url, 1)  # a new client gets the latest frame at once
    assert Image.open(io.BytesIO(jpeg)).size == (image.shape[1], image.shape[0])
    with pytest.raises(urllib.error.HTTPError) as err:
        _get(url + "nothing")
    assert err.value.code == 404
    live.finish({"frames": 3, "stopped": None})
    status = _status(url)
    assert not status["running"] and status["summary"]["frames"] == 3
    assert len(_mjpeg_frames(url, 1)) == 1  # after the loop the last frame stays available


def test_stream_clients_skip_to_the_newest_frame_and_each_frame_is_encoded_once(live_server, monkeypatch):
    live, url = live_server
    encoded = []
    real = serve.render_frame
    monkeypatch.setattr(serve, "render_frame", lambda image, topk: encoded.append(1) or real(image, topk))
    image = testlib.chelsea()
    live.publish(Frame(0, "test", image), _result(0))
    first = live.next_jpeg(0, 1.0)
    for i in range(1, 6):  # five frames while nobody asks
        live.publish(Frame(i, "test", image), _result(i))
    again, newest = live.next_jpeg(0, 1.0), live.next_jpeg(first[0], 1.0)
    assert first[0] == 1 and again[0] == newest[0] == 6 and again[1] is newest[1]
    assert len(encoded) == 2  # frame 1 and frame 6; frames 2-5 were never encoded
    assert live.next_jpeg(6, 0.05) is None  # nothing newer: the wait times out


def test_vanished_and_stalled_clients_are_dropped_while_frames_keep_flowing(live_server, monkeypatch):
    live, url = live_server
    monkeypatch.setattr(serve._Handler, "timeout", 1.0)  # drop a stalled client after 1 s instead of 10
    port = int(url.rsplit(":", 1)[1].strip("/"))
    noise = np.random.default_rng(0).integers(0, 256, (800, 800, 3), dtype=np.uint8)  # ~1 MiB JPEGs
    published = 0

    def publish_until(viewers: int, what: str) -> None:
        """Publish frames as the loop does (never waiting for a client) until ``viewers`` streams are open."""
        nonlocal published
        deadline = time.monotonic() + 60
        while _status(url)["viewers"] != viewers:
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            live.publish(Frame(published, "noise", noise), _result(published))
            published += 1
            time.sleep(0.02)

    request = b"GET /stream.mjpg HTTP/1.0\r\n\r\n"
    gone = socket.create_connection(("127.0.0.1", port))
    gone.sendall(request)
    publish_until(1, "the first client")
    assert gone.recv(1000).startswith(b"HTTP/1.0 200")
    gone.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # close with RST
    gone.close()
    publish_until(0, "the vanished client to be dropped")
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # and it never reads: the server's send blocks
    stalled.connect(("127.0.0.1", port))
    stalled.sendall(request)
    try:
        publish_until(1, "the stalled client")
        before = published
        publish_until(0, "the stalled client to be dropped")
        assert published > before
    finally:
        stalled.close()
    assert len(_mjpeg_frames(url, 1)) == 1  # a new client is still served


# -- the command, in this process ---------------------------------------------------------------------------------


@pytest.fixture
def run_serve(tmp_path, monkeypatch):
    """Invoke ``bhvit-device serve`` with CliRunner; ``with_server(url -> None)`` runs in a thread once it listens
    and must end by sending a signal (SIGTERM is sent anyway after it returns or fails)."""
    monkeypatch.chdir(tmp_path)
    servers: list[serve.LiveServer] = []
    real_start = serve.LiveServer.start
    monkeypatch.setattr(serve.LiveServer, "start", lambda self: servers.append(self) or real_start(self))

    def invoke(*args: object, with_server: Callable[[str], None] | None = None):
        errors: list[BaseException] = []
        done = threading.Event()

        def drive() -> None:
            try:
                _until(lambda: servers or done.is_set(), what="the server to start")
                if servers:
                    with_server(servers[0].url)
            except BaseException as err:  # re-raised in the test's thread below
                errors.append(err)
            finally:
                if not done.is_set():
                    os.kill(os.getpid(), signal.SIGTERM)

        thread = threading.Thread(target=drive, daemon=True)
        # serve's own handler replaces this one while it runs; a SIGTERM sent after it returned is ignored
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
        try:
            if with_server:
                thread.start()
            result = CliRunner().invoke(cli.main, ["serve", "--port", "0", *map(str, args)], catch_exceptions=False)
            done.set()
            if with_server:
                thread.join(60)
        finally:
            signal.signal(signal.SIGTERM, previous)
        if errors:
            raise errors[0]
        return result, servers

    return invoke


def test_serve_help_says_there_is_no_authentication():
    text = " ".join(CliRunner().invoke(cli.main, ["serve", "--help"]).output.split())
    assert "NO AUTHENTICATION" in text and "ssh -L 8080:localhost:8080" in text and "[default: 8080" in text


def test_serve_refuses_a_port_in_use(run_serve, artifacts):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result, _ = run_serve("--artifact", artifacts.get(size=32), "--port", taken.getsockname()[1])
    assert result.exit_code == 2 and "cannot listen on 127.0.0.1:" in result.output and "--port" in result.output


def test_serve_warns_when_the_address_is_not_loopback(run_serve, artifacts, monkeypatch):
    monkeypatch.setattr(cli, "is_loopback", lambda host: False)  # listening stays on 127.0.0.1
    result, _ = run_serve("--artifact", artifacts.get(size=32), "--dir", testlib.SAMPLES, "--exit-at-end")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if "anyone on the network" in line]
    assert len(warnings) == 1 and "no authentication" in warnings[0]
    assert "frames     3" in result.stdout  # the three sample photos, then it exited at their end


def test_serve_stops_camera_loop_and_server_on_sigterm(run_serve, artifacts, fake_camera, tmp_path):
    module = fake_camera([testlib.chelsea(), testlib.chelsea()[::-1]])  # alternating frames
    seen = {}

    def watch(url: str) -> None:
        _until(lambda: _status(url)["frames"] >= 3, what="3 frames")
        seen["frames"] = _mjpeg_frames(url, 2)
        seen["status"] = _status(url)

    result, servers = run_serve(
        "--artifact", artifacts.get(size=32), "--camera", "--log", tmp_path / "f.jsonl", "--top-k", 2, with_server=watch
    )
    assert result.exit_code == 0, result.output
    assert "stopped    SIGTERM" in result.stdout and "SIGTERM received" in result.stderr
    cam = module.instances[0]
    assert cam.closed and not cam.started
    assert len(seen["frames"]) == 2 and seen["frames"][0] != seen["frames"][1]
    assert seen["status"]["source"] == "camera:0" and len(seen["status"]["latest"]["topk"]) == 2
    assert (tmp_path / "f.jsonl").read_text().count("\n") == int(result.stdout.split("frames     ")[1].split()[0])
    with pytest.raises(OSError):  # the server is gone too
        socket.create_connection(servers[0].server_address, timeout=2).close()


def test_serve_keeps_showing_the_last_frame_after_the_video_ends(run_serve, artifacts, tmp_path):
    video = testlib.pan_video(tmp_path / "short.avi", 4)
    seen = {}

    def ended(url: str) -> dict | None:
        status = _status(url)
        return None if status["running"] else status

    def watch(url: str) -> None:
        seen["status"] = _until(lambda: ended(url), what="the end of the video")
        seen["frame"] = _mjpeg_frames(url, 1)

    result, _ = run_serve("--artifact", artifacts.get(size=32), "--video", video, with_server=watch)
    assert result.exit_code == 0, result.output
    assert seen["status"]["frames"] == 4 and seen["status"]["summary"]["frames"] == 4
    assert seen["status"]["summary"]["stopped"] is None and len(seen["frame"]) == 1
    assert "still serving the last frame" in result.stderr and result.stdout.count("-- summary --") == 1


# -- the installed script on a generated video, over HTTP and in a headless browser -------------------------------


@pytest.fixture(scope="module")
def served(artifacts, tmp_path_factory) -> Iterator[dict]:
    """``bhvit-device serve`` in its own process on a 1200-frame video paced at 10 FPS (2 minutes of frames)."""
    root = tmp_path_factory.mktemp("served")
    video = testlib.pan_video(root / "pan.avi", 1200)
    out, err = (root / "stdout.txt").open("w"), (root / "stderr.txt").open("w")
    command = [*testlib.device_command(), "serve", "--video", video, "--artifact", artifacts.get(size=32)]
    options = ["--port", "0", "--max-fps", "10", "--top-k", "2", "--log", root / "frames.csv"]
    proc = subprocess.Popen([*command, *map(str, options)], stdout=out, stderr=err, cwd=root)
    try:
        line = _until(
            lambda: proc.poll() is None and next((s for s in (root / "stderr.txt").open() if "serving on" in s), None),
            timeout=60,
            what="the server's address",
        )
        yield {"url": line.split()[2], "proc": proc, "root": root}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        out.close()
        err.close()


def test_served_status_reports_latest_labels_summary_and_history(served):
    url = served["url"]
    first = _until(lambda: (s := _status(url))["latest"] and s, what="a first frame")
    later = _until(lambda: (s := _status(url))["frames"] > first["frames"] and s, what="another frame")
    assert later["running"] and later["source"].endswith("pan.avi") and later["model"] == "tiny_test"
    labels = [label for label, _ in later["latest"]["topk"]]
    assert len(labels) == 2 and set(labels) <= set(testlib.PETS)
    assert later["latest"]["total_ms"] > 0 and later["latest"]["rss_mb"] > 0 and later["latest"]["fps"] < 15
    assert 0 < len(later["history"]) <= serve.HISTORY and later["history"][-1]["frame"] == later["latest"]["frame"]
    summary = _until(lambda: (s := _status(url)["summary"])["frames"] and s, what="the running summary")
    assert summary["latency_ms"]["p50"] > 0 and summary["peak_rss_mb"] > 0


def test_served_stream_delivers_changing_jpeg_frames(served):
    frames = _mjpeg_frames(served["url"], 3)
    images = [np.asarray(Image.open(io.BytesIO(jpeg))) for jpeg in frames]
    assert all(image.shape == (60, 80, 3) for image in images)
    assert not np.array_equal(images[0], images[2])  # the pan moved on


_STREAM_PIXELS = """() => {
    const img = document.getElementById("stream"), canvas = document.createElement("canvas");
    canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
    canvas.getContext("2d").drawImage(img, 0, 0);
    return canvas.toDataURL("image/png");
}"""
_FRAME_NUMBER = "() => parseInt(document.getElementById('frame').textContent.slice(1))"


@pytest.fixture(scope="module")
def browser():
    # the README's install installs both, so a missing one fails rather than skips (a skip would hide a broken
    # install step); leave the test out explicitly with -m "not browser"
    deselect = 'or leave this test out with -m "not browser"'
    try:
        from playwright import sync_api
    except ImportError:
        pytest.fail(f"the browser test needs playwright: pip install -e '.[dev]' {deselect}")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: scripts/install.sh installs Debian's chromium package {deselect}")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)
        try:
            yield chromium
        finally:
            chromium.close()


def _open(browser, url: str):
    page = browser.new_context(viewport={"width": 1100, "height": 800}).new_page()
    page.set_default_timeout(30_000)
    page.goto(url)
    page.wait_for_function("document.getElementById('stream').naturalWidth > 0")
    return page


@pytest.mark.timeout(240)
@pytest.mark.browser
def test_browser_shows_stream_labels_and_latency_and_survives_a_closed_client(served, browser):
    url = served["url"]
    first = _open(browser, url)
    assert first.title() == "bhvit live"
    first.wait_for_function("document.querySelectorAll('#labels .name').length == 2")
    assert set(first.locator("#labels .name").all_inner_texts()) <= set(testlib.PETS)
    shown = first.evaluate(_FRAME_NUMBER)
    first.wait_for_function(f"({_FRAME_NUMBER})() > {shown}")  # the latency view updates without reloading
    for cell in ("#pre", "#inf", "#total"):
        assert first.inner_text(cell).endswith(" ms") and float(first.inner_text(cell).split()[0]) >= 0
    assert first.inner_text("#rss").endswith(" MiB") and float(first.inner_text("#fps")) > 0
    assert first.inner_text("#state") == "live" and int(first.inner_text("#span")) > 0
    pixels = first.evaluate(_STREAM_PIXELS)
    first.wait_for_function(f"({_STREAM_PIXELS})() !== {json.dumps(pixels)}")  # the <img> shows new frames

    second = _open(browser, url)
    _until(lambda: _status(url)["viewers"] == 2, what="two stream viewers")
    first.context.close()  # the first browser goes away mid-stream
    _until(lambda: _status(url)["viewers"] == 1, what="the closed client to be dropped")
    frames = _status(url)["frames"]
    _until(lambda: _status(url)["frames"] >= frames + 5, what="the loop to go on")
    shown = second.evaluate(_FRAME_NUMBER)
    second.wait_for_function(f"({_FRAME_NUMBER})() > {shown}")
    assert second.inner_text("#viewers") == "1 stream"
    second.context.close()
    assert served["proc"].poll() is None


def test_served_log_has_a_row_per_classified_frame_so_far(served):
    frames = _status(served["url"])["summary"]["frames"]
    rows = list(csv.DictReader((served["root"] / "frames.csv").open()))
    assert len(rows) >= frames > 0 and rows[0]["label"] in testlib.PETS
