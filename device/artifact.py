"""The artifact contract between ``bhvit-compile`` (writes) and ``bhvit-device`` (reads).

An artifact is a directory with the compiled library (``model.so`` for TVM, ``model.onnx`` for onnxruntime),
for TVM the weights file (``weights.bin``, see :mod:`.weights`), and ``metadata.json`` describing them: target,
preprocessing, class names, cost row, weights layout, the versions it was built with and the sha256 of every
other file. Version 1 artifacts (TVM weights inside the library) are refused: rebuild them. ``load_artifact``
checks format, file names (each must stay inside the directory), checksums, architecture, CPU features and the
installed runtime's version before anything is loaded, so a corrupt or partial copy, or one built for another CPU
or runtime, is refused with a one-line reason. The checksums do not make a hostile artifact safe: the library is
native code, so run only artifacts you built or trust.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.util
import json
import logging
import os
import re
from dataclasses import asdict, dataclass, field, fields, replace
from importlib import metadata as _pkg_metadata
from pathlib import Path, PurePosixPath
from typing import Any

from .features import kernel_features
from .host import cpu_features, host_arch, normalize_arch
from .weights import WeightsInfo

logger = logging.getLogger(__name__)

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LIBRARY_SUFFIX",
    "METADATA_FILE",
    "Artifact",
    "ArtifactError",
    "ArtifactMeta",
    "Check",
    "PreprocessCfg",
    "TargetInfo",
    "check_artifact",
    "file_sha256",
    "load_artifact",
    "runtime_checks",
    "read_metadata",
    "save_artifact",
    "verification_warning",
    "write_artifact_metadata",
]

FORMAT = "bhvit-artifact"
# 2: TVM weights in their own file; 3: CPU features derived from LLVM's feature set for the -mcpu (version-2 lists
# were written by hand and could miss features the code uses, so those artifacts must be rebuilt)
FORMAT_VERSION = 3
METADATA_FILE = "metadata.json"
LIBRARY_SUFFIX = {"tvm": ".so", "onnxruntime": ".onnx"}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos")
# Per runtime: (module, which is also its key in ``versions``; pip distribution) of the packages the library was
# built against.
RUNTIME_PACKAGES = {"tvm": (("tvm", "apache-tvm"), ("tvm_ffi", "apache-tvm-ffi")), "onnxruntime": ()}


class ArtifactError(Exception):
    """An artifact that cannot be used here; the message says what was found and what is needed."""


def _unsafe_file_name(name: object) -> str | None:
    """Why ``name`` from metadata.json cannot name a file inside the artifact directory (None: it can)."""
    if not isinstance(name, str) or not name:
        return "not a file name"
    if "\\" in name or "\0" in name:
        return "has a backslash or NUL character"
    path = PurePosixPath(name)
    if path.is_absolute():
        return "is an absolute path"
    if ".." in path.parts:
        return "leads out of the directory with '..'"
    return None


@dataclass(frozen=True)
class PreprocessCfg:
    """Eval transform: resize shorter side to ``resize`` (``interpolation``), centre crop ``crop``, normalise."""

    input_size: int = 224
    resize: int = 256
    crop: int = 224
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    layout: str = "NCHW"
    dtype: str = "float32"

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        problems = []
        if not 0 < self.crop <= self.resize:
            problems.append(f"need 0 < crop <= resize, got crop={self.crop} resize={self.resize}")
        if self.input_size != self.crop:
            problems.append(f"input_size {self.input_size} != crop {self.crop}")
        if self.interpolation not in INTERPOLATIONS:
            problems.append(f"interpolation {self.interpolation!r} not in {INTERPOLATIONS}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            problems.append(f"need 3 means and 3 positive stds, got mean={self.mean} std={self.std}")
        if (self.layout, self.dtype) != ("NCHW", "float32"):
            problems.append(f"only NCHW float32 input is supported, got {self.layout} {self.dtype}")
        if problems:
            raise ArtifactError("invalid preprocess config: " + "; ".join(problems))


@dataclass(frozen=True)
class TargetInfo:
    """What the library was compiled for."""

    name: str
    arch: str
    tvm: dict[str, Any] = field(default_factory=dict)
    cpu_features: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "arch", normalize_arch(self.arch))
        object.__setattr__(self, "cpu_features", tuple(self.cpu_features))


@dataclass(frozen=True)
class ArtifactMeta:
    """Contents of ``metadata.json`` (format version 2)."""

    runtime: str
    library: str
    target: TargetInfo
    class_names: tuple[str, ...]
    preprocess: PreprocessCfg = field(default_factory=PreprocessCfg)
    model: dict[str, Any] = field(default_factory=dict)
    threads: int = 4
    cost: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    verification: dict[str, Any] | None = None  # None: built with --no-verify
    weights: WeightsInfo | None = None  # None: no weights file (ONNX)
    kernels: dict[str, dict[str, Any]] = field(default_factory=dict)  # compiled function -> op, bit_macs per call
    evaluation: dict[str, Any] | None = None  # bhvit-compile --eval-dir: PyTorch and artifact top-1 on labelled data
    created: str = ""
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "class_names", tuple(self.class_names))
        if self.runtime not in LIBRARY_SUFFIX:
            raise ArtifactError(f"unknown runtime {self.runtime!r}: expected one of {sorted(LIBRARY_SUFFIX)}")
        if self.threads < 1:
            raise ArtifactError(f"threads must be >= 1, got {self.threads}")
        names = [self.library, *self.files] + ([self.weights.file] if self.weights is not None else [])
        for name in names:
            if why := _unsafe_file_name(name):
                raise ArtifactError(
                    f"unsafe file name {name!r} in metadata: it {why}; need a relative path inside the artifact "
                    f"directory (rebuild the artifact with bhvit-compile)"
                )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict in the documented key order."""
        data = asdict(self)
        data["class_names"] = list(self.class_names)
        data["target"]["cpu_features"] = list(self.target.cpu_features)
        data["preprocess"]["mean"] = list(self.preprocess.mean)
        data["preprocess"]["std"] = list(self.preprocess.std)
        head = {"format": self.format, "format_version": self.format_version}
        return head | {k: v for k, v in data.items() if k not in head}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArtifactMeta:
        """Parse a metadata dict, refusing unknown formats and versions."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ArtifactError(f"not a bhvit artifact: format is {found!r}, need {FORMAT!r}")
        if data.get("format_version") != FORMAT_VERSION:
            raise ArtifactError(
                f"artifact format_version {data.get('format_version')!r} is not supported: this "
                f"bhvit-device reads version {FORMAT_VERSION}; rebuild it or upgrade bhvit"
            )
        known = {f.name for f in fields(cls)}
        try:
            kwargs = {k: v for k, v in data.items() if k in known}
            kwargs["target"] = TargetInfo(**data["target"])
            kwargs["preprocess"] = PreprocessCfg(**data.get("preprocess", {}))
            if data.get("weights") is not None:
                kwargs["weights"] = WeightsInfo.from_dict(data["weights"])
            return cls(**kwargs)
        except (KeyError, TypeError) as err:
            raise ArtifactError(f"malformed metadata: {err}") from err


@dataclass(frozen=True)
class Check:
    """One verification step: ``found`` versus ``needed``; ``warning``: it passes, but the user should know."""

    name: str
    ok: bool
    found: str
    needed: str
    warning: bool = False

    @property
    def message(self) -> str:
        return f"{self.name}: found {self.found}, need {self.needed}"


@dataclass(frozen=True)
class Artifact:
    """A verified artifact directory."""

    path: Path
    meta: ArtifactMeta

    def library_for(self, runtime: str | None = None) -> Path:
        """Library file for ``runtime`` (default: the artifact's own), looked up among the checksummed files."""
        runtime = runtime or self.meta.runtime
        if runtime == self.meta.runtime:
            return self.path / self.meta.library
        suffix = LIBRARY_SUFFIX.get(runtime)
        if suffix is None:
            raise ArtifactError(f"unknown runtime {runtime!r}: expected one of {sorted(LIBRARY_SUFFIX)}")
        matches = sorted(name for name in self.meta.files if name.endswith(suffix))
        if not matches:
            raise ArtifactError(
                f"{self.path}: no {runtime} library: found {sorted(self.meta.files)}, "
                f"need a *{suffix} file (compile with that runtime)"
            )
        return self.path / matches[0]


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _artifact_files(directory: Path) -> dict[str, str]:
    return {
        p.relative_to(directory).as_posix(): file_sha256(p)
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name != METADATA_FILE
    }


def _bhvit_version() -> str:
    try:
        return _pkg_metadata.version("bhvit")
    except _pkg_metadata.PackageNotFoundError:
        return "unknown"


def _installed_version(distribution: str) -> str | None:
    try:
        return _pkg_metadata.version(distribution)
    except _pkg_metadata.PackageNotFoundError:
        return None


def _runtime_versions(runtime: str) -> dict[str, str]:
    """Installed versions of the packages ``runtime``'s library is built against."""
    found = {key: _installed_version(dist) for key, dist in RUNTIME_PACKAGES.get(runtime, ())}
    return {key: version for key, version in found.items() if version is not None}


def _series(version: str) -> str | None:
    """``0.27`` for ``0.27.0.post1``; None when the version does not start with two numbers."""
    match = re.match(r"(\d+)\.(\d+)(?:\D|$)", version)
    return f"{match[1]}.{match[2]}" if match else None


def runtime_checks(meta: ArtifactMeta, runtime: str | None = None) -> list[Check]:
    """The installed version of each package ``runtime`` (default: the artifact's) needs, against the version the
    artifact was built with: the same passes, the same major.minor series passes with a warning (its runtime ABI is
    kept within a series), anything else or a missing package fails."""
    checks = []
    for key, dist in RUNTIME_PACKAGES.get(runtime or meta.runtime, ()):
        built, here = meta.versions.get(key), _installed_version(dist)
        wanted = f"{dist}=={built}" if built else dist
        if here is None and importlib.util.find_spec(key) is not None:  # e.g. built from source
            found = f"{key} without package metadata (version unknown)"
            checks.append(Check(dist, True, found, built or "the version it was built with", True))
        elif here is None:
            checks.append(Check(dist, False, "not installed", f"`pip install {wanted}`"))
        elif built is None:
            checks.append(
                Check(dist, True, here, "the version it was built with (not recorded: rebuild the artifact)", True)
            )
        elif here == built:
            checks.append(Check(dist, True, here, f"{built} as the artifact was built with"))
        elif _series(here) is not None and _series(here) == _series(built):
            checks.append(
                Check(dist, True, here, f"{built} as the artifact was built with (same {_series(built)} series)", True)
            )
        else:
            checks.append(
                Check(
                    dist,
                    False,
                    here,
                    f"{built} as the artifact was built with: `pip install {wanted}` here, or rebuild the artifact "
                    f"with {dist} {here}",
                )
            )
    return checks


def save_artifact(directory: str | os.PathLike, meta: ArtifactMeta) -> ArtifactMeta:
    """Hash every file in ``directory`` and write ``metadata.json`` atomically; returns the saved metadata.

    ``files`` is recomputed, ``created`` and ``versions["bhvit"]`` are filled in when empty.
    """
    directory = Path(directory)
    if not (directory / meta.library).is_file():
        raise ArtifactError(f"{directory}: library {meta.library!r} not found; write it before the metadata")
    meta = replace(
        meta,
        files=_artifact_files(directory),
        created=meta.created or _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        versions={"bhvit": _bhvit_version(), **_runtime_versions(meta.runtime), **meta.versions},
    )
    tmp = directory / (METADATA_FILE + ".tmp")
    tmp.write_text(json.dumps(meta.to_dict(), indent=2) + "\n")
    tmp.replace(directory / METADATA_FILE)
    logger.info("wrote %s (%d files)", directory / METADATA_FILE, len(meta.files))
    return meta


def write_artifact_metadata(
    directory: str | os.PathLike,
    *,
    runtime: str,
    library: str,
    target: TargetInfo,
    class_names: list[str] | tuple[str, ...],
    preprocess: PreprocessCfg,
    model: dict[str, Any],
    threads: int = 4,
    cost: dict[str, Any] | None = None,
    versions: dict[str, str] | None = None,
    verification: dict[str, Any] | None = None,
    weights: WeightsInfo | None = None,
    kernels: dict[str, dict[str, Any]] | None = None,
    evaluation: dict[str, Any] | None = None,
) -> ArtifactMeta:
    """Build the metadata from its parts and save it with :func:`save_artifact`."""
    meta = ArtifactMeta(
        runtime=runtime,
        library=library,
        target=target,
        class_names=tuple(class_names),
        preprocess=preprocess,
        model=model,
        threads=threads,
        cost=cost or {},
        versions=versions or {},
        verification=verification,
        weights=weights,
        kernels=kernels or {},
        evaluation=evaluation,
    )
    return save_artifact(directory, meta)


def verification_warning(meta: ArtifactMeta) -> str | None:
    """Why the artifact is not known to compute its checkpoint's function, or ``None`` when its verification
    passed."""
    result = meta.verification
    if result is None:
        return "this artifact was not verified against PyTorch (built with --no-verify); its outputs may be wrong"
    if not result.get("passed"):
        int8 = meta.model.get("format") == "onnx-int8"
        approximate = " (expected for onnx-int8, which is approximate)" if int8 else ""
        return f"this artifact did not pass verification against PyTorch{approximate}: {json.dumps(result)}"
    return None


def read_metadata(directory: str | os.PathLike) -> ArtifactMeta:
    """Parse ``metadata.json`` without verifying any file."""
    path = Path(directory) / METADATA_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise ArtifactError(
            f"{directory}: no {METADATA_FILE}; need an artifact directory made by bhvit-compile"
        ) from err
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ArtifactError(f"{path}: unreadable metadata ({err}); need valid JSON") from err
    return ArtifactMeta.from_dict(data)


def _escapes(directory: Path, name: str) -> Path | None:
    """Where ``directory / name`` really leads when a symbolic link takes it outside ``directory`` (else None)."""
    target = (directory / name).resolve()
    return None if target.is_relative_to(directory.resolve()) else target


def check_artifact(directory: str | os.PathLike, meta: ArtifactMeta, runtime: str | None = None) -> list[Check]:
    """Every check ``load_artifact`` makes, in order; nothing is loaded. ``runtime``: the one that will load the
    artifact (default: its own), whose installed version is checked."""
    directory = Path(directory)
    checks = [
        Check("library", meta.library in meta.files, f"files {sorted(meta.files)}", f"{meta.library!r} among them")
    ]
    if meta.weights is not None:
        checks.append(
            Check(
                "weights",
                meta.weights.file in meta.files,
                f"files {sorted(meta.files)}",
                f"{meta.weights.file!r} among them",
            )
        )
    for name, expected in meta.files.items():
        if (outside := _escapes(directory, name)) is not None:
            checks.append(Check(f"file {name}", False, f"a link to {outside}", "a file inside the artifact directory"))
            continue
        path = directory / name
        actual = file_sha256(path) if path.is_file() else "missing file"
        checks.append(
            Check(
                f"sha256 {name}",
                actual == expected,
                actual[:16],
                f"{expected[:16]} as recorded by bhvit-compile (copy the artifact again)",
            )
        )
    arch = host_arch()
    checks.append(
        Check(
            "architecture",
            arch == meta.target.arch,
            f"this machine is {arch}",
            f"{meta.target.arch} (target {meta.target.name!r})",
        )
    )
    if arch == meta.target.arch:
        needed = kernel_features(meta.target.cpu_features, arch)
        missing = sorted(needed - cpu_features())
        checks.append(
            Check(
                "cpu features",
                not missing,
                f"missing {missing}" if missing else "all present",
                f"the {len(needed)} the code may use (target {meta.target.name!r})",
            )
        )
    return checks + runtime_checks(meta, runtime)


def load_artifact(directory: str | os.PathLike, runtime: str | None = None) -> Artifact:
    """Read and verify an artifact for ``runtime`` (default: its own); raise :class:`ArtifactError` naming the
    first failed check, log a warning for each check that passed with one."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ArtifactError(f"{directory}: not a directory; need an artifact made by bhvit-compile")
    meta = read_metadata(directory)
    for check in check_artifact(directory, meta, runtime):
        if not check.ok:
            raise ArtifactError(f"{directory}: refusing artifact, {check.message}")
        if check.warning:
            logger.warning("%s: %s", directory, check.message)
    return Artifact(directory, meta)
