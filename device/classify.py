"""The classification loop: frames in, top-k labels with per-stage timings out, in constant memory."""

from __future__ import annotations

import datetime as _dt
import itertools
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from .artifact import PreprocessCfg
from .metrics import LatencyRecorder, peak_rss_mb, rss_mb, ru_maxrss_mb
from .preprocess import Preprocessor
from .runtime import Model
from .signals import GracefulStop
from .sources import Frame, FrameSource

__all__ = ["Classifier", "FrameResult", "RunStats", "classify_frames", "top_k"]


def top_k(logits: np.ndarray, class_names: Sequence[str], k: int) -> tuple[tuple[str, float], ...]:
    """The k most probable (label, softmax probability) pairs; unnamed classes are called ``class_<i>``."""
    z = logits.astype(np.float64) - logits.max()
    e = np.exp(z)
    probs = e / e.sum()
    order = np.argsort(-probs, kind="stable")[:k]
    return tuple((class_names[i] if i < len(class_names) else f"class_{i}", float(probs[i])) for i in order)


@dataclass(frozen=True)
class FrameResult:
    """What one classified frame produced; all times in ms."""

    frame: int
    source: str
    topk: tuple[tuple[str, float], ...]
    capture_ms: float
    preprocess_ms: float
    inference_ms: float
    postprocess_ms: float
    total_ms: float
    fps: float
    rss_mb: float | None

    def to_record(self) -> dict:
        """Flat, JSON-ready dict for logs and ``--json`` (``total_ms`` = preprocess + inference + postprocess)."""
        record = asdict(self)
        record["topk"] = [[label, round(p, 6)] for label, p in self.topk]
        record["label"], record["prob"] = record["topk"][0]
        for key in ("capture_ms", "preprocess_ms", "inference_ms", "postprocess_ms", "total_ms", "fps", "rss_mb"):
            record[key] = round(record[key], 3) if record[key] is not None else None
        return {"time": _dt.datetime.now().isoformat(timespec="milliseconds")} | record


class Classifier:
    """Preprocess + model + top-k, timed per stage."""

    def __init__(self, model: Model, preprocess_cfg: PreprocessCfg, class_names: Sequence[str], k: int = 3) -> None:
        self.model = model
        self.preprocess = Preprocessor(preprocess_cfg)
        self.class_names = tuple(class_names)
        self.k = k

    def __call__(self, image: object) -> tuple[tuple[tuple[str, float], ...], float, float, float]:
        """(top-k, preprocess ms, inference ms, postprocess ms) for one image."""
        t0 = time.perf_counter()
        x = self.preprocess(image)
        t1 = time.perf_counter()
        logits = self.model(x)
        t2 = time.perf_counter()
        labels = top_k(logits, self.class_names, self.k)
        t3 = time.perf_counter()
        return labels, (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3


def classify_frames(
    frames: Iterable[Frame],
    classifier: Classifier,
    every: int = 1,
    max_frames: int | None = None,
    stop: GracefulStop | None = None,
    max_fps: float | None = None,
    on_frame: Callable[[Frame, FrameResult], None] | None = None,
) -> Iterator[FrameResult]:
    """Classify every ``every``-th frame until the source ends, ``max_frames`` are done or a stop is requested.

    A :class:`FrameSource` passes over the skipped frames without decoding them (``capture_ms`` includes that).
    ``max_fps`` paces the loop (it waits before reading the next frame; ``fps`` counts the wait). ``on_frame``
    sees each frame with its result before the result is yielded; it runs in the loop, so it must be quick.
    """
    iterator = frames.frames(every) if isinstance(frames, FrameSource) else itertools.islice(frames, 0, None, every)
    wait = (stop or GracefulStop()).wait  # an unentered GracefulStop just sleeps
    interval = 1.0 / max_fps if max_fps else 0.0
    done = 0
    last = due = time.perf_counter()
    while (stop is None or not stop.requested) and (max_frames is None or done < max_frames):
        if (pause := due - time.perf_counter()) > 0 and wait(pause):
            return
        t0 = time.perf_counter()
        due = t0 + interval
        frame = next(iterator, None)
        if frame is None:
            return
        capture_ms = (time.perf_counter() - t0) * 1e3
        labels, pre_ms, inf_ms, post_ms = classifier(frame.image)
        now = time.perf_counter()
        result = FrameResult(
            frame=done,
            source=frame.name,
            topk=labels,
            capture_ms=capture_ms,
            preprocess_ms=pre_ms,
            inference_ms=inf_ms,
            postprocess_ms=post_ms,
            total_ms=pre_ms + inf_ms + post_ms,
            fps=1.0 / max(now - last, 1e-9),
            rss_mb=rss_mb(),
        )
        if on_frame is not None:
            on_frame(frame, result)
        yield result
        last = now
        done += 1


class RunStats:
    """Accumulates frame results into the end-of-run summary (constant memory)."""

    def __init__(self) -> None:
        self.latency = LatencyRecorder()
        self.inference = LatencyRecorder()
        self.restart()

    def restart(self) -> None:
        """Start the clock of the mean FPS now (when the source has been opened)."""
        self.started = time.perf_counter()

    def add(self, result: FrameResult) -> None:
        self.latency.add(result.total_ms)
        self.inference.add(result.inference_ms)

    def summary(self, **extra: object) -> dict:
        """frames, latency and inference percentiles (ms), mean FPS, peak RSS (VmHWM, ru_maxrss) plus ``extra``."""
        elapsed = time.perf_counter() - self.started
        return {
            "frames": self.latency.count,
            "latency_ms": self.latency.summary(),
            "inference_ms": self.inference.summary(),
            "fps": self.latency.count / elapsed if elapsed > 0 else None,
            "peak_rss_mb": peak_rss_mb(),
            "ru_maxrss_mb": ru_maxrss_mb(),
        } | extra
