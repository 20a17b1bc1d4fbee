"""Text-conditioned heatmaps over the ViT patch grid: patch similarity and Grad-CAM.

* ``patch-similarity``: every patch token (after the ViT's final norm) goes through the image
  projection ``model.visual.head``; the map is its cosine similarity with the text embedding.
* ``grad-cam``: Grad-CAM in the last ViT block for the image-text cosine similarity. The tokens
  are taken where that block reads them (its first norm, as pytorch-grad-cam does for ViTs): the
  block's output patch tokens cannot affect the [CLS] embedding, its input ones can. Channel
  weights are the gradients averaged over patches; the map is ``relu(sum_c w_c * A_c)`` per patch
  (Selvaraju et al. 2017).

Both return one ``[grid_h, grid_w]`` float32 array per text; the values are raw (cosine
similarities, or CAM activations), :mod:`biomedclip.explain.render` scales them for display.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from biomedclip.errors import InputError

METHODS = ("patch-similarity", "grad-cam")
#: The one default of the API, ``biomedclip explain`` and ``/v1/explain``: cheap (no backward pass).
DEFAULT_METHOD = "patch-similarity"


@dataclass
class Explanation:
    """One heatmap: the text, the method, the raw patch grid and the image-text cosine score."""

    text: str
    method: str
    grid: np.ndarray
    score: float
    view: Image.Image | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        return {
            "text": self.text,
            "method": self.method,
            "score": self.score,
            "grid": self.grid.round(6).tolist(),
            "grid_shape": list(self.grid.shape),
        }


def check_methods(methods: str | Sequence[str]) -> list[str]:
    methods = [methods] if isinstance(methods, str) else list(methods)
    if not methods:
        raise InputError(f"no explanation method given: use {' or '.join(METHODS)}")
    for m in methods:
        if m not in METHODS:
            raise InputError(f"explanation method {m!r}: use one of {', '.join(METHODS)}")
    return methods


def model_view(image: Image.Image, image_size: int) -> Image.Image:
    """The region the model sees: shortest side resized to ``image_size``, centre-cropped square.

    Returned at up to 512 px (the crop of the original image) for drawing overlays.
    """
    w, h = image.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    crop = image.crop((left, top, left + side, top + side)).convert("RGB")
    out = max(image_size, min(side, 512))
    return crop.resize((out, out), Image.Resampling.BICUBIC) if out != side else crop


class Explainer:
    """Heatmaps for a loaded model (``preprocess`` / ``tokenizer`` default to the model's own)."""

    def __init__(self, model: torch.nn.Module, preprocess=None, tokenizer=None):
        self.model = model.eval()
        self.preprocess = preprocess or getattr(model, "preprocess", None)
        self.tokenizer = tokenizer or getattr(model, "tokenizer", None)
        if self.preprocess is None:
            from biomedclip.transforms import eval_transform

            self.preprocess = eval_transform(model.config.preprocess)
        if self.tokenizer is None:
            raise InputError("no tokenizer: load the model with biomedclip.load or pass one")
        trunk = model.visual.trunk
        self.grid_size = tuple(int(g) for g in trunk.patch_embed.grid_size)
        self.prefix = int(getattr(trunk, "num_prefix_tokens", 1))
        self.image_size = int(model.config.preprocess.image_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ---- inputs ----------------------------------------------------------------------------------
    def load(self, image: str | Path | bytes | Image.Image) -> Image.Image:
        if isinstance(image, Image.Image):
            return image
        from biomedclip.imaging import load_image

        return load_image(image, mode=None)

    def pixels(self, image: Image.Image) -> torch.Tensor:
        return self.preprocess(image)[None].to(self.device)

    @torch.no_grad()
    def text_embeddings(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit text embeddings ``[T, D]`` (empty texts raise :class:`TokenizerError`)."""
        texts = list(texts)
        if not texts:
            raise InputError("no text given to explain")
        batch = self.tokenizer(texts, warn=False).to(self.device)
        feats = self.model.encode_text(batch.input_ids, batch.attention_mask)
        return F.normalize(feats.float(), dim=-1)

    # ---- methods ---------------------------------------------------------------------------------
    @torch.no_grad()
    def patch_similarity(
        self, pixels: torch.Tensor, text_emb: torch.Tensor
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(maps [T, gh, gw], scores [T])`` from projected patch tokens vs the text embeddings."""
        feats, tokens = self.model.encode_image(pixels, return_tokens=True)
        patches = self.model.visual.head(tokens[0, self.prefix :].float())
        sims = F.normalize(patches, dim=-1) @ text_emb.T  # [N, T]
        scores = F.normalize(feats.float(), dim=-1) @ text_emb.T
        maps = sims.T.reshape(len(text_emb), *self.grid_size)
        return maps.cpu().numpy().astype(np.float32), scores[0].cpu().numpy()

    def grad_cam(
        self, pixels: torch.Tensor, text_emb: torch.Tensor
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(maps [T, gh, gw], scores [T])``: Grad-CAM on the last block for each text's cosine."""
        captured: list[torch.Tensor] = []
        hook = self.model.visual.trunk.blocks[-1].norm1.register_forward_hook(
            lambda _m, _i, out: captured.append(out) if out.requires_grad else None
        )
        try:
            with torch.enable_grad():
                x = pixels.detach().clone().requires_grad_(True)
                feats = F.normalize(self.model.encode_image(x).float(), dim=-1)
                acts = captured[-1]
                sims = (feats @ text_emb.T)[0]  # [T]
                maps = []
                for t in range(len(text_emb)):
                    (grad,) = torch.autograd.grad(sims[t], acts, retain_graph=True)
                    a = acts[0, self.prefix :].float()  # [N, C]
                    w = grad[0, self.prefix :].float().mean(dim=0)  # [C]
                    maps.append(F.relu(a @ w).reshape(self.grid_size))
        finally:
            hook.remove()
        out = torch.stack(maps).detach().cpu().numpy().astype(np.float32)
        return out, sims.detach().cpu().numpy()

    # ---- all together ----------------------------------------------------------------------------
    def explain(
        self,
        image: str | Path | bytes | Image.Image,
        texts: str | Sequence[str],
        methods: str | Sequence[str] = DEFAULT_METHOD,
    ) -> list[Explanation]:
        """One :class:`Explanation` per (method, text), methods outermost."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        methods = check_methods(methods)
        img = self.load(image)
        view = model_view(img, self.image_size)
        pixels = self.pixels(img)
        text_emb = self.text_embeddings(texts)
        out = []
        for method in methods:
            fn = self.patch_similarity if method == "patch-similarity" else self.grad_cam
            maps, scores = fn(pixels, text_emb)
            out += [
                Explanation(t, method, m, float(s), view) for t, m, s in zip(texts, maps, scores)
            ]
        return out


def explain(
    model: torch.nn.Module,
    image: str | Path | bytes | Image.Image,
    texts: str | Sequence[str],
    methods: str | Sequence[str] = DEFAULT_METHOD,
    preprocess=None,
    tokenizer=None,
) -> list[Explanation]:
    """Heatmaps of where ``texts`` match ``image`` (see :class:`Explainer`)."""
    return Explainer(model, preprocess, tokenizer).explain(image, texts, methods)
