"""``bhvit-device``: classify camera/video/image frames with a compiled artifact, benchmark it, inspect it.

Exit codes follow Click: 0 ok (also after Ctrl-C/SIGTERM, once the summary is written), 1 failure
(refused artifact, camera that stopped delivering frames, nothing classified), 2 usage (bad options,
missing artifact, camera or video that cannot be opened).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np

from .artifact import Artifact, ArtifactError, check_artifact, load_artifact, read_metadata, verification_warning
from .classify import Classifier, FrameResult, RunStats, classify_frames
from .evaluate import (
    EvalDataError,
    evaluate_models,
    evaluation_line,
    folder_dataset,
    image_record,
    one_at_a_time,
    pets_dataset,
    plot_result,
    report_lines,
)
from .host import machine_info
from .log import LOG_FORMATS, FrameLog, next_run_dir
from .metrics import LatencyRecorder, peak_rss_mb, reset_peak_rss, rss_mb, ru_maxrss_mb
from .preprocess import Preprocessor, preprocess
from .profile import format_profile, profile_model
from .runtime import RUNTIMES, Model, load_model
from .serve import LiveServer, LiveView, is_loopback
from .signals import GracefulStop
from .sources import (
    IMAGE_SUFFIXES,
    Frame,
    FrameSource,
    FrameSourceError,
    ImageFiles,
    PiCamera,
    RetryPolicy,
    VideoCapture,
    find_images,
    load_image,
    sample_images,
)

logger = logging.getLogger(__name__)

DEFAULT_ARTIFACT = Path("artifacts/latest")
ARTIFACT_ENV = "BHVIT_ARTIFACT"
RUNS_ROOT = Path("runs/classify")
_HANDLER_NAME = "bhvit-device-cli"
_LOG_EXISTS = "{} exists: choose a new file (a log is never overwritten), or leave --log out for a new numbered folder"

artifact_option = click.option(
    "--artifact",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_ARTIFACT,
    envvar=ARTIFACT_ENV,
    show_envvar=True,
    help="Artifact directory written by bhvit-compile.",
)
threads_option = click.option(
    "--threads",
    type=click.IntRange(1),
    default=None,
    help="Inference threads.  [default: $TVM_NUM_THREADS when set (TVM runtime), else the artifact's threads]",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")


def _configure_logging(verbose: int, quiet: bool) -> None:
    """One stderr handler on the ``bhvit`` logger (replaced on every call, so CliRunner gets its stream)."""
    root = logging.getLogger("bhvit")
    for handler in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(
        logging.ERROR if quiet else logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(package_name="bhvit", prog_name="bhvit-device")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr.")
def main(verbose: int, quiet: bool) -> None:
    """Run compiled BHViT pet classifiers on the device (Raspberry Pi 5 or any Linux host)."""
    _configure_logging(verbose, quiet)


def _load(path: Path, runtime: str | None = None) -> Artifact:
    """Verified artifact, or a usage error (missing) / failure (refused) saying what to do."""
    if not path.exists():
        raise click.UsageError(
            f"no artifact at {path}: run `bhvit-compile CHECKPOINT --target rpi5` first, or "
            f"pass --artifact DIR / set {ARTIFACT_ENV}"
        )
    try:
        artifact = load_artifact(path, runtime)
    except ArtifactError as err:
        raise click.ClickException(str(err)) from err
    warning = verification_warning(artifact.meta)
    if warning:
        logger.warning("%s: %s", path, warning)
    return artifact


def _load_model(artifact: Artifact, runtime: str | None, threads: int | None) -> Model:
    try:
        return load_model(artifact, runtime, threads)
    except ArtifactError as err:
        raise click.ClickException(str(err)) from err


def _parse_size(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not WIDTHxHEIGHT, e.g. 640x480") from None
    if min(width, height) < 1:
        raise click.BadParameter(f"{value!r}: width and height must be positive")
    return width, height


def _make_source(
    camera: bool,
    camera_num: int,
    resolution: tuple[int, int],
    preview: bool,
    webcam: int | None,
    video: Path | None,
    images: list[Path],
    directory: Path | None,
    retry: RetryPolicy,
    stop: GracefulStop,
) -> FrameSource:
    chosen = [
        name
        for name, on in (
            ("--camera", camera),
            ("--webcam", webcam is not None),
            ("--video", video),
            ("--image", images),
            ("--dir", directory),
        )
        if on
    ]
    if len(chosen) > 1:
        raise click.UsageError(f"choose one source, got {' and '.join(chosen)}")
    if preview and not camera:
        raise click.UsageError("--preview needs --camera")
    if camera:
        return PiCamera(camera_num, resolution, preview, retry=retry, wait=stop.wait)
    if webcam is not None:
        return VideoCapture(webcam, retry, stop.wait)
    if video is not None:
        return VideoCapture(str(video), retry, stop.wait)
    if directory is not None:
        images = find_images(directory)
        if not images:
            raise click.UsageError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {directory}")
    if not images:
        images = sample_images()
        logger.warning(
            "no source given: classifying the %d bundled sample photos (use --camera, --webcam, "
            "--video, --image or --dir)",
            len(images),
        )
    return ImageFiles(images)


def _frame_line(result: FrameResult) -> str:
    labels = ", ".join(f"{label} {p:.2f}" for label, p in result.topk)
    return (
        f"#{result.frame} {Path(result.source).name}  {labels} | pre {result.preprocess_ms:.1f} ms  "
        f"inf {result.inference_ms:.1f} ms  total {result.total_ms:.1f} ms  {result.fps:.1f} FPS"
    )


def _fmt_ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"


def _print_summary(summary: dict, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"type": "summary"} | summary))
        return
    lat, inf = summary["latency_ms"], summary["inference_ms"]
    peak = summary["peak_rss_mb"]
    lines = [
        f"frames     {summary['frames']}" + (f" (skipped {summary['skipped']})" if summary["skipped"] else ""),
        f"latency    p50 {_fmt_ms(lat['p50'])}  p90 {_fmt_ms(lat['p90'])}  p99 {_fmt_ms(lat['p99'])}  "
        f"(inference p50 {_fmt_ms(inf['p50'])})",
        f"fps        {summary['fps']:.1f}" if summary["fps"] else "fps        n/a",
        f"peak RSS   {peak:.1f} MiB (VmHWM)" if peak is not None else f"peak RSS   {summary['ru_maxrss_mb']:.1f} MiB",
    ]
    if summary["stopped"]:
        lines.append(f"stopped    {summary['stopped']}")
    lines.append(f"log        {summary['log']}")
    click.echo("-- summary --\n" + "\n".join(lines))


@dataclass(frozen=True)
class RunOptions:
    """The options ``classify`` and ``serve`` share: artifact, source, classification loop and its output."""

    artifact: Path
    camera: bool
    camera_num: int
    resolution: tuple[int, int]
    webcam: int | None
    video: Path | None
    directory: Path | None
    retries: int
    top_k: int
    every: int
    max_frames: int | None
    max_fps: float | None
    threads: int | None
    log_path: Path | None
    as_json: bool


_RUN_OPTIONS = (
    artifact_option,
    click.option("--camera", is_flag=True, help="Read the Raspberry Pi camera through picamera2."),
    click.option("--camera-num", type=click.IntRange(0), default=0, help="picamera2 camera number (with --camera)."),
    click.option(
        "--resolution",
        default="640x480",
        callback=_parse_size,
        metavar="WxH",
        help="Camera capture size (with --camera).",
    ),
    click.option("--webcam", type=click.IntRange(0), default=None, metavar="N", help="Read OpenCV camera index N."),
    click.option(
        "--video",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        default=None,
        help="Read a video file (OpenCV) to its end.",
    ),
    click.option(
        "--dir",
        "directory",
        type=click.Path(exists=True, file_okay=False, path_type=Path),
        default=None,
        help="Classify every image in a directory (sorted by name).",
    ),
    click.option(
        "--retries",
        type=click.IntRange(1),
        default=5,
        help="Attempts to open or read --camera/--webcam before giving up (back-off 0.2 s, doubling, max 2 s).",
    ),
    click.option("--top-k", type=click.IntRange(1), default=3, help="Labels shown per frame."),
    click.option("--every", type=click.IntRange(1), default=1, metavar="N", help="Classify every N-th frame only."),
    click.option(
        "--max-frames",
        type=click.IntRange(1),
        default=None,
        help="Stop after this many classified frames.  [default: until the source ends or Ctrl-C]",
    ),
    click.option(
        "--max-fps",
        type=click.FloatRange(0, min_open=True),
        default=None,
        help="Classify at most this many frames per second (a video then plays at about that pace, and the CPU "
        "rests in between).  [default: as fast as possible]",
    ),
    threads_option,
    click.option(
        "--log",
        "log_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help=f"Per-frame log, CSV or JSONL by extension ({', '.join(LOG_FORMATS)}); a file that exists is refused, "
        f"never overwritten or appended to.  [default: {RUNS_ROOT}/NNN/frames.csv, a new numbered folder]",
    ),
    json_option,
)


def run_options(command: Callable[..., None]) -> Callable[..., None]:
    """Add the shared options to a command, which receives them as one :class:`RunOptions` first argument."""

    @functools.wraps(command)
    def wrapper(**kwargs: object) -> None:
        shared = {field.name: kwargs.pop(field.name) for field in dataclasses.fields(RunOptions)}
        command(RunOptions(**shared), **kwargs)

    for option in reversed(_RUN_OPTIONS):
        wrapper = option(wrapper)
    return wrapper


@dataclass(frozen=True)
class _Run:
    """A source and a classifier, ready to run, and the stop flag that the signal handlers set."""

    artifact: Artifact
    stop: GracefulStop
    source: FrameSource
    classifier: Classifier


def _prepare(opts: RunOptions, preview: bool = False, images: Sequence[Path] = ()) -> _Run:
    """Check the options, verify the artifact, build the source (not opened yet) and load the model."""
    if opts.log_path is not None and opts.log_path.suffix.lower() not in LOG_FORMATS:
        raise click.BadParameter(f"{opts.log_path.name}: need one of {', '.join(LOG_FORMATS)}", param_hint="--log")
    if opts.log_path is not None and opts.log_path.exists():
        raise click.BadParameter(_LOG_EXISTS.format(opts.log_path), param_hint="--log")
    art = _load(opts.artifact)  # verified (checksums, CPU) but nothing loaded yet
    stop = GracefulStop()
    source = _make_source(
        opts.camera,
        opts.camera_num,
        opts.resolution,
        preview,
        opts.webcam,
        opts.video,
        list(images),
        opts.directory,
        RetryPolicy(attempts=opts.retries),
        stop,
    )
    model = _load_model(art, None, opts.threads)
    return _Run(art, stop, source, Classifier(model, art.meta.preprocess, art.meta.class_names, opts.top_k))


@dataclass(frozen=True)
class _Outcome:
    stats: RunStats
    summary: dict
    forced: bool


def _classify_loop(
    opts: RunOptions,
    run: _Run,
    stats: RunStats | None = None,
    on_frame: Callable[[Frame, FrameResult], None] | None = None,
) -> _Outcome:
    """Open the source and classify until it ends, ``--max-frames`` or a stop; every frame goes to the log and
    stdout, the summary always at the end. Call it inside ``with run.stop``."""
    source = run.source
    try:
        source.open()
    except FrameSourceError as err:
        raise click.UsageError(str(err)) from err
    try:
        log = FrameLog(opts.log_path or next_run_dir(RUNS_ROOT) / "frames.csv")
    except FileExistsError:  # created since _prepare checked
        source.close()
        raise click.BadParameter(_LOG_EXISTS.format(opts.log_path), param_hint="--log") from None
    forced = False
    if stats is None:
        stats = RunStats()
    stats.restart()  # the time to open a camera is not the loop's
    try:
        frames = classify_frames(
            source, run.classifier, opts.every, opts.max_frames, run.stop, opts.max_fps, on_frame=on_frame
        )
        for result in frames:
            record = result.to_record()
            log.write(record)
            stats.add(result)
            click.echo(json.dumps({"type": "frame"} | record) if opts.as_json else _frame_line(result))
    except KeyboardInterrupt:
        forced = True
    finally:
        source.close()
        log.close()
        stopped = "SIGINT (forced)" if forced else run.stop.name or source.stop_reason
        summary = stats.summary(skipped=source.skipped, stopped=stopped, log=str(log.path))
        _print_summary(summary, opts.as_json)
    return _Outcome(stats, summary, forced)


def _exit_status(run: _Run, outcome: _Outcome) -> None:
    """Exit 1 when the camera failed or nothing was classified (without a stop asking for it)."""
    if run.source.stop_reason:
        raise click.ClickException(run.source.stop_reason)
    if outcome.stats.latency.count == 0 and not run.stop.requested and not outcome.forced:
        raise click.ClickException("no frame was classified")


@main.command()
@run_options
@click.option("--preview", is_flag=True, help="Show picamera2's preview window (with --camera; Pi desktop only).")
@click.option(
    "--image",
    "image_opts",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Classify an image file; repeat it, or list more files as arguments.",
)
@click.argument(
    "more_images", nargs=-1, metavar="[IMAGE]...", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
def classify(opts: RunOptions, preview: bool, image_opts: tuple[Path, ...], more_images: tuple[Path, ...]) -> None:
    """Classify frames from one source and report labels, per-stage latency, FPS and peak RSS.

    Sources: --camera, --webcam N, --video FILE, --image FILE... or --dir DIR; without one, the bundled
    sample photos. Ctrl-C or SIGTERM stops after the current frame; the summary and log are always written.
    """
    if more_images and (opts.camera or opts.webcam is not None or opts.video or opts.directory):
        raise click.UsageError(f"unexpected arguments {[str(p) for p in more_images]}: image files need --image")
    run = _prepare(opts, preview, [*image_opts, *more_images])
    with run.stop:
        outcome = _classify_loop(opts, run)
    _exit_status(run, outcome)


@main.command()
@run_options
@click.option(
    "--host",
    default="127.0.0.1",
    metavar="ADDRESS",
    help="Address to listen on. The default is reachable from this machine only (from a laptop: "
    "`ssh -L 8080:localhost:8080 pi`); 0.0.0.0 exposes the page to the whole network.",
)
@click.option("--port", type=click.IntRange(0, 65535), default=8080, help="TCP port; 0 picks a free one.")
@click.option(
    "--exit-at-end",
    is_flag=True,
    help="Exit when the source ends or --max-frames is reached.  [default: keep serving the last frame and the "
    "summary until Ctrl-C]",
)
def serve(opts: RunOptions, host: str, port: int, exit_at_end: bool) -> None:
    """Classify as `classify` does and show it live in a browser: the camera stream with the top labels, per-frame
    latency, FPS and memory, and JSON for scripts.

    Open the printed address: / is the page, /stream.mjpg the MJPEG stream, /api/status the latest result and
    running summary as JSON. There is NO AUTHENTICATION: whoever can reach the address can watch the camera, so
    keep the default --host 127.0.0.1 and tunnel with `ssh -L 8080:localhost:8080 pi` where you can. Several
    browsers can watch at once; a slow or closed one never holds up the classification. Ctrl-C or SIGTERM stops
    the loop, the camera and the server; the per-frame log and the summary are always written.
    """
    run = _prepare(opts)
    stats = RunStats()
    meta = run.artifact.meta
    info = {
        "source": getattr(run.source, "name", None) or str(opts.directory or "the bundled sample photos"),
        "model": meta.model.get("name"),
        "runtime": run.classifier.model.runtime,
        "threads": run.classifier.model.threads,
        "top_k": opts.top_k,
    }
    live = LiveView(info, stats.summary)
    try:
        server = LiveServer(live, host, port)
    except OSError as err:
        raise click.UsageError(f"cannot listen on {host}:{port} ({err.strerror or err}): try another --port") from err
    if not is_loopback(host):
        logger.warning("listening on %s: anyone on the network can watch the camera (no authentication)", host)
    click.echo(f"serving on {server.url} (Ctrl-C to stop)", err=True)
    with run.stop, server:
        server.start()
        outcome = _classify_loop(opts, run, stats, live.publish)
        live.finish(outcome.summary)
        if not (exit_at_end or run.stop.requested or outcome.forced):
            click.echo(f"source ended: still serving the last frame on {server.url} until Ctrl-C", err=True)
            while not run.stop.wait(3600):
                pass
    _exit_status(run, outcome)


def _bench_input(artifact: Artifact) -> np.ndarray:
    """A real photo (the bundled cat) preprocessed with the artifact's transform."""
    cfg = artifact.meta.preprocess
    return preprocess(load_image(sample_images()[0]), cfg)


@main.command()
@artifact_option
@click.option(
    "--runtime",
    type=click.Choice(RUNTIMES),
    default=None,
    help="Runtime to benchmark; the artifact must contain its library.  [default: the artifact's]",
)
@click.option("--warmup", type=click.IntRange(0), default=5, help="Untimed runs first.")
@click.option("--runs", type=click.IntRange(1), default=50, help="Timed runs.")
@threads_option
@click.option(
    "--profile",
    is_flag=True,
    help="Then a per-operator table (TVM only): per compiled function its op, calls, ms, share of the latency and, "
    "for binary kernels, bit-MAC/s and the fraction of this CPU's popcount ceiling.",
)
@json_option
def bench(
    artifact: Path, runtime: str | None, warmup: int, runs: int, threads: int | None, profile: bool, as_json: bool
) -> None:
    """Latency (median/p90) and peak RAM of inference alone, plus the machine it ran on.

    The peak (VmHWM) is reset with /proc/self/clear_refs after loading and warm-up, so it covers the
    timed runs only. --profile runs after the timed runs and does not change them.
    """
    art = _load(artifact, runtime)
    t0 = time.perf_counter()
    model = _load_model(art, runtime, threads)
    load_ms = (time.perf_counter() - t0) * 1e3
    x = _bench_input(art)
    for _ in range(warmup):
        model(x)
    peak_reset = reset_peak_rss()
    rss_before = rss_mb()
    latency = LatencyRecorder(capacity=runs)
    for _ in range(runs):
        t0 = time.perf_counter()
        model(x)
        latency.add((time.perf_counter() - t0) * 1e3)
    report = {
        "artifact": str(artifact),
        "model": art.meta.model.get("name"),
        "runtime": model.runtime,
        "threads": model.threads,
        "warmup": warmup,
        "runs": runs,
        "load_ms": load_ms,
        "latency_ms": latency.summary(),
        "peak_rss_mb": peak_rss_mb(),
        "rss_before_mb": rss_before,
        "peak_reset": peak_reset,
        "ru_maxrss_mb": ru_maxrss_mb(),
        "machine": machine_info().to_dict(),
    }
    table = _profile(model, x, art, runs) if profile else None
    if as_json:
        click.echo(json.dumps(report | ({"profile": table.to_dict()} if table else {})))
        return
    lat, machine = report["latency_ms"], report["machine"]
    temp = f"{machine['temperature_c']:.1f} C" if machine["temperature_c"] is not None else "n/a"
    throttled = (", ".join(machine["throttled"]) or "none") if machine["throttled"] is not None else "n/a"
    click.echo(
        "\n".join(
            [
                f"model      {report['model']} ({model.runtime}, {model.threads} threads, loaded in {load_ms:.0f} ms)",
                f"latency    median {lat['p50']:.2f} ms  p90 {lat['p90']:.2f} ms  min {lat['min']:.2f} ms  "
                f"({runs} runs after {warmup} warm-up)",
                f"peak RSS   {_fmt_mb(report['peak_rss_mb'])} during inference (before: {_fmt_mb(rss_before)}"
                f"{'' if peak_reset else '; peak reset failed, includes loading'})",
                f"machine    {machine['cpu_model']}, {machine['arch']}, "
                f"{machine['usable_cores']}/{machine['cores']} cores, "
                f"governor {machine['governor'] or 'n/a'}, {temp}, throttled: {throttled}",
            ]
        )
    )
    if table:
        click.echo(format_profile(table))


def _profile(model: Model, x: np.ndarray, art: Artifact, runs: int):
    if model.runtime != "tvm":
        raise click.UsageError(f"--profile needs the TVM runtime, not {model.runtime}", ctx=click.get_current_context())
    return profile_model(model, x, art.meta.kernels, runs=runs)


def _fmt_mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} MiB"


@main.command("eval")
@artifact_option
@click.option(
    "--dir",
    "directory",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Labelled images: one folder per class (named like the artifact's classes), images anywhere below.",
)
@click.option(
    "--pets",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Oxford-IIIT Pet folder (or its parent): the images listed in annotations/test.txt.",
)
@click.option("--limit", type=click.IntRange(1), default=None, help="Only the first N images.  [default: all]")
@threads_option
@click.option(
    "--log",
    "log_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=f"Per-image log (path, label, prediction, top-5), CSV or JSONL by extension ({', '.join(LOG_FORMATS)}).",
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write per-class accuracy and the confusion matrix as a PNG (needs matplotlib).",
)
@json_option
def evaluate(
    artifact: Path,
    directory: Path | None,
    pets: Path | None,
    limit: int | None,
    threads: int | None,
    log_path: Path | None,
    plot_path: Path | None,
    as_json: bool,
) -> None:
    """Top-1/top-5, per-class accuracy, confusion matrix and images/s of the artifact on labelled images.

    Unreadable images are counted and skipped. Exits with 1 when no image could be scored.
    """
    if (directory is None) == (pets is None):
        raise click.UsageError("give one of --dir DATA (a folder per class) or --pets DIR (Oxford-IIIT Pet)")
    if log_path is not None and log_path.suffix.lower() not in LOG_FORMATS:
        raise click.BadParameter(f"{log_path.name}: need one of {', '.join(LOG_FORMATS)}", param_hint="--log")
    if plot_path is not None and importlib.util.find_spec("matplotlib") is None:
        raise click.BadParameter("needs matplotlib (pip install matplotlib)", param_hint="--plot")
    art = _load(artifact)
    names = art.meta.class_names
    try:
        samples = folder_dataset(directory, names) if directory is not None else pets_dataset(pets, names)
    except EvalDataError as err:
        raise click.UsageError(str(err)) from err
    samples = samples[:limit]
    model = _load_model(art, None, threads)
    log = FrameLog(log_path) if log_path is not None else None
    try:
        results = evaluate_models(
            {"artifact": one_at_a_time(model)},
            samples,
            Preprocessor(art.meta.preprocess),
            names,
            on_image=None if log is None else lambda s, out: log.write(image_record(s, out["artifact"], names)),
            progress=sys.stderr.isatty(),
        )
    finally:
        if log is not None:
            log.close()
    result = results["artifact"]
    if plot_path is not None and result.images:
        plot_result(result, plot_path, art.meta.model.get("name", str(artifact)))
    if as_json:
        click.echo(json.dumps({"artifact": str(artifact), "data": str(directory or pets)} | result.to_dict()))
    else:
        click.echo("\n".join(report_lines(result)))
        for path, what in ((log_path, "log"), (plot_path, "plot")):
            if path is not None:
                click.echo(f"{what:<10} {path}")
    if not result.images:
        raise click.ClickException(f"none of the {len(samples)} images could be decoded")


@main.command()
@artifact_option
@json_option
@click.pass_context
def info(ctx: click.Context, artifact: Path, as_json: bool) -> None:
    """Show an artifact's metadata, verify its checksums and say whether this machine can run it.

    Exits with 1 when a check fails.
    """
    if not artifact.exists():
        _load(artifact)  # raises the usage error with the fix
    try:
        meta = read_metadata(artifact)
    except ArtifactError as err:
        raise click.ClickException(str(err)) from err
    checks = check_artifact(artifact, meta)
    failed = [c for c in checks if not c.ok]
    machine = machine_info()
    if as_json:
        click.echo(
            json.dumps(
                {
                    "artifact": str(artifact),
                    "metadata": meta.to_dict(),
                    "checks": [c.__dict__ | {"message": c.message} for c in checks],
                    "runnable": not failed,
                    "machine": machine.to_dict(),
                }
            )
        )
    else:
        p, model = meta.preprocess, meta.model
        lines = [
            f"artifact   {artifact}",
            f"model      {model.get('name', '?')} (precision {model.get('precision', '?')}, width "
            f"{model.get('width', '?')}), {len(meta.class_names)} classes",
            f"source     {model.get('source', 'n/a')}"
            + (f" (sha256 {model['source_sha256']})" if model.get("source_sha256") else ""),
            f"runtime    {meta.runtime}, library {meta.library}"
            + (f", weights {meta.weights.file} ({len(meta.weights.tensors)} tensors)" if meta.weights else "")
            + f", {meta.threads} threads",
            f"target     {meta.target.name} ({meta.target.arch}; CPU features: "
            f"{', '.join(meta.target.cpu_features) or 'none'})",
            f"preprocess resize {p.resize} {p.interpolation}, crop {p.crop}, mean {list(p.mean)}, std {list(p.std)}",
            f"versions   {', '.join(f'{k} {v}' for k, v in meta.versions.items()) or 'n/a'}",
            f"verified   {json.dumps(meta.verification) if meta.verification is not None else 'no (--no-verify)'}",
            f"evaluated  {evaluation_line(meta.evaluation) if meta.evaluation else 'no (bhvit-compile --eval-dir)'}",
            f"created    {meta.created or 'n/a'}",
            f"cost       {', '.join(f'{k}={v}' for k, v in meta.cost.items()) or 'n/a'}",
            "checks",
            *(f"  {'FAIL' if not c.ok else 'warn' if c.warning else 'ok  '} {c.message}" for c in checks),
            f"machine    {machine.cpu_model}, {machine.arch}, {machine.cores} cores",
            "verdict    " + ("can run here" if not failed else f"cannot run here: {failed[0].message}"),
        ]
        click.echo("\n".join(lines))
    if failed:
        ctx.exit(1)
