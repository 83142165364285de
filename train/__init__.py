"""Training of BHViT and its teacher: the two-phase thesis recipe behind ``bhvit-train``.

``load_checkpoint(path) -> (model, meta)`` rebuilds any model written by ``bhvit-train``; it lives in
:mod:`bhvit.models.checkpoint` (shared with ``bhvit-compile``) and is re-exported here.
"""

from bhvit.models.checkpoint import CheckpointError, load_checkpoint, read_meta

from .config import TrainCfg, TrainError
from .run import train

__all__ = ["TrainCfg", "TrainError", "CheckpointError", "load_checkpoint", "read_meta", "train"]
