"""Issue 9: one path through the model. Inference code encodes through ``Encoder`` only; the
towers are called directly only where gradients or tokens are the point (training, prompt
learning, VQA fusion, explanations) or where the model itself is defined or exported."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "biomedclip"
TOWER_CALLS = {"encode_image", "encode_text"}
# where calling the towers directly is the job (relative to src/biomedclip)
ALLOWED = (
    "model/",  # defines them
    "embedding/encoder.py",  # the one encoding engine
    "embedding/onnx_backend.py",  # exports the image tower
    "export/",  # writes other formats and measures their parity
    "onnx/",
    "explain/",  # gradients (Grad-CAM) and patch tokens
    "vqa/",  # fusion over token states, trained end to end
    "train/",  # the training step (gradients)
    "eval/coop",  # prompt learning (gradients through the text tower)
    "eval/baselines.py",  # other models' towers (open_clip, transformers) behind one interface
)
MUST_USE_ENCODER = ("train/evaluate.py",)  # inference inside training still goes through it


def tower_calls(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in TOWER_CALLS
    ]


def test_inference_encodes_through_the_one_engine():
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        allowed = rel.startswith(ALLOWED) and not rel.startswith(MUST_USE_ENCODER)
        if not allowed:
            offenders += [f"{rel}:{line}" for line in tower_calls(path)]
    assert not offenders, f"encode_image/encode_text called outside the Encoder: {offenders}"


def test_the_allow_list_is_not_stale():
    """Every allowed entry exists, so the list cannot silently cover code that moved away."""
    for entry in ALLOWED:
        matches = [p for p in SRC.rglob("*.py") if p.relative_to(SRC).as_posix().startswith(entry)]
        assert matches, f"{entry} matches no module: remove it from ALLOWED"
