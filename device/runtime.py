"""Run a compiled artifact: TVM's runtime through ``tvm_ffi`` alone, or onnxruntime. Both are imported lazily.

TVM: the ``tvm`` Python package is not imported at all (even in runtime-only mode it costs about 35 MiB of RSS on
top of ``tvm_ffi``); its ``libtvm_runtime`` is loaded next to ``tvm_ffi`` and the library's Relax VM is driven
through its packed functions (``vm_load_executable``, ``vm_initialization``, ``main``). These are internal names,
stable for the pinned TVM. ``main`` takes one float32 NCHW tensor, then the artifact's weights (format 2), and
returns logits, possibly wrapped in a 1-tuple.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .artifact import LIBRARY_SUFFIX, Artifact, ArtifactError
from .weights import ALIGNMENT, aligned_empty, map_weights

logger = logging.getLogger(__name__)

__all__ = [
    "RUNTIMES",
    "THREADS_ENV",
    "Model",
    "OnnxModel",
    "TvmModel",
    "load_model",
    "resolve_threads",
    "tvm_ffi_with_runtime",
]

RUNTIMES = tuple(LIBRARY_SUFFIX)
_CPU = 1  # DLDeviceType kDLCPU
_POOLED_ALLOCATOR = 2  # the VM keeps freed storage for the next call instead of returning it to the OS
_BOUND_MAIN = "main_bound"  # the name under which the VM keeps main with its arguments bound
THREADS_ENV = "TVM_NUM_THREADS"


class Model(Protocol):
    """A loaded classifier: (1, 3, H, W) float32 in, 1-D float32 logits out."""

    runtime: str
    threads: int

    def __call__(self, x: np.ndarray) -> np.ndarray: ...


# Optional packages tvm_ffi imports eagerly when they are installed, none of which the device needs: torch (about
# 500 MiB of RSS and seconds of start-up on a development machine), ml_dtypes (seconds of start-up) and the CUDA
# driver bindings. tvm_ffi tolerates an ImportError for each.
_UNNEEDED = ("torch", "ml_dtypes", "cuda")


def _import_hiding_unneeded(name: str) -> Any:
    """Import ``name`` with the packages of :data:`_UNNEEDED` hidden (those already imported stay visible)."""
    hidden = [m for m in _UNNEEDED if m not in sys.modules]
    sys.modules.update(dict.fromkeys(hidden))
    try:
        return importlib.import_module(name)
    finally:
        for m in hidden:
            del sys.modules[m]


def tvm_ffi_with_runtime() -> Any:
    """``tvm_ffi`` with TVM's runtime library loaded (no ``tvm`` package, no compiler)."""
    # tvm_ffi would otherwise build/load a torch DLPack bridge when torch happens to be installed.
    os.environ.setdefault("TVM_FFI_DISABLE_TORCH_C_DLPACK", "1")
    try:
        ffi = _import_hiding_unneeded("tvm_ffi")
        spec = importlib.util.find_spec("tvm")
    except ImportError as err:
        raise ArtifactError(f"runtime tvm is not installed: {err}; need `pip install apache-tvm`") from err
    if "tvm" not in sys.modules:  # `import tvm` (the compiler) has loaded the runtime already
        if spec is None or not spec.submodule_search_locations:
            raise ArtifactError("runtime tvm is not installed: found no tvm package, need `pip install apache-tvm`")
        library = Path(next(iter(spec.submodule_search_locations))) / "lib" / "libtvm_runtime.so"
        try:
            ctypes.CDLL(str(library), ctypes.RTLD_GLOBAL)
        except OSError as err:
            raise ArtifactError(f"cannot load TVM's runtime library: {err}") from err
    return ffi


def _first_tensor(value: Any) -> Any:
    """Unwrap a VM result: a tensor, or a (nested) 1-tuple/Array holding one."""
    while not hasattr(value, "__dlpack__"):
        value = value[0]
    return value


_SHARE_ALL_CORES = -3  # ThreadGroup::kSpecifyThreadShareAllCore


def _configure_threads(ffi: Any, threads: int) -> None:
    """Give this thread's TVM pool ``threads`` threads that share every CPU this process may run on.

    TVM sizes a thread's pool from ``TVM_NUM_THREADS`` when the pool starts (``runtime.NumThreads`` starts it, unless
    an earlier model in this thread did), so the variable is set for that and the user's environment restored
    afterwards. The CPU list given next matters twice: TVM runs a parallel loop serially when its concurrency limit
    is 1, which without the list it takes from the variable at every loop, else from half the hardware threads on
    x86 (1 on a 2-vCPU machine, where ``--threads 2`` then ran serially); and its default mode pins the worker
    threads, and with one thread the calling thread itself, to the first cores, where every such process on a shared
    machine competes for core 0. ``TVM_BIND_THREADS=0`` (TVM's own switch) leaves all affinity alone.
    """
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    previous = os.environ.get(THREADS_ENV)
    os.environ[THREADS_ENV] = str(threads)
    try:
        ffi.get_global_func("runtime.NumThreads")()
        ffi.get_global_func("runtime.config_threadpool")(_SHARE_ALL_CORES, threads, [str(c) for c in cpus])
    finally:
        if previous is None:
            del os.environ[THREADS_ENV]
        else:
            os.environ[THREADS_ENV] = previous


class TvmModel:
    """A Relax VM executable exported with ``export_library``, with its weights passed after the input."""

    runtime = "tvm"

    def __init__(self, library: Path, threads: int, weights: Sequence[np.ndarray] = ()) -> None:
        ffi = tvm_ffi_with_runtime()
        _configure_threads(ffi, threads)
        self.threads = threads
        self._ffi = ffi
        self._vm = ffi.load_module(str(library))["vm_load_executable"]()
        self._vm["vm_initialization"](_CPU, 0, _POOLED_ALLOCATOR)
        self._weights = [ffi.from_dlpack(w, require_alignment=ALIGNMENT) for w in weights]
        self._input: np.ndarray | None = None
        self._bound_main: Any = None

    def set_instrument(self, instrument: Any | None) -> None:
        """Call ``instrument(func, name, before_run, ret_value, *args) -> 0`` around every packed call of ``main``
        (``None``: stop)."""
        self._vm["set_instrument"](instrument)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self._input is None or self._input.shape != x.shape:
            self._input = aligned_empty(x.shape, "float32")
            # ``main`` with the input buffer and the weights bound once: each call then passes no arguments
            # (converting the 877 weights of a w=1 model took about 50 µs per call)
            self._vm["save_function"]("main", _BOUND_MAIN, True, self._ffi.from_dlpack(self._input), *self._weights)
            self._bound_main = self._vm[_BOUND_MAIN]
        np.copyto(self._input, x)
        out = self._bound_main()
        return np.from_dlpack(_first_tensor(out)).reshape(-1).copy()


class OnnxModel:
    """An ONNX model with one input and one logits output, on onnxruntime's CPU provider."""

    runtime = "onnxruntime"

    def __init__(self, library: Path, threads: int) -> None:
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise ArtifactError(
                "runtime onnxruntime is not installed: found no onnxruntime module, need `pip install onnxruntime`"
            ) from err
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.threads = threads
        self._session = ort.InferenceSession(str(library), options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self._input: x})[0].reshape(-1)


def resolve_threads(artifact: Artifact, runtime: str, threads: int | None = None) -> int:
    """Threads to run with: ``threads`` when given, else (TVM only) ``$TVM_NUM_THREADS``, else the artifact's."""
    if threads is not None:
        return threads
    value = os.environ.get(THREADS_ENV, "").strip()
    if runtime != "tvm" or not value:
        return artifact.meta.threads
    if not value.isdigit() or int(value) < 1:
        raise ArtifactError(f"{THREADS_ENV}={value!r} is not a positive whole number: unset it or pass --threads")
    return int(value)


def load_model(artifact: Artifact, runtime: str | None = None, threads: int | None = None) -> Model:
    """Load the artifact's library for ``runtime`` (default: its own) with :func:`resolve_threads` threads."""
    runtime = runtime or artifact.meta.runtime
    library = artifact.library_for(runtime)  # refuses an unknown runtime
    threads = resolve_threads(artifact, runtime, threads)
    logger.info("loading %s with %s (%d threads)", library, runtime, threads)
    if runtime != "tvm":
        return OnnxModel(library, threads)
    weights = artifact.meta.weights
    try:
        mapped = [] if weights is None else map_weights(artifact.path / weights.file, weights)
    except (OSError, ValueError) as err:
        raise ArtifactError(f"{artifact.path}: unreadable weights ({err}); rebuild the artifact") from err
    return TvmModel(library, threads, mapped)
