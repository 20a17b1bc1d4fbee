"""BiomedCLIP: a biomedical vision-language foundation model (ViT-B/16 + PubMedBERT).

Quick start::

    import biomedclip
    model, preprocess, tokenizer = biomedclip.load()          # the released model (hub or cache)
    result = biomedclip.zero_shot(model, ["scan.jpg"], ["chest X-ray", "brain MRI"])
    print(result.top_k(1))

Attributes are imported lazily, so ``import biomedclip`` (and the CLI's ``--help``) stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "DEFAULT_MODEL": "biomedclip.config",
    "ModelConfig": "biomedclip.config",
    "BiomedCLIPError": "biomedclip.errors",
    "errors": "biomedclip.errors",
    "export": "biomedclip.export",
    "load": "biomedclip.factory",
    "load_model": "biomedclip.factory",
    "load_tokenizer": "biomedclip.factory",
    "load_image": "biomedclip.imaging",
    "BiomedCLIP": "biomedclip.model",
    "create_model": "biomedclip.model",
    "TokenBatch": "biomedclip.tokenizer",
    "Tokenizer": "biomedclip.tokenizer",
    "eval_transform": "biomedclip.transforms",
    "train_transform": "biomedclip.transforms",
    "MODEL_CARD_TEMPLATES": "biomedclip.zeroshot",
    "PAPER_TEMPLATES": "biomedclip.zeroshot",
    "ZeroShotResult": "biomedclip.zeroshot",
    "build_classifier": "biomedclip.zeroshot",
    "zero_shot": "biomedclip.zeroshot",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'biomedclip' has no attribute {name!r}")
    mod = importlib.import_module(module)
    value = mod if name == "errors" else getattr(mod, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)


if TYPE_CHECKING:  # for type checkers and IDEs
    from biomedclip import errors
    from biomedclip.config import DEFAULT_MODEL, ModelConfig
    from biomedclip.errors import BiomedCLIPError
    from biomedclip.export import export
    from biomedclip.factory import load, load_model, load_tokenizer
    from biomedclip.imaging import load_image
    from biomedclip.model import BiomedCLIP, create_model
    from biomedclip.tokenizer import TokenBatch, Tokenizer
    from biomedclip.transforms import eval_transform, train_transform
    from biomedclip.zeroshot import (
        MODEL_CARD_TEMPLATES,
        PAPER_TEMPLATES,
        ZeroShotResult,
        build_classifier,
        zero_shot,
    )
