"""One training phase: epochs of timm-augmented, Mixup/CutMix, optionally distilled training with checkpoints.

Per epoch (``epoch`` counts from 0): set the scheduler's lr, train, evaluate on the validation split every
``eval_every`` epochs and after the last, save ``best`` when val top-1 improves, append the metrics line, then
save ``last`` with the resume state. After the last epoch, ``best`` is scored on the test split.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import torch
from bhvit.models.checkpoint import (
    CheckpointError,
    load_state_dict,
    model_from_spec,
    read_meta,
    save_checkpoint,
    write_json,
)
from timm.data import Mixup
from timm.data.mixup import mixup_target
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import random_seed
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import update_bn
from tqdm import tqdm

from .checkpoint import config_diff, load_matching, load_train_state, rng_state, save_last, set_rng_state
from .config import TrainCfg, TrainError
from .data import DataSplits, build_loader, preprocess_meta
from .dist import DistEnv
from .layout import BEST, CONFIG, INIT_REPORT, LAST, METRICS, RESULT
from .task import Teacher, TrainLoss

__all__ = ["PhaseSpec", "run_phase", "train_one_epoch", "evaluate", "recalibrate"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PhaseSpec:
    """What one phase trains: its number, model spec, output directory and optional warm start."""

    number: int
    spec: dict
    directory: Path
    init_from: Path | None = None


def _bar(iterable, env: DistEnv, **kwargs):
    """A progress bar on the main process of an interactive terminal; silent otherwise."""
    return tqdm(iterable, disable=not (env.is_main and sys.stderr.isatty()), dynamic_ncols=True, **kwargs)


def _autocast(env: DistEnv, amp: bool):
    return torch.autocast(env.device.type, dtype=torch.float16, enabled=amp)


def _counters(env: DistEnv, *names: str) -> dict[str, torch.Tensor]:
    """Running float64 sums kept on the device, so that a batch adds to them without a host sync."""
    return {k: torch.zeros((), dtype=torch.float64, device=env.device) for k in names}


def train_one_epoch(
    model: nn.Module,
    student: nn.Module,
    loader,
    loss_fn: TrainLoss,
    optimizer,
    scaler,
    mixup: Mixup | None,
    num_classes: int,
    smoothing: float,
    epoch: int,
    env: DistEnv,
    amp: bool,
) -> dict:
    """One pass over ``loader``; ``model`` may be DDP-wrapped, ``student`` is the bare module (for L_re).

    The sums stay on the device and are read once, at the end; a non-finite loss is reported then.
    """
    model.train()
    sums = _counters(env, "loss", "ce", "distill", "reg", "correct", "n", "skipped")
    for images, targets, skipped in _bar(loader, env, desc=f"epoch {epoch}", leave=False, unit="batch"):
        sums["skipped"] += skipped
        if len(images) % 2:  # Mixup pairs samples; a skipped image can leave an odd batch
            images, targets = images[:-1], targets[:-1]
        if len(images) == 0:
            continue
        images, targets = images.to(env.device, non_blocking=True), targets.to(env.device, non_blocking=True)
        if mixup is not None:
            mixed, soft = mixup(images, targets)
        else:
            mixed, soft = images, mixup_target(targets, num_classes, smoothing=smoothing)
        with _autocast(env, amp):
            logits = model(mixed)
            loss, parts = loss_fn(student, logits, mixed, soft, epoch)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        n = len(images)
        for k, v in {"loss": loss.detach(), **parts}.items():
            sums[k] += v.double() * n
        sums["correct"] += (logits.argmax(-1) == targets).sum()
        sums["n"] += n
    total = env.sum(sums)
    if not math.isfinite(total["loss"]):
        raise TrainError(f"the loss became {total['loss']} in epoch {epoch}; lower --lr or check the data")
    n = max(total["n"], 1)
    return {
        "train_loss": total["loss"] / n,
        **{f"loss_{k}": total[k] / n for k in ("ce", "distill", "reg")},
        "train_top1": 100 * total["correct"] / n,
        "train_images": int(total["n"]),
        "skipped_images": int(total["skipped"]),
    }


@torch.no_grad()
def evaluate(model: nn.Module, loader, env: DistEnv) -> dict:
    """Top-1 / top-5 (%) and mean CE on ``loader``, exact over all processes (each reads its own shard).

    Always FP32, also when training uses fp16 autocast: a binary net flips signs on fp16 rounding, and the number
    reported must be the function a compiled artifact computes (in FP32)."""
    model.eval()
    sums = _counters(env, "loss", "top1", "top5", "n", "skipped")
    for images, targets, skipped in loader:
        sums["skipped"] += skipped
        if len(images) == 0:
            continue
        images, targets = images.to(env.device), targets.to(env.device)
        with _autocast(env, False):  # also inside a caller's autocast region
            logits = model(images).float()
        top = logits.topk(min(5, logits.shape[-1]), -1).indices
        sums["loss"] += nn.functional.cross_entropy(logits, targets, reduction="sum").double()
        sums["top1"] += (top[:, 0] == targets).sum()
        sums["top5"] += (top == targets[:, None]).any(-1).sum()
        sums["n"] += len(images)
    total = env.sum(sums)
    n = max(total["n"], 1)
    return {
        "top1": 100 * total["top1"] / n,
        "top5": 100 * total["top5"] / n,
        "loss": total["loss"] / n,
        "skipped_images": int(total["skipped"]),
    }


def recalibrate(model: nn.Module, loader, batches: int, env: DistEnv) -> None:
    """Re-estimate every BatchNorm's running statistics (the inputs of the RPReLUs) on ``batches`` training batches.

    Used when a binary phase starts: statistics learned on FP activations do not describe binarised ones. The same
    forward passes initialise the attention quantisers. Only running statistics change, no learned parameter.
    """
    update_bn((images for images, _, _ in islice(loader, batches) if len(images)), model, env.device)


def _read_metrics(path: Path, before_epoch: int) -> list[str]:
    """Metric lines of epochs < ``before_epoch`` (drops a line torn by a kill and epochs that will be redone)."""
    keep = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            if json.loads(line)["epoch"] < before_epoch:
                keep.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    return keep


def _check_resume(path: Path, spec: dict, class_names: list[str]) -> None:
    """Refuse to resume a checkpoint whose model or classes differ from what this invocation builds."""
    meta = read_meta(path)
    diff = config_diff({"model": meta["model"], **meta["config"]}, {"model": spec["model"], **spec["config"]})
    if diff:
        raise CheckpointError(
            f"cannot resume {path}: it was trained with other model options ({'; '.join(diff)}); "
            f"pass the options of the original run"
        )
    if meta["class_names"] != class_names:
        raise CheckpointError(f"cannot resume {path}: it was trained on other classes than --data-dir holds")


def run_phase(cfg: TrainCfg, phase: PhaseSpec, splits: DataSplits, teacher: Teacher | None, env: DistEnv) -> dict:
    """Train one phase (resuming from ``last`` when ``cfg.resume``) and return its result (also in result.json)."""
    out = phase.directory
    if (out / RESULT).exists() and cfg.resume:
        _check_resume(out / BEST, phase.spec, splits.class_names)
        log.info("phase %d already finished in %s", phase.number, out)
        return json.loads((out / RESULT).read_text())
    num_classes = len(splits.class_names)
    model = model_from_spec(phase.spec).to(env.device)
    binary = phase.spec["family"] == "bhvit" and model.cfg.is_binary
    state = None
    if cfg.resume and (out / LAST).exists():
        _check_resume(out / LAST, phase.spec, splits.class_names)
        model.load_state_dict({k: v.to(env.device) for k, v in load_state_dict(out / LAST).items()})
        state = load_train_state(out / LAST)
        log.info("phase %d: resuming after epoch %d from %s", phase.number, state["epoch"] - 1, out / LAST)
    elif phase.init_from is not None:
        report = load_matching(model, phase.init_from, phase.spec)
        log.info("phase %d: init from %s: %s", phase.number, phase.init_from, report.summary())
        if env.is_main:
            write_json(out / INIT_REPORT, {"checkpoint": str(phase.init_from), **report.to_dict()})

    train_loader = build_loader(splits.train, cfg, True, env.rank, env.world)
    val_loader = build_loader(splits.val, cfg, False, env.rank, env.world)
    lr = cfg.lr * max(1.0, cfg.batch_size * env.world / 512)
    optimizer = create_optimizer_v2(model, opt=cfg.opt, lr=lr, weight_decay=cfg.weight_decay)
    scheduler, _ = create_scheduler_v2(
        optimizer,
        sched=cfg.sched,
        num_epochs=cfg.epochs,
        min_lr=cfg.min_lr,
        warmup_lr=cfg.warmup_lr,
        warmup_epochs=cfg.warmup_epochs,
    )
    amp = cfg.amp and env.device.type == "cuda"
    scaler = torch.amp.GradScaler(env.device.type, enabled=amp)
    best = {"val_top1": -1.0, "epoch": -1}
    start = 0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])  # rank 0's saved state
        start, best = state["epoch"], state["best"]
        if env.rank:  # other ranks must not replay rank 0's Mixup / drop-path / worker streams
            random_seed(cfg.seed + 1000 * phase.number + start, env.rank)
    elif binary:
        recalibrate(model, train_loader, cfg.recalibrate_batches, env)

    ddp = model
    if env.world > 1:
        ddp = DistributedDataParallel(model, device_ids=[env.device] if env.device.type == "cuda" else None)
    mixup = (
        Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, label_smoothing=cfg.smoothing, num_classes=num_classes)
        if cfg.mixup > 0 or cfg.cutmix > 0
        else None
    )
    loss_fn = TrainLoss(cfg, teacher, binary)
    meta = {
        **phase.spec,
        "class_names": splits.class_names,
        "preprocess": preprocess_meta(cfg),
        "phase": phase.number,
        "train": cfg.to_dict(),
    }
    if env.is_main:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / CONFIG, meta)
        lines = _read_metrics(out / METRICS, start)
        (out / METRICS).write_text("".join(line + "\n" for line in lines))

    for epoch in _bar(
        range(start, cfg.epochs), env, desc=f"phase {phase.number}", unit="epoch", initial=start, total=cfg.epochs
    ):
        t0 = time.time()
        train_loader.sampler.set_epoch(epoch)
        scheduler.step(epoch)
        row = {
            "epoch": epoch,
            "lr": optimizer.param_groups[0]["lr"],
            **train_one_epoch(
                ddp, model, train_loader, loss_fn, optimizer, scaler, mixup, num_classes, cfg.smoothing, epoch, env, amp
            ),
        }
        row.update({"val_top1": None, "val_top5": None, "val_loss": None})
        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
            env.sync_buffers(model)
            val = evaluate(model, val_loader, env)
            row.update({"val_top1": val["top1"], "val_top5": val["top5"], "val_loss": val["loss"]})
            if val["top1"] > best["val_top1"]:
                best = {"val_top1": val["top1"], "epoch": epoch}
                if env.is_main:
                    save_checkpoint(out / BEST, model, {**meta, "epoch": epoch, "val_top1": val["top1"]})
        row["time_s"] = time.time() - t0
        if env.is_main:
            train_state = {
                "epoch": epoch + 1,
                "best": best,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "rng": rng_state(),
            }
            # the line first: a kill before the save redoes the epoch, whose line resume then drops (_read_metrics);
            # the other order loses the line of an epoch the checkpoint counts as done
            with open(out / METRICS, "a") as f:
                f.write(json.dumps(row) + "\n")
            save_last(out / LAST, model, {**meta, "epoch": epoch, "val_top1": row["val_top1"]}, train_state)
        log.info(
            "phase %d epoch %d/%d: loss %.4f, lr %.3g, train top-1 %.2f, val top-1 %s (%.1fs)",
            phase.number,
            epoch + 1,
            cfg.epochs,
            row["train_loss"],
            row["lr"],
            row["train_top1"],
            "-" if row["val_top1"] is None else f"{row['val_top1']:.2f}",
            row["time_s"],
        )
        env.barrier()
    return _finish(cfg, phase, model, splits, best, env)


def _finish(cfg: TrainCfg, phase: PhaseSpec, model: nn.Module, splits: DataSplits, best: dict, env: DistEnv) -> dict:
    """Score ``best`` on the test split; write result.json (test top-1, best val, cost row)."""
    out = phase.directory
    model.load_state_dict({k: v.to(env.device) for k, v in load_state_dict(out / BEST).items()})
    test = evaluate(model, build_loader(splits.test, cfg, False, env.rank, env.world), env)
    result = {
        "phase": phase.number,
        "model": phase.spec["model"],
        "checkpoint": str(out / BEST),
        "best_epoch": best["epoch"],
        "best_val_top1": best["val_top1"],
        "test_top1": test["top1"],
        "test_top5": test["top5"],
        "test_images": len(splits.test),
        "test_skipped_images": test["skipped_images"],
        "epochs": cfg.epochs,
    }
    if phase.spec["family"] == "bhvit":
        from bhvit.models.cost import model_cost

        result["cost"] = model_cost(model).row()
    if env.is_main:
        write_json(out / RESULT, result)
    log.info(
        "phase %d: test top-1 %.2f (best val top-1 %.2f at epoch %d)",
        phase.number,
        result["test_top1"],
        best["val_top1"],
        best["epoch"],
    )
    env.barrier()
    return result
