"""Accuracy of a compiled artifact on labelled images: top-1/top-5, per-class accuracy, confusion matrix.

Two layouts are read, without torchvision: a labelled tree (one folder per class, images anywhere below it, the
folder name matched to the artifact's class names) and Oxford-IIIT Pet (``annotations/test.txt`` and ``images/``,
class names spelled as torchvision spells them: ``american_bulldog`` -> ``American Bulldog``). Images that cannot be
decoded are counted and skipped. Several models can be scored on the same preprocessed images at once
(``bhvit-compile --eval-dir`` scores PyTorch and the artifact side by side).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .preprocess import Preprocessor
from .sources import IMAGE_SUFFIXES, load_image

logger = logging.getLogger(__name__)

__all__ = [
    "EvalDataError",
    "EvalResult",
    "LabelledImage",
    "evaluate_models",
    "evaluation_line",
    "image_record",
    "report_lines",
    "folder_dataset",
    "labelled_images",
    "one_at_a_time",
    "pets_dataset",
    "pets_root",
    "plot_result",
]

PETS_SPLIT = Path("annotations") / "test.txt"
UNREADABLE = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


class EvalDataError(ValueError):
    """A data directory that cannot be evaluated; the message says what was found and what is needed."""


@dataclass(frozen=True)
class LabelledImage:
    path: Path
    label: int  # index into the artifact's class names


def _class_index(names: Sequence[str], class_names: Sequence[str], where: Path) -> dict[str, int]:
    index = {name: i for i, name in enumerate(class_names)}
    unknown = sorted(set(names) - set(index))
    if unknown:
        shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise EvalDataError(
            f"{where}: classes {shown} are not among the artifact's {len(class_names)} classes "
            f"({', '.join(list(class_names)[:5])}, ...); the folder names must be the artifact's class names"
        )
    return index


def folder_dataset(root: Path, class_names: Sequence[str]) -> list[LabelledImage]:
    """Images of a labelled tree ``root/<class>/**/<image>``, sorted by class folder then path."""
    root = Path(root)
    if not root.is_dir():
        raise EvalDataError(f"{root} is not a directory; need one folder per class holding its images")
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    if not folders:
        raise EvalDataError(f"{root} has no class folders; need {root}/<class name>/<image>")
    index = _class_index([f.name for f in folders], class_names, root)
    samples = [
        LabelledImage(p, index[folder.name])
        for folder in folders
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not samples:
        raise EvalDataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in the class folders of {root}")
    return samples


def pets_root(directory: Path) -> Path | None:
    """The Oxford-IIIT Pet folder at ``directory`` or ``directory/oxford-iiit-pet`` (torchvision's layout)."""
    for candidate in (Path(directory), Path(directory) / "oxford-iiit-pet"):
        if (candidate / PETS_SPLIT).is_file():
            return candidate
    return None


def pets_dataset(directory: Path, class_names: Sequence[str]) -> list[LabelledImage]:
    """The Oxford-IIIT Pet test split (``annotations/test.txt``) in file order."""
    root = pets_root(directory)
    if root is None:
        raise EvalDataError(
            f"{directory}: no {PETS_SPLIT} (nor oxford-iiit-pet/{PETS_SPLIT}); need the extracted images.tar.gz "
            f"and annotations.tar.gz of Oxford-IIIT Pet"
        )
    entries = []
    for number, line in enumerate((root / PETS_SPLIT).read_text().splitlines(), 1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        if len(parts) < 2:
            raise EvalDataError(f"{root / PETS_SPLIT}:{number}: expected 'IMAGE_ID CLASS_ID ...', got {line!r}")
        breed = parts[0].rsplit("_", 1)[0]
        entries.append((root / "images" / f"{parts[0]}.jpg", " ".join(p.title() for p in breed.split("_"))))
    index = _class_index(sorted({name for _, name in entries}), class_names, root)
    return [LabelledImage(path, index[name]) for path, name in entries]


def labelled_images(directory: Path, class_names: Sequence[str]) -> list[LabelledImage]:
    """Oxford-IIIT Pet's test split when ``directory`` holds Pets, else a labelled tree."""
    if pets_root(directory) is not None:
        return pets_dataset(directory, class_names)
    return folder_dataset(directory, class_names)


@dataclass
class EvalResult:
    """Scores of one model on ``images`` labelled images (``skipped`` more could not be decoded)."""

    class_names: tuple[str, ...]
    confusion: np.ndarray  # [true, predicted] counts
    top5_correct: int = 0
    skipped: int = 0
    seconds: float = 0.0  # time spent in the model
    predictions: list[int] = field(default_factory=list)

    @property
    def images(self) -> int:
        return int(self.confusion.sum())

    @property
    def top1(self) -> float:
        return 100.0 * float(np.trace(self.confusion)) / max(self.images, 1)

    @property
    def top5(self) -> float:
        return 100.0 * self.top5_correct / max(self.images, 1)

    def per_class(self) -> dict[str, float | None]:
        """Accuracy (%) of each class with images; ``None`` for classes that had none."""
        totals = self.confusion.sum(1)
        return {
            name: (100.0 * float(self.confusion[i, i]) / totals[i] if totals[i] else None)
            for i, name in enumerate(self.class_names)
        }

    def to_dict(self) -> dict:
        return {
            "images": self.images,
            "skipped": self.skipped,
            "top1": self.top1,
            "top5": self.top5,
            "images_per_s": self.images / self.seconds if self.seconds > 0 else None,
            "per_class": self.per_class(),
            "confusion": self.confusion.tolist(),
        }


def _decoded(samples: Sequence[LabelledImage]) -> Iterator[tuple[LabelledImage, Image.Image | None]]:
    for sample in samples:
        try:
            yield sample, load_image(sample.path)
        except UNREADABLE as err:
            logger.warning("skipping %s: cannot decode image (%s)", sample.path, err)
            yield sample, None


def one_at_a_time(model: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """A batch-1 model (an artifact) as a batch model: ``(n, 3, H, W)`` -> ``(n, classes)``."""
    return lambda xs: np.stack([np.asarray(model(x[None]), np.float32).reshape(-1) for x in xs])


def evaluate_models(
    models: Mapping[str, Callable[[np.ndarray], np.ndarray]],
    samples: Sequence[LabelledImage],
    preprocessor: Preprocessor,
    class_names: Sequence[str],
    on_image: Callable[[LabelledImage, dict[str, np.ndarray]], None] | None = None,
    progress: bool = True,
    batch: int = 32,
) -> dict[str, EvalResult]:
    """Score every model (a ``(n, 3, H, W)`` float32 batch -> ``(n, classes)`` logits; wrap batch-1 models with
    :func:`one_at_a_time`) on the same preprocessed images, ``batch`` images at a time.

    ``on_image(sample, logits by model)`` is called for each scored image (per-image logs); a tqdm bar shows
    progress.
    """
    from tqdm import tqdm

    k = len(class_names)
    results = {name: EvalResult(tuple(class_names), np.zeros((k, k), np.int64)) for name in models}
    decoded = _decoded(samples)
    with tqdm(total=len(samples), unit="img", disable=not progress, dynamic_ncols=True, desc="eval") as bar:
        while chunk := list(itertools.islice(decoded, batch)):
            bar.update(len(chunk))
            for result in results.values():
                result.skipped += sum(image is None for _, image in chunk)
            chunk = [(sample, image) for sample, image in chunk if image is not None]
            if not chunk:
                continue
            xs = np.concatenate([preprocessor(image) for _, image in chunk])
            outputs = {}
            for name, model in models.items():
                t0 = time.perf_counter()
                outputs[name] = logits = np.asarray(model(xs), np.float32).reshape(len(chunk), -1)
                result = results[name]
                result.seconds += time.perf_counter() - t0
                top = np.argsort(-logits, axis=1, kind="stable")[:, :5]
                labels = np.array([sample.label for sample, _ in chunk])
                np.add.at(result.confusion, (labels, top[:, 0]), 1)
                result.top5_correct += int((top == labels[:, None]).any(1).sum())
                result.predictions.extend(int(t) for t in top[:, 0])
            if on_image is not None:
                for i, (sample, _) in enumerate(chunk):
                    on_image(sample, {name: logits[i] for name, logits in outputs.items()})
            bar.set_postfix_str(f"top-1 {next(iter(results.values())).top1:.1f}%", refresh=False)
    return results


def plot_result(result: EvalResult, path: Path, title: str) -> Path:
    """Per-class accuracy bars and the confusion matrix (row-normalised) in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(result.class_names)
    rows = result.confusion.sum(1, keepdims=True)
    normalised = np.divide(result.confusion, rows, out=np.zeros(result.confusion.shape), where=rows > 0)
    size = max(6.0, 0.25 * k + 4)
    fig, (bars, matrix) = plt.subplots(1, 2, figsize=(2 * size, size))
    accuracy = [v if v is not None else 0.0 for v in result.per_class().values()]
    bars.barh(range(k), accuracy)
    bars.set_yticks(range(k), result.class_names, fontsize=max(4, 10 - k // 10))
    bars.invert_yaxis()
    bars.set_xlim(0, 100)
    bars.set_xlabel("accuracy (%)")
    bars.set_title(f"{title}: top-1 {result.top1:.2f}% on {result.images} images")
    image = matrix.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    matrix.set_xlabel("predicted")
    matrix.set_ylabel("true")
    matrix.set_title("confusion (row-normalised)")
    fig.colorbar(image, ax=matrix, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def evaluation_line(record: dict) -> str:
    """One line for the ``"evaluation"`` record that ``bhvit-compile --eval-dir`` writes."""
    return (
        f"evaluation on {record['images']} images of {record['data']}: top-1 PyTorch {record['pytorch_top1']:.2f}%, "
        f"compiled {record['artifact_top1']:.2f}% ({record['runs_on']}), same top-1 on {record['agreement']:.2f}% "
        f"of images" + (f", {record['skipped']} unreadable skipped" if record["skipped"] else "")
    )


def image_record(sample: LabelledImage, logits: np.ndarray, class_names: Sequence[str], k: int = 5) -> dict:
    """One per-image log record: path, true label, top-k labels with scores, and whether top-1 was right."""
    top = np.argsort(-logits, kind="stable")[:k]
    return {
        "path": str(sample.path),
        "label": class_names[sample.label],
        "predicted": class_names[top[0]],
        "correct": bool(top[0] == sample.label),
        "topk": [[class_names[i], round(float(logits[i]), 5)] for i in top],
    }


def report_lines(result: EvalResult) -> list[str]:
    """The human-readable report: totals, then per-class accuracy and each class's most frequent confusion."""
    rate = f"{result.images / result.seconds:.1f} images/s" if result.seconds > 0 else "n/a"
    lines = [
        f"images     {result.images}" + (f" (skipped {result.skipped} unreadable)" if result.skipped else ""),
        f"top-1      {result.top1:.2f}%",
        f"top-5      {result.top5:.2f}%",
        f"speed      {rate} (inference only)",
        "per class",
    ]
    width = max(len(n) for n in result.class_names)
    for i, (name, accuracy) in enumerate(result.per_class().items()):
        if accuracy is None:
            continue
        row = result.confusion[i].copy()
        row[i] = 0
        worst = f"  most often taken for {result.class_names[row.argmax()]} ({row.max()})" if row.any() else ""
        lines.append(f"  {name:<{width}}  {accuracy:6.2f}% of {result.confusion[i].sum()}{worst}")
    return lines
