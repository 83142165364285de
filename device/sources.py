"""Frame sources behind one interface: Pi camera (picamera2), OpenCV webcam or video file, image files.

Every source is a context manager that yields :class:`Frame` objects holding RGB images; ``frames(every)``
passes over skipped frames without decoding them. Live sources (cameras) retry failed opens and reads with
exponential back-off; a source that fails ends the iteration cleanly, recording why in ``stop_reason``. Only
:class:`FrameSourceError` (what a device or file reports, translated by each source) is retried: any other exception
is a bug and propagates at once.
``picamera2`` and ``cv2`` are imported only when such a source is opened.
"""

from __future__ import annotations

import functools
import itertools
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

__all__ = [
    "IMAGE_SUFFIXES",
    "SAMPLES_DIR",
    "Frame",
    "FrameSource",
    "ImageFiles",
    "PiCamera",
    "RetryPolicy",
    "FrameSourceError",
    "StreamSource",
    "VideoCapture",
    "find_images",
    "load_image",
    "sample_images",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
SAMPLES_DIR = Path(__file__).parent / "samples"
NO_PICAMERA2 = (
    "picamera2 is not importable: on Raspberry Pi OS run `sudo apt install python3-picamera2` and "
    "create the venv with `python3 -m venv --system-site-packages`"
)
NO_OPENCV = "OpenCV is not importable: --webcam and --video need `pip install opencv-python-headless`"

T = TypeVar("T")
Wait = Callable[[float], bool]


def _sleep(seconds: float) -> bool:
    time.sleep(seconds)
    return False


class FrameSourceError(Exception):
    """A source that cannot be opened or read; the message names it and, where it can, says how to fix it."""


class _EndOfStream(Exception):
    """A video file has no more frames."""


def _camera_error(err: Exception) -> bool:
    """True for what picamera2/libcamera raise for a busy, missing or stalled camera (RuntimeError, OSError such as
    TimeoutError), False for bugs (including NotImplementedError and RecursionError, which are RuntimeErrors too)."""
    return isinstance(err, (RuntimeError, OSError)) and not isinstance(err, (NotImplementedError, RecursionError))


@dataclass(frozen=True)
class Frame:
    """One RGB frame (uint8 H×W×3 array, or a PIL image for files) and where it came from."""

    index: int
    name: str
    image: np.ndarray | Image.Image


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` tries in all, waiting ``delay_s``, then ``factor`` times longer each time, capped."""

    attempts: int = 5
    delay_s: float = 0.2
    factor: float = 2.0
    max_delay_s: float = 2.0

    def delays(self) -> Iterator[float]:
        """The waits between attempts (``attempts - 1`` of them)."""
        delay = self.delay_s
        for _ in range(self.attempts - 1):
            yield min(delay, self.max_delay_s)
            delay *= self.factor


DEFAULT_RETRY = RetryPolicy()


def _retry(action: Callable[[], T], policy: RetryPolicy, wait: Wait, what: str) -> T:
    """Run ``action`` until it succeeds; re-raise the last :class:`FrameSourceError` when attempts run out or a stop is
    requested. Other exceptions are not retried."""
    delays = policy.delays()
    while True:
        try:
            return action()
        except FrameSourceError as err:
            delay = next(delays, None)
            if delay is None:
                raise
            logger.warning("%s failed (%s); retrying in %.1f s", what, err, delay)
            if wait(delay):
                raise


class FrameSource(ABC):
    """Iterable of frames; use as a context manager so devices are always released."""

    def __init__(self) -> None:
        self.skipped = 0
        self.stop_reason: str | None = None

    def __enter__(self) -> FrameSource:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Acquire the device or file (default: nothing to do)."""

    def close(self) -> None:
        """Release it (default: nothing to do)."""

    def __iter__(self) -> Iterator[Frame]:
        return self.frames()

    @abstractmethod
    def frames(self, every: int = 1) -> Iterator[Frame]:
        """Every ``every``-th frame (``Frame.index`` counts all of them); the others are not decoded."""


class StreamSource(FrameSource):
    """A source read one frame at a time (camera, webcam, video file); subclasses implement ``_read``.

    The one frame loop: reads are retried per ``retry``; a read that still fails ends the iteration with
    ``stop_reason`` set, the end of a video file ends it without.
    """

    def __init__(self, name: str, live: bool, retry: RetryPolicy, wait: Wait) -> None:
        super().__init__()
        self.name = name
        self.live = live
        self.retry = retry
        self.wait = wait

    @abstractmethod
    def _read(self, decode: bool) -> np.ndarray | None:
        """The next frame as RGB, or (``decode`` False) skip it as cheaply as the device allows and return None.

        Raises :class:`FrameSourceError` naming the source when it fails, ``_EndOfStream`` after a file's last frame.
        """

    def frames(self, every: int = 1) -> Iterator[Frame]:
        for index in itertools.count():
            keep = index % every == 0
            try:
                image = _retry(functools.partial(self._read, keep), self.retry, self.wait, f"reading {self.name}")
            except _EndOfStream:
                logger.info("%s ended after %d frames", self.name, index)
                return
            except FrameSourceError as err:
                self.stop_reason = f"{err} after {self.retry.attempts} attempts" if self.live else str(err)
                logger.error("%s; stopping", self.stop_reason)
                return
            if keep:
                yield Frame(index, self.name, image)


def find_images(directory: Path) -> list[Path]:
    """Image files directly in ``directory``, sorted by name."""
    return sorted(p for p in Path(directory).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def sample_images() -> list[Path]:
    """The photos shipped in ``bhvit/device/samples``."""
    return find_images(SAMPLES_DIR)


def load_image(path: Path) -> Image.Image:
    """Decode an image file at full size, as training does.

    No libjpeg draft (reduced-scale) decoding: on a 3200x2134 photo it moved the model input by 2/255 on average
    and up to 0.67 in normalised units from the training transform, and saved ~90 ms of a ~125 ms decode."""
    image = Image.open(path)
    image.load()
    return image


class ImageFiles(FrameSource):
    """Image files in order (``frames(every)`` opens only every ``every``-th). Unreadable ones are skipped with a
    warning."""

    def __init__(self, paths: Sequence[Path]) -> None:
        super().__init__()
        self.paths = [Path(p) for p in paths]

    def frames(self, every: int = 1) -> Iterator[Frame]:
        for index in range(0, len(self.paths), every):
            path = self.paths[index]
            try:
                image = load_image(path)
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
                self.skipped += 1
                logger.warning("skipping %s: cannot decode image (%s)", path, err)
                continue
            yield Frame(index, str(path), image)


class VideoCapture(StreamSource):
    """OpenCV ``VideoCapture``: a video file (ends at its last frame) or a webcam index (live, retried).

    Skipped frames are only grabbed (``cap.grab()``), not decoded.
    """

    def __init__(self, target: str | int, retry: RetryPolicy = DEFAULT_RETRY, wait: Wait = _sleep) -> None:
        live = isinstance(target, int)
        super().__init__(
            f"webcam:{target}" if live else str(target), live, retry if live else RetryPolicy(attempts=1), wait
        )  # a file that fails will not recover
        self.target = target
        self._cap: Any = None
        self._cv2_errors: tuple[type[Exception], ...] = ()  # (cv2.error,) once opened

    def _open_once(self, cv2: Any) -> Any:
        try:
            cap = cv2.VideoCapture(self.target)
        except cv2.error as err:
            raise FrameSourceError(f"cannot open {self.name} ({' '.join(str(err).split())})") from err
        if not cap.isOpened():
            cap.release()
            raise FrameSourceError(f"cannot open {self.name}")
        return cap

    def open(self) -> None:
        try:
            import cv2
        except ImportError as err:
            raise FrameSourceError(NO_OPENCV) from err
        self._cv2_errors = (cv2.error,)
        try:
            self._cap = _retry(lambda: self._open_once(cv2), self.retry, self.wait, f"opening {self.name}")
        except FrameSourceError as err:
            fix = "check the cable and `ls /dev/video*`" if self.live else "need a video file OpenCV can decode"
            raise FrameSourceError(f"{err}: {fix}") from err

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def _read(self, decode: bool) -> np.ndarray | None:
        try:
            ok, bgr = self._cap.read() if decode else (self._cap.grab(), None)
        except self._cv2_errors as err:
            raise FrameSourceError(f"{self.name}: OpenCV cannot read a frame ({' '.join(str(err).split())})") from err
        if not ok or (decode and bgr is None):
            if self.live:
                raise FrameSourceError(f"{self.name} delivered no frame")
            raise _EndOfStream
        if not decode:
            return None
        return bgr[..., ::-1] if bgr.ndim == 3 and bgr.shape[2] == 3 else bgr


class PiCamera(StreamSource):
    """Raspberry Pi camera through picamera2, main stream ``RGB888`` (B,G,R in memory, swapped to RGB here).

    Skipped frames are captured (to keep pace with the camera) but not converted.
    """

    def __init__(
        self,
        camera_num: int = 0,
        size: tuple[int, int] = (640, 480),
        preview: bool = False,
        capture_timeout_s: float = 5.0,
        retry: RetryPolicy = DEFAULT_RETRY,
        wait: Wait = _sleep,
    ) -> None:
        super().__init__(f"camera:{camera_num}", True, retry, wait)
        self.camera_num = camera_num
        self.size = size
        self.preview = preview
        self.capture_timeout_s = capture_timeout_s
        self._cam: Any = None

    def _open_once(self, Picamera2: Any) -> Any:  # noqa: N803  (the class from the lazily imported module)
        cameras = Picamera2.global_camera_info()
        if self.camera_num >= len(cameras):
            raise FrameSourceError(
                f"no camera number {self.camera_num} (found {len(cameras)} cameras): check the "
                f"ribbon cable and `rpicam-hello --list-cameras`"
            )
        try:
            cam = Picamera2(camera_num=self.camera_num)
            try:
                cam.configure(cam.create_preview_configuration(main={"format": "RGB888", "size": self.size}))
                cam.start(show_preview=self.preview)
            except BaseException:
                cam.close()
                raise
        except Exception as err:
            if not _camera_error(err):
                raise
            raise FrameSourceError(
                f"cannot open {self.name} ({err}): check `rpicam-hello --list-cameras` and that "
                f"no other program uses the camera"
            ) from err
        return cam

    def open(self) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError as err:
            raise FrameSourceError(NO_PICAMERA2) from err
        self._cam = _retry(lambda: self._open_once(Picamera2), self.retry, self.wait, f"opening {self.name}")
        logger.info("opened %s at %dx%d", self.name, *self.size)

    def close(self) -> None:
        if self._cam is not None:
            try:
                self._cam.stop()
            finally:
                self._cam.close()
                self._cam = None

    def _read(self, decode: bool) -> np.ndarray | None:
        try:
            bgr = self._cam.capture_array("main", wait=self.capture_timeout_s)
        except Exception as err:  # picamera2 raises TimeoutError when ``wait`` expires, libcamera RuntimeError
            if not _camera_error(err):
                raise
            raise FrameSourceError(f"{self.name} stopped delivering frames ({err!r})") from err
        return bgr[..., 2::-1] if decode else None
