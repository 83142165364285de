"""Frame sources: images (corrupt, huge), lossless video (exact RGB frames, end, OpenCV read errors), webcam and
Pi camera (stand-in picamera2: colour order, missing camera, stalls with retry and back-off, release), and
``frames(every)`` passing over skipped frames without decoding them."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import bhvit_device_testlib as testlib  # registered by conftest.py
import numpy as np
import pytest
from bhvit.device import cli, sources
from bhvit.device.sources import (
    FrameSourceError,
    ImageFiles,
    PiCamera,
    RetryPolicy,
    VideoCapture,
    find_images,
    load_image,
    sample_images,
)
from click.testing import CliRunner
from PIL import Image

FAST = RetryPolicy(attempts=3, delay_s=0.01)


def _noise_frames(count: int, height: int = 48, width: int = 64) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (count, height, width, 3), dtype=np.uint8)


def test_image_files_skip_corrupt_and_truncated_images(tmp_path, caplog):
    good = tmp_path / "good.png"
    Image.new("RGB", (40, 30), (1, 2, 3)).save(good)
    (tmp_path / "garbage.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    Image.new("RGB", (400, 300), (9, 9, 9)).save(tmp_path / "full.jpg", quality=95)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 3])
    source = ImageFiles([tmp_path / "garbage.jpg", good, tmp_path / "truncated.jpg"])
    frames = list(source)
    assert [Path(f.name).name for f in frames] == ["good.png"]
    assert source.skipped == 2
    assert "garbage.jpg: cannot decode image" in caplog.text and "truncated.jpg" in caplog.text


def test_huge_jpeg_decodes_at_full_size_like_training(tmp_path):
    Image.new("RGB", (6000, 4000), (200, 100, 50)).save(tmp_path / "huge.jpg", quality=80)
    image = load_image(tmp_path / "huge.jpg")
    assert image.size == (6000, 4000)  # no reduced-scale (draft) decode: the model sees what training saw
    assert np.abs(np.asarray(image).astype(int).mean(axis=(0, 1)) - [200, 100, 50]).max() < 3


def test_dir_listing_keeps_images_only_sorted(tmp_path):
    for name in ["b.png", "a.JPG", "notes.txt"]:
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in find_images(tmp_path)] == ["a.JPG", "b.png"]
    assert {p.name for p in sample_images()} == {"chelsea.png", "coffee.png", "astronaut.png"}


def test_video_file_frames_are_exact_rgb_and_iteration_ends(tmp_path):
    frames = _noise_frames(12)
    path = testlib.write_video(tmp_path / "clip.avi", frames)
    with VideoCapture(str(path)) as source:
        got = [f.image for f in source]
    assert len(got) == 12
    np.testing.assert_array_equal(np.stack(got), frames)
    assert source.stop_reason is None


def test_video_that_cannot_be_decoded_is_a_source_error(tmp_path):
    (tmp_path / "bad.avi").write_bytes(b"RIFF junk")
    with pytest.raises(FrameSourceError, match="cannot open .*bad.avi: need a video file OpenCV can decode"):
        VideoCapture(str(tmp_path / "bad.avi")).open()


def test_webcam_that_cannot_open_is_retried_then_refused():
    waits = []
    source = VideoCapture(97, FAST, wait=lambda s: waits.append(s) or False)
    with pytest.raises(FrameSourceError, match="cannot open webcam:97: check the cable"):
        source.open()
    assert waits == [0.01, 0.02]


def test_picamera_frames_are_rgb_despite_rgb888_being_bgr_in_memory(fake_camera):
    cat = testlib.chelsea()[:224, :224]
    module = fake_camera([cat])
    with PiCamera(size=(224, 224)) as source:
        frame = next(iter(source))
    np.testing.assert_array_equal(frame.image, cat)
    cam = module.instances[0]
    assert cam.camera_config["main"] == {"format": "RGB888", "size": (224, 224)}
    assert cam.closed and not cam.started


def test_picamera_missing_camera_is_a_source_error_with_fix(fake_camera):
    fake_camera([testlib.chelsea()], cameras=0)
    with pytest.raises(FrameSourceError, match=r"no camera number 0 \(found 0 cameras\).*rpicam-hello --list-cameras"):
        PiCamera(retry=FAST, wait=lambda s: False).open()


def test_picamera_busy_camera_is_retried_then_reported(fake_camera, monkeypatch):
    module = fake_camera([testlib.chelsea()])
    calls = []

    def busy(self, camera_num=0, **kwargs):
        calls.append(camera_num)
        raise RuntimeError("Failed to acquire camera: Device or resource busy")

    monkeypatch.setattr(module.Picamera2, "__init__", busy)
    with pytest.raises(FrameSourceError, match="cannot open camera:0 .*busy.*no other program uses the camera"):
        PiCamera(retry=FAST, wait=lambda s: False).open()
    assert calls == [0, 0, 0]


def test_picamera_that_stalls_is_retried_then_stops_cleanly(fake_camera):
    module = fake_camera([testlib.chelsea()], fail_after=4)
    waits = []
    with PiCamera(retry=FAST, wait=lambda s: waits.append(s) or False) as source:
        frames = list(source)
    assert len(frames) == 4 and waits == [0.01, 0.02]
    assert "stopped delivering frames" in source.stop_reason and "TimeoutError" in source.stop_reason
    assert module.instances[0].closed


def test_picamera_retry_gives_up_early_when_stop_is_requested(fake_camera):
    fake_camera([testlib.chelsea()], fail_after=0)
    waits = []
    with PiCamera(retry=RetryPolicy(attempts=10), wait=lambda s: waits.append(s) or True) as source:
        assert list(source) == []
    assert len(waits) == 1


@pytest.mark.parametrize("error", [TypeError("bad argument"), NotImplementedError("todo")])
def test_programming_error_while_reading_a_camera_is_raised_at_once_not_retried(fake_camera, monkeypatch, error):
    module = fake_camera([testlib.chelsea()])
    calls, waits = [], []

    def broken(self, name="main", wait=None, signal_function=None):
        calls.append(name)
        raise error

    monkeypatch.setattr(module.Picamera2, "capture_array", broken)
    with PiCamera(retry=FAST, wait=lambda s: waits.append(s) or False) as source:
        with pytest.raises(type(error), match=str(error)):
            list(source)
    assert calls == ["main"] and waits == [] and source.stop_reason is None
    assert module.instances[0].closed


def test_programming_error_while_opening_a_camera_is_raised_at_once_not_retried(fake_camera, monkeypatch):
    module = fake_camera([testlib.chelsea()])
    calls = []

    def broken(self, camera_config=None):
        calls.append(camera_config)
        raise AttributeError("'dict' object has no attribute 'size'")

    monkeypatch.setattr(module.Picamera2, "configure", broken)
    with pytest.raises(AttributeError, match="no attribute 'size'"):
        PiCamera(retry=FAST, wait=lambda s: False).open()
    assert len(calls) == 1 and module.instances[0].closed


def test_programming_error_while_reading_a_webcam_is_raised_at_once_not_retried(monkeypatch):
    cv2 = pytest.importorskip("cv2")
    monkeypatch.setattr(cv2, "VideoCapture", _BrokenCapture)
    monkeypatch.setattr(_BrokenCapture, "read", lambda self: (True, "not an array"))
    waits = []
    with VideoCapture(0, FAST, wait=lambda s: waits.append(s) or False) as source:
        with pytest.raises(AttributeError, match="'str' object has no attribute 'ndim'"):
            list(source)
    assert waits == []


def test_picamera_without_module_explains_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)
    with pytest.raises(FrameSourceError, match="apt install python3-picamera2.*--system-site-packages"):
        PiCamera().open()


def test_retry_policy_backs_off_exponentially_with_cap():
    assert list(RetryPolicy(attempts=6, delay_s=0.5, factor=2, max_delay_s=3).delays()) == [0.5, 1, 2, 3, 3]


def test_video_without_opencv_explains_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(FrameSourceError, match="pip install opencv-python-headless"):
        VideoCapture(0).open()


class _BrokenCapture:
    """A ``cv2.VideoCapture`` stand-in that opens but whose ``read`` raises cv2.error (multi-line, as OpenCV's are)."""

    def __init__(self, target: object) -> None:
        self.released = False

    def isOpened(self) -> bool:  # noqa: N802  (OpenCV's name)
        return True

    def read(self):
        import cv2

        raise cv2.error(
            "OpenCV(5.0.0) cap_ffmpeg.cpp:1234: error: (-2:Unspecified error) decoder failed\nin function 'read'\n"
        )

    def release(self) -> None:
        self.released = True


def test_opencv_error_while_reading_a_video_stops_it_with_a_source_error(monkeypatch):
    cv2 = pytest.importorskip("cv2")
    monkeypatch.setattr(cv2, "VideoCapture", _BrokenCapture)
    with VideoCapture("clip.avi") as source:
        assert list(source) == []
    assert source.stop_reason == (
        "clip.avi: OpenCV cannot read a frame (OpenCV(5.0.0) cap_ffmpeg.cpp:1234: error: "
        "(-2:Unspecified error) decoder failed in function 'read')"
    )


def test_opencv_error_from_a_webcam_is_retried_then_stops_it(monkeypatch):
    cv2 = pytest.importorskip("cv2")
    monkeypatch.setattr(cv2, "VideoCapture", _BrokenCapture)
    waits = []
    with VideoCapture(0, FAST, wait=lambda s: waits.append(s) or False) as source:
        assert list(source) == []
    assert waits == [0.01, 0.02]
    assert source.stop_reason.startswith("webcam:0: OpenCV cannot read a frame (")
    assert source.stop_reason.endswith("decoder failed in function 'read') after 3 attempts")


def test_cli_reports_an_opencv_read_error_in_one_line_and_exits_1(artifacts, tmp_path, monkeypatch):
    cv2 = pytest.importorskip("cv2")
    video = testlib.write_video(tmp_path / "clip.avi", _noise_frames(2))
    monkeypatch.setattr(cv2, "VideoCapture", _BrokenCapture)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        cli.main, ["classify", "--video", str(video), "--artifact", str(artifacts.get(size=32))], catch_exceptions=False
    )
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [
        f"Error: {video}: OpenCV cannot read a frame (OpenCV(5.0.0) cap_ffmpeg.cpp:1234: error: "
        "(-2:Unspecified error) decoder failed in function 'read')"
    ]
    assert "frames     0" in result.stdout


def test_video_every_nth_frame_grabs_the_skipped_frames_without_decoding(tmp_path, monkeypatch):
    cv2 = pytest.importorskip("cv2")
    frames = _noise_frames(10)
    path = testlib.write_video(tmp_path / "clip.avi", frames)
    calls = {"read": 0, "grab": 0}
    real = cv2.VideoCapture

    class Counting:  # a wrapper: Python subclasses of cv2.VideoCapture crash the interpreter (OpenCV 5.0.0)
        def __init__(self, target):
            self._cap = real(target)

        def __getattr__(self, name):
            calls[name] = calls.get(name, 0) + 1
            return getattr(self._cap, name)

    monkeypatch.setattr(cv2, "VideoCapture", Counting)
    with VideoCapture(str(path)) as source:
        got = list(source.frames(every=3))
    assert [f.index for f in got] == [0, 3, 6, 9]
    np.testing.assert_array_equal(np.stack([f.image for f in got]), frames[::3])
    assert calls["read"] == 4 and calls["grab"] == 7  # grabs: frames 1, 2, 4, 5, 7, 8 and the end after frame 9
    assert source.stop_reason is None


def test_image_files_every_nth_loads_only_the_kept_images(tmp_path, monkeypatch):
    paths = []
    for i in range(7):
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGB", (8, 8), (i, i, i)).save(paths[-1])
    loaded = []
    real = sources.load_image
    monkeypatch.setattr(sources, "load_image", lambda path: loaded.append(path) or real(path))
    got = list(ImageFiles(paths).frames(every=3))
    assert loaded == paths[::3]
    assert [(f.index, f.name) for f in got] == [(i, str(paths[i])) for i in (0, 3, 6)]


def test_picamera_every_nth_frame_captures_to_keep_pace_and_yields_the_kept_ones(fake_camera):
    colours = [np.full((8, 8, 3), 10 * i, np.uint8) for i in range(7)]
    module = fake_camera(colours)
    with PiCamera(size=(8, 8)) as source:
        got = list(itertools.islice(source.frames(every=3), 3))
    assert [f.index for f in got] == [0, 3, 6]
    np.testing.assert_array_equal(np.stack([f.image for f in got]), np.stack(colours[::3]))
    assert module.instances[0].captures == 7
