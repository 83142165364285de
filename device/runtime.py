"""Run a compiled artifact: TVM in runtime-only mode, or onnxruntime. Both are imported lazily, here only.

TVM: ``TVM_USE_RUNTIME_LIB=1`` is set before the first ``import tvm`` so that only ``libtvm_runtime`` is
mapped (no compiler, no ``tvm.relax``); the library is a Relax executable whose VM ``main`` takes one
float32 NCHW tensor and returns logits, possibly wrapped in a 1-tuple.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .artifact import LIBRARY_SUFFIX, Artifact, ArtifactError

logger = logging.getLogger(__name__)

__all__ = ["RUNTIMES", "Model", "OnnxModel", "TvmModel", "load_model"]

RUNTIMES = tuple(LIBRARY_SUFFIX)


class Model(Protocol):
    """A loaded classifier: (1, 3, H, W) float32 in, 1-D float32 logits out."""

    runtime: str
    threads: int

    def __call__(self, x: np.ndarray) -> np.ndarray: ...


def _import_tvm_runtime() -> Any:
    if "tvm" not in sys.modules:
        os.environ.setdefault("TVM_USE_RUNTIME_LIB", "1")
        # tvm_ffi would otherwise build/load a torch DLPack bridge when torch happens to be installed.
        os.environ.setdefault("TVM_FFI_DISABLE_TORCH_C_DLPACK", "1")
        if "torch" not in sys.modules:
            # tvm_ffi also imports torch eagerly when it is installed (about 500 MB of RSS and seconds of start-up
            # on a development machine); it tolerates ImportError, and the device never needs torch.
            sys.modules["torch"] = None
            try:
                importlib.import_module("tvm")
            finally:
                del sys.modules["torch"]
    import tvm
    import tvm.runtime.vm  # noqa: F401  (not imported by `import tvm` in runtime-only mode)

    return tvm


def _first_tensor(value: Any) -> Any:
    """Unwrap a VM result: a tensor, or a (nested) 1-tuple/Array holding one."""
    while not hasattr(value, "numpy"):
        value = value[0]
    return value


class TvmModel:
    """A Relax VM executable exported with ``export_library``."""

    runtime = "tvm"

    def __init__(self, library: Path, threads: int) -> None:
        os.environ["TVM_NUM_THREADS"] = str(threads)  # read when TVM's thread pool starts
        tvm = _import_tvm_runtime()
        configure = tvm.get_global_func("runtime.config_threadpool", allow_missing=True)
        if configure is not None:  # the pool may already exist in this process
            configure(1, threads)
        self.threads = threads
        self._tvm = tvm
        self._device = tvm.cpu()
        self._vm = tvm.runtime.vm.VirtualMachine(tvm.runtime.load_module(str(library)), self._device)
        self._main = self._vm["main"]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = self._main(self._tvm.runtime.tensor(x, self._device))
        return _first_tensor(out).numpy().reshape(-1)


class OnnxModel:
    """An ONNX model with one input and one logits output, on onnxruntime's CPU provider."""

    runtime = "onnxruntime"

    def __init__(self, library: Path, threads: int) -> None:
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise ArtifactError("runtime onnxruntime is not installed: found no onnxruntime module, "
                                "need `pip install onnxruntime`") from err
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.threads = threads
        self._session = ort.InferenceSession(str(library), options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self._input: x})[0].reshape(-1)


_MODELS = {"tvm": TvmModel, "onnxruntime": OnnxModel}


def load_model(artifact: Artifact, runtime: str | None = None, threads: int | None = None) -> Model:
    """Load the artifact's library for ``runtime`` (default: its own) with ``threads`` (default: its own)."""
    runtime = runtime or artifact.meta.runtime
    library = artifact.library_for(runtime)  # refuses an unknown runtime
    threads = threads or artifact.meta.threads
    logger.info("loading %s with %s (%d threads)", library, runtime, threads)
    return _MODELS[runtime](library, threads)
