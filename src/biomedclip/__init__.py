"""BiomedCLIP: a biomedical vision-language foundation model (ViT-B/16 + PubMedBERT).

Quick start::

    import biomedclip
    model, preprocess, tokenizer = biomedclip.load()          # the released model (hub or cache)
    result = biomedclip.zero_shot(model, ["scan.jpg"], ["chest X-ray", "brain MRI"])
    print(result.top_k(1))
"""

from biomedclip.config import DEFAULT_MODEL, ModelConfig
from biomedclip.errors import BiomedCLIPError
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

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODEL",
    "MODEL_CARD_TEMPLATES",
    "PAPER_TEMPLATES",
    "BiomedCLIP",
    "BiomedCLIPError",
    "ModelConfig",
    "TokenBatch",
    "Tokenizer",
    "ZeroShotResult",
    "build_classifier",
    "create_model",
    "eval_transform",
    "load",
    "load_image",
    "load_model",
    "load_tokenizer",
    "train_transform",
    "zero_shot",
]
