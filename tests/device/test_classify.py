"""The classification loop: top-k, frame selection (skipped video frames grabbed, not decoded), graceful stop on
signals, flat memory over long runs."""

from __future__ import annotations

import os
import signal

import bhvit_device_testlib as testlib  # registered by conftest.py
import numpy as np
import pytest
from bhvit.device.artifact import load_artifact
from bhvit.device.classify import Classifier, RunStats, classify_frames, top_k
from bhvit.device.runtime import load_model
from bhvit.device.signals import GracefulStop
from bhvit.device.sources import Frame, VideoCapture


@pytest.fixture(scope="module")
def small_classifier(artifacts):
    art = load_artifact(artifacts.get(size=32))
    return Classifier(load_model(art), art.meta.preprocess, art.meta.class_names, k=2)


def _frames(count: int):
    rng = np.random.default_rng(0)
    return (Frame(i, f"f{i}", rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)) for i in range(count))


def test_top_k_returns_sorted_softmax_probabilities():
    labels = top_k(np.array([1.0, 3.0, 2.0], np.float32), ["a", "b"], 3)
    assert [name for name, _ in labels] == ["b", "class_2", "a"]
    probs = np.array([p for _, p in labels])
    assert np.all(np.diff(probs) < 0) and abs(probs.sum() - 1) < 1e-9


def test_classify_every_and_max_frames_select_frames(small_classifier):
    results = list(classify_frames(_frames(20), small_classifier, every=3, max_frames=4))
    assert [r.source for r in results] == ["f0", "f3", "f6", "f9"]
    assert [r.frame for r in results] == [0, 1, 2, 3]
    r = results[0]
    assert len(r.topk) == 2 and r.total_ms == pytest.approx(r.preprocess_ms + r.inference_ms + r.postprocess_ms)
    assert r.fps > 0 and r.rss_mb > 0
    record = r.to_record()
    assert record["label"] == r.topk[0][0] and set(record) >= {"time", "capture_ms", "inference_ms", "fps"}


def test_classify_every_nth_video_frame_decodes_only_those(small_classifier, tmp_path, monkeypatch):
    cv2 = pytest.importorskip("cv2")
    video = testlib.write_video(tmp_path / "clip.avi", np.zeros((10, 48, 64, 3), np.uint8))
    real, reads = cv2.VideoCapture, []

    class Counting:  # a wrapper: Python subclasses of cv2.VideoCapture crash the interpreter (OpenCV 5.0.0)
        def __init__(self, target):
            self._cap = real(target)

        def read(self):
            reads.append(1)
            return self._cap.read()

        def __getattr__(self, name):
            return getattr(self._cap, name)

    monkeypatch.setattr(cv2, "VideoCapture", Counting)
    with VideoCapture(str(video)) as source:
        results = list(classify_frames(source, small_classifier, every=3))
    assert len(results) == 4 and len(reads) == 4  # frames 0, 3, 6, 9; the other six are only grabbed


def test_classify_hands_each_frame_and_result_to_on_frame_before_yielding(small_classifier):
    seen = []
    for result in classify_frames(_frames(5), small_classifier, every=2, on_frame=lambda f, r: seen.append((f, r))):
        assert seen[-1][1] is result  # the hook ran before the result came out
    assert [(f.name, r.source, r.frame) for f, r in seen] == [("f0", "f0", 0), ("f2", "f2", 1), ("f4", "f4", 2)]
    assert all(f.image.shape == (48, 64, 3) for f, _ in seen)


class _RecordingStop(GracefulStop):
    """A stop flag whose ``wait`` records the pauses instead of sleeping; it asks to stop after ``stop_after``."""

    def __init__(self, stop_after: int | None = None) -> None:
        super().__init__()
        self.pauses: list[float] = []
        self.stop_after = stop_after

    def wait(self, seconds: float) -> bool:
        self.pauses.append(seconds)
        if self.stop_after is not None and len(self.pauses) >= self.stop_after:
            self.signum = signal.SIGTERM
        return self.requested


def test_classify_max_fps_waits_out_the_rest_of_each_frame_interval(small_classifier):
    stop = _RecordingStop()
    results = list(classify_frames(_frames(6), small_classifier, stop=stop, max_fps=2.0))
    assert len(results) == 6 and len(stop.pauses) == 6  # before every read but the first (the 7th finds the end)
    assert all(0 < pause <= 0.5 for pause in stop.pauses)
    unpaced = _RecordingStop()
    assert len(list(classify_frames(_frames(6), small_classifier, stop=unpaced))) == 6 and unpaced.pauses == []


def test_classify_stop_during_max_fps_pause_ends_the_loop(small_classifier):
    stop = _RecordingStop(stop_after=2)
    results = list(classify_frames(_frames(10), small_classifier, stop=stop, max_fps=1.0))
    assert len(results) == 2 and stop.name == "SIGTERM"


def test_classify_stops_after_current_frame_on_sigterm(small_classifier):
    def frames():
        for frame in _frames(100):
            if frame.index == 5:
                os.kill(os.getpid(), signal.SIGTERM)
            yield frame

    with GracefulStop() as stop:
        results = list(classify_frames(frames(), small_classifier, stop=stop))
    assert len(results) == 6 and stop.name == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_second_sigint_forces_keyboard_interrupt():
    with GracefulStop() as stop:
        os.kill(os.getpid(), signal.SIGINT)  # the first one only asks to stop
        assert stop.wait(1.0) and stop.name == "SIGINT"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            stop.wait(1.0)


def test_long_run_memory_stays_flat(small_classifier, tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (3000, 48, 64, 3), dtype=np.uint8)
    video = testlib.write_video(tmp_path / "long.avi", frames)
    del frames
    stats = RunStats()
    rss = []
    with VideoCapture(str(video)) as source:
        for result in classify_frames(source, small_classifier):
            stats.add(result)
            rss.append(result.rss_mb)
    assert stats.latency.count == 3000
    early, late = np.median(rss[400:600]), np.median(rss[-200:])
    print(f"VmRSS early {early:.2f} MiB, late {late:.2f} MiB")
    assert late - early < 2.0, f"VmRSS grew from {early:.1f} to {late:.1f} MiB over 2400 frames"
    summary = stats.summary()
    assert summary["frames"] == 3000 and summary["latency_ms"]["p50"] <= summary["latency_ms"]["p99"]
