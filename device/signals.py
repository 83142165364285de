"""Graceful stop on SIGINT/SIGTERM: the first signal asks the loop to finish the current frame and exit;
a second SIGINT raises KeyboardInterrupt to force it."""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType

logger = logging.getLogger(__name__)

__all__ = ["GracefulStop"]


class GracefulStop:
    """Context manager that turns SIGINT/SIGTERM into a flag (handlers are installed in the main thread only)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str | None:
        return signal.Signals(self.signum).name if self.signum is not None else None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        logger.warning(
            "%s received: stopping after the current frame (Ctrl-C again to force)", signal.Signals(signum).name
        )

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, waking early on a stop request; True if a stop was requested."""
        deadline = time.monotonic() + seconds
        while not self.requested and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.05))
        return self.requested

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
