"""Contrastive pretraining and fine-tuning (``biomedclip train``): see :mod:`biomedclip.train.trainer`."""

from biomedclip.train.config import TrainConfig, load_config
from biomedclip.train.loss import ClipLoss, clip_loss

__all__ = ["ClipLoss", "TrainConfig", "clip_loss", "load_config", "train"]


def train(cfg: TrainConfig):
    """Run training (see :func:`biomedclip.train.trainer.train`)."""
    from biomedclip.train.trainer import train as _train

    return _train(cfg)
