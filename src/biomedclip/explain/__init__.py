"""Explanations: where in an image a text matches (patch similarity, Grad-CAM), as PNG and grid.

::

    from biomedclip.explain import explain, overlay
    ex = explain(model, "xray.png", ["left pleural effusion"], methods=["grad-cam"])[0]
    overlay(ex.view, ex.grid).save("heat.png"); ex.grid  # [14, 14] float32
"""

from biomedclip.explain.maps import (
    DEFAULT_METHOD,
    METHODS,
    Explainer,
    Explanation,
    explain,
    model_view,
)
from biomedclip.explain.render import colourise, normalise, overlay, png_bytes, save_png

__all__ = [
    "DEFAULT_METHOD",
    "METHODS",
    "Explainer",
    "Explanation",
    "colourise",
    "explain",
    "model_view",
    "normalise",
    "overlay",
    "png_bytes",
    "save_png",
]
