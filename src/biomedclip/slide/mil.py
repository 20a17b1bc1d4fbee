"""Slide classifiers on patch features: gated attention MIL (ABMIL, Ilse et al. 2018, as in CLAM)
and the mean-pool + logistic-regression baseline.

ABMIL: ``h = ReLU(W x)``; attention ``a = softmax(w^T (tanh(V h) * sigmoid(U h)))`` over the
slide's patches; the slide embedding ``sum a_i h_i`` goes through a linear classifier. Trained one
slide per step (Adam, cross-entropy); early stopping keeps the epoch with the lowest validation
loss (patience ``patience`` epochs). Everything is seeded: the same data and seed give the same
model. Saved as safetensors plus a JSON config (:func:`save_mil`, :func:`load_mil`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from biomedclip.errors import InputError
from biomedclip.io_utils import atomic_path, atomic_write_text


@dataclass
class MILConfig:
    """ABMIL size and training settings (CLAM's defaults scaled to small cohorts)."""

    hidden: int = 128
    attention: int = 64
    dropout: float = 0.25
    lr: float = 5e-4
    weight_decay: float = 1e-4
    max_epochs: int = 50
    patience: int = 10
    min_epochs: int = 5
    seed: int = 0


class GatedAttentionMIL(nn.Module):
    """Gated attention MIL over a bag ``[N, D]`` -> class logits ``[C]`` and attention ``[N]``."""

    def __init__(self, in_dim: int, n_classes: int, cfg: MILConfig | None = None):
        super().__init__()
        cfg = cfg or MILConfig()
        self.in_dim, self.n_classes = in_dim, n_classes
        self.fc = nn.Sequential(nn.Linear(in_dim, cfg.hidden), nn.ReLU(), nn.Dropout(cfg.dropout))
        self.attn_v = nn.Linear(cfg.hidden, cfg.attention)  # tanh branch
        self.attn_u = nn.Linear(cfg.hidden, cfg.attention)  # sigmoid gate
        self.attn_w = nn.Linear(cfg.attention, 1)
        self.classifier = nn.Linear(cfg.hidden, n_classes)

    def forward(self, bag: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.fc(bag)
        a = self.attn_w(torch.tanh(self.attn_v(h)) * torch.sigmoid(self.attn_u(h))).squeeze(-1)
        attention = torch.softmax(a, dim=0)
        return self.classifier(attention @ h), attention


def _bag(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


@torch.no_grad()
def predict_mil(model: GatedAttentionMIL, bags: Sequence[np.ndarray]) -> np.ndarray:
    """Class probabilities ``[n_bags, C]``."""
    model.eval()
    return np.stack([torch.softmax(model(_bag(b))[0], -1).numpy() for b in bags]).astype(np.float64)


@torch.no_grad()
def attention_scores(model: GatedAttentionMIL, features: np.ndarray) -> np.ndarray:
    """The attention weight of each patch ``[N]`` (sums to 1)."""
    model.eval()
    return model(_bag(features))[1].numpy()


def _mean_loss(model: GatedAttentionMIL, bags, y) -> float:
    model.eval()
    with torch.no_grad():
        losses = [
            F.cross_entropy(model(_bag(b))[0][None], torch.tensor([int(t)])).item()
            for b, t in zip(bags, y)
        ]
    return float(np.mean(losses))


def train_mil(
    train_bags: Sequence[np.ndarray],
    y_train: np.ndarray,
    val_bags: Sequence[np.ndarray],
    y_val: np.ndarray,
    n_classes: int,
    cfg: MILConfig | None = None,
) -> tuple[GatedAttentionMIL, dict]:
    """Train ABMIL with early stopping on the validation loss; returns the best epoch's model and
    the history (``epochs``, ``best_epoch``, ``val_loss`` per epoch)."""
    cfg = cfg or MILConfig()
    if not len(train_bags) or not len(val_bags):
        raise InputError("ABMIL needs training and validation slides")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = GatedAttentionMIL(train_bags[0].shape[1], n_classes, cfg)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    # class-balanced sampling weight: each class contributes equally to the loss
    counts = np.bincount(np.asarray(y_train), minlength=n_classes).astype(float)
    weight = torch.tensor(len(y_train) / (n_classes * np.maximum(counts, 1)), dtype=torch.float32)
    tensors = [_bag(b) for b in train_bags]
    best, best_loss, best_epoch, history = None, float("inf"), -1, []
    for epoch in range(cfg.max_epochs):
        model.train()
        for i in rng.permutation(len(tensors)):
            logits, _ = model(tensors[i])
            loss = F.cross_entropy(logits[None], torch.tensor([int(y_train[i])]), weight=weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
        val_loss = _mean_loss(model, val_bags, y_val)
        history.append(round(val_loss, 6))
        if val_loss < best_loss - 1e-6 or epoch < cfg.min_epochs:
            best_loss, best_epoch = val_loss, epoch
            best = {k: v.detach().clone() for k, v in model.state_dict().items()}
        elif epoch - best_epoch >= cfg.patience:
            break
    model.load_state_dict(best)
    model.eval()
    return model, {"epochs": len(history), "best_epoch": best_epoch, "val_loss": history}


def save_mil(model: GatedAttentionMIL, path: str | Path, cfg: MILConfig, classes: Sequence[str]):
    """``path`` (``.safetensors``) plus ``path.json`` (config, classes, input width)."""
    from safetensors.torch import save_file

    path = Path(path)
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    meta = {"in_dim": model.in_dim, "classes": list(classes), "config": asdict(cfg)}
    atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=2))
    return path


def load_mil(path: str | Path) -> tuple[GatedAttentionMIL, list[str]]:
    """A model saved by :func:`save_mil` and its class names."""
    from safetensors.torch import load_file

    path = Path(path)
    meta_path = path.with_suffix(".json")
    if not path.is_file() or not meta_path.is_file():
        raise InputError(f"{path}: not an ABMIL model (needs {path.name} and {meta_path.name})")
    try:
        meta = json.loads(meta_path.read_text())
        model = GatedAttentionMIL(meta["in_dim"], len(meta["classes"]), MILConfig(**meta["config"]))
        model.load_state_dict(load_file(str(path)))
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as e:
        raise InputError(f"{path}: cannot load the ABMIL model ({e})") from e
    return model.eval(), list(meta["classes"])


# ---- the baseline -----------------------------------------------------------------------------
C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)


def mean_pool(bags: Sequence[np.ndarray]) -> np.ndarray:
    return np.stack([np.asarray(b, np.float64).mean(0) for b in bags])


def train_meanpool_lr(train_bags, y_train, val_bags, y_val, seed: int = 0):
    """Logistic regression on standardised mean patch features; ``C`` chosen on the validation
    slides (lowest log loss; refit on training slides only). Returns the fitted pipeline and
    the chosen ``C``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    xt, xv = mean_pool(train_bags), mean_pool(val_bags)
    labels = np.arange(int(max(np.max(y_train), np.max(y_val))) + 1)
    best = (float("inf"), None, None)
    for c in C_GRID:
        clf = make_pipeline(
            StandardScaler(), LogisticRegression(C=c, max_iter=2000, random_state=seed)
        )
        clf.fit(xt, y_train)
        loss = log_loss(y_val, clf.predict_proba(xv), labels=labels)
        if loss < best[0] - 1e-9:
            best = (loss, clf, c)
    return best[1], best[2]


def predict_meanpool_lr(clf, bags, n_classes: int) -> np.ndarray:
    probs = np.zeros((len(bags), n_classes))
    probs[:, clf.classes_] = clf.predict_proba(mean_pool(bags))
    return probs
