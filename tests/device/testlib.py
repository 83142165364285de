"""Test helpers shared by tests/device and tests/cli/test_device_cli.py: tiny real artifacts built with TVM
and onnx directly, a numpy reference for them, generated videos, and a stand-in ``picamera2`` module.

Loaded by path under one module name (``bhvit_device_testlib``) so both test folders share the build cache.
"""

from __future__ import annotations

import shutil
import sys
import types
from pathlib import Path

import numpy as np
from bhvit.device.artifact import PreprocessCfg, TargetInfo, write_artifact_metadata
from bhvit.device.host import host_arch
from bhvit.device.weights import WeightsInfo, save_weights

PETS = ("Abyssinian", "Bengal", "Birman", "beagle", "pug")
SAMPLES = Path(__file__).parents[2] / "device" / "samples"


def preprocess_cfg(size: int) -> PreprocessCfg:
    """224 -> the standard 256/224 transform; other sizes scale the resize the same way."""
    return PreprocessCfg(input_size=size, resize=size * 8 // 7, crop=size)


def weights(classes: int = len(PETS), seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "conv": rng.normal(0, 0.3, (8, 3, 4, 4)).astype(np.float32),
        "fc": rng.normal(0, 1.0, (8, classes)).astype(np.float32),
        "bias": rng.normal(0, 0.1, (classes,)).astype(np.float32),
    }


def reference_logits(x: np.ndarray, w: dict[str, np.ndarray]) -> np.ndarray:
    """conv 4x4 stride 4 -> relu -> global mean -> linear, in numpy (the oracle for both runtimes)."""
    n, c, h, _ = x.shape
    k = 4
    patches = x.reshape(n, c, h // k, k, h // k, k).transpose(0, 2, 4, 1, 3, 5).reshape(n, h // k, h // k, -1)
    y = np.maximum(patches @ w["conv"].reshape(8, -1).T, 0).mean(axis=(1, 2))
    return y @ w["fc"] + w["bias"]


def build_tvm(path: Path, size: int, w: dict[str, np.ndarray], tuple_output: bool = False) -> WeightsInfo:
    """The library at ``path`` and, as bhvit-compile writes them, its weights in ``weights.bin`` beside it."""
    import tvm
    from bhvit.compile.weights import lift_weights
    from tvm import relax

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 3, size, size), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit(relax.op.nn.relu(relax.op.nn.conv2d(x, relax.const(w["conv"]), strides=4)))
            y = bb.emit(relax.op.mean(y, axis=[2, 3]))
            y = bb.emit(relax.op.add(relax.op.matmul(y, relax.const(w["fc"])), relax.const(w["bias"])))
            out = bb.emit_output(relax.Tuple([y]) if tuple_output else y)
        bb.emit_func_output(out)
    mod, arrays = lift_weights(bb.get())
    tvm.compile(mod, target=tvm.target.Target({"kind": "llvm"})).export_library(str(path))
    return save_weights(path.with_name("weights.bin"), arrays)


def build_onnx(path: Path, size: int, w: dict[str, np.ndarray]) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("Conv", ["x", "conv"], ["c"], strides=[4, 4], kernel_shape=[4, 4]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("MatMul", ["f", "fc"], ["m"]),
        helper.make_node("Add", ["m", "bias"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, w["fc"].shape[1]])],
        [numpy_helper.from_array(v, k) for k, v in w.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


class ArtifactFactory:
    """Builds each distinct tiny artifact once per session; ``copy`` gives a private one to tamper with."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._cache: dict[tuple, Path] = {}

    def get(self, runtime: str = "tvm", size: int = 224, tuple_output: bool = False, both: bool = False) -> Path:
        """An artifact for this host; ``both`` adds model.onnx next to model.so (runtime tvm)."""
        key = (runtime, size, tuple_output, both)
        if key not in self._cache:
            path = self.root / "-".join(map(str, key))
            path.mkdir(parents=True)
            w, info = weights(), None
            if runtime == "tvm":
                info = build_tvm(path / "model.so", size, w, tuple_output)
            if runtime == "onnxruntime" or both:
                build_onnx(path / "model.onnx", size, w)
            write_artifact_metadata(
                path,
                runtime=runtime,
                library="model.so" if runtime == "tvm" else "model.onnx",
                target=TargetInfo(name="host", arch=host_arch(), tvm={"kind": "llvm"}),
                class_names=PETS,
                preprocess=preprocess_cfg(size),
                model={"name": "tiny_test", "precision": "fp32", "width": 1.0},
                threads=1,
                cost={"params": 0, "bops": 0},
                verification={"passed": True},
                weights=info,
            )
            self._cache[key] = path
        return self._cache[key]

    def copy(self, dest: Path, **kwargs: object) -> Path:
        shutil.copytree(self.get(**kwargs), dest)
        return dest


def write_video(path: Path, frames: list[np.ndarray] | np.ndarray, fourcc: str = "FFV1", fps: float = 30) -> Path:
    """Write RGB frames to a video file with OpenCV (FFV1 in .avi is lossless)."""
    import cv2

    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    assert writer.isOpened(), f"cannot write {fourcc} video"
    for frame in frames:
        writer.write(np.ascontiguousarray(frame[..., ::-1]))
    writer.release()
    return path


def pan_video(path: Path, frames: int, size: tuple[int, int] = (80, 60)) -> Path:
    """A video of a ``size`` window panning across the bundled cat photo (every frame differs from the last)."""
    from PIL import Image

    cat = chelsea()
    width, height = size
    scale = height / 100
    small = np.asarray(Image.fromarray(cat).resize((int(cat.shape[1] * scale), height)))
    span = small.shape[1] - width
    offsets = np.abs((np.arange(frames) % (2 * span)) - span)  # back and forth
    return write_video(path, [small[:, x : x + width] for x in offsets])


def device_command() -> list[str]:
    """The installed ``bhvit-device`` script, or the same entry point run by this interpreter."""
    script = shutil.which("bhvit-device")
    return [script] if script else [sys.executable, "-c", "from bhvit.device.cli import main; main()"]


def chelsea() -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(SAMPLES / "chelsea.png").convert("RGB"))


_NO_CAMERA = 'No camera number {} found - use "rpicam-hello --list-cameras" to check connected cameras'
# picamera2 formats -> channel order in memory (request.py _get_pil_mode): "RGB888" is B,G,R.
_ORDER = {"RGB888": (2, 1, 0), "BGR888": (0, 1, 2), "XBGR8888": (0, 1, 2, 3), "XRGB8888": (2, 1, 0, 3)}


def fake_picamera2(frames: list[np.ndarray], cameras: int = 1, fail_after: int | None = None) -> types.ModuleType:
    """A ``picamera2`` stand-in following the 0.3.38 API subset: frames are RGB arrays served in a loop.

    ``fail_after`` frames, ``capture_array`` raises TimeoutError as picamera2 does when ``wait`` expires.
    ``module.instances`` records every Picamera2 made, for assertions on start/stop/close.
    """
    module = types.ModuleType("picamera2")
    module.instances = []

    class Picamera2:
        @staticmethod
        def global_camera_info() -> list[dict]:
            return [
                {"Model": "imx708", "Location": 2, "Rotation": 180, "Id": f"/base/axi/pcie/i2c@{i}", "Num": i}
                for i in range(cameras)
            ]

        def __init__(self, camera_num: int = 0, verbose_console=None, tuning=None, allocator=None) -> None:
            if camera_num >= len(self.global_camera_info()):
                raise RuntimeError(_NO_CAMERA.format(camera_num))
            self.camera_num = camera_num
            self.camera_config = None
            self.started = False
            self.closed = False
            self.show_preview = None
            self.captures = 0
            module.instances.append(self)

        def create_preview_configuration(
            self,
            main=None,
            lores=None,
            raw=None,
            transform=None,
            colour_space=None,
            buffer_count=4,
            controls=None,
            display="main",
            encode="main",
            queue=True,
            sensor=None,
            use_case="preview",
        ) -> dict:
            stream = {"format": "XBGR8888", "size": (640, 480)} | dict(main or {})
            stream["size"] = (stream["size"][0] & ~1, stream["size"][1] & ~1)  # align_stream(optimal=False)
            return {"use_case": use_case, "main": stream, "lores": lores, "buffer_count": buffer_count}

        def configure(self, camera_config=None) -> None:
            if self.started:
                raise RuntimeError("Camera must be stopped before configuring")
            self.camera_config = camera_config or self.create_preview_configuration()

        def start(self, config=None, show_preview=False) -> None:
            if config is not None:
                self.configure(config)
            if self.camera_config is None:
                self.configure()
            self.started, self.show_preview = True, show_preview

        def capture_array(self, name="main", wait=None, signal_function=None) -> np.ndarray:
            from PIL import Image

            if not self.started:
                raise RuntimeError("Camera has not been started")
            if fail_after is not None and self.captures >= fail_after:
                raise TimeoutError("timed out waiting for a frame")
            stream = self.camera_config[name]
            rgb = frames[self.captures % len(frames)]
            self.captures += 1
            rgb = np.asarray(Image.fromarray(rgb).resize(stream["size"], Image.Resampling.BILINEAR))
            rgbx = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=2)
            return np.ascontiguousarray(rgbx[..., _ORDER[stream["format"]]])

        def stop(self) -> None:
            self.started = False

        def close(self) -> None:
            self.started, self.closed = False, True

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            self.close()

    module.Picamera2 = Picamera2
    return module
