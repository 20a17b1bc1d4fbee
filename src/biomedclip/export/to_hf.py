"""``export hf``: a folder that ``transformers`` loads with ``trust_remote_code=True``.

Files: ``config.json`` (with ``auto_map``), ``modeling_biomedclip.py`` (self-contained: torch, timm,
transformers), ``image_processing_biomedclip.py`` + ``preprocessing_biomedclip.py`` (the exact
eval transform, NumPy/Pillow), ``preprocessor_config.json``, ``model.safetensors`` (the released
state-dict layout), the tokenizer files and a model card. The modeling files are package data
copied verbatim; the weights are the model's state dict, whose names the template mirrors.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from biomedclip.checkpoint.save import atomic_save_safetensors
from biomedclip.export.parity import Probe, measure
from biomedclip.io_utils import atomic_write_json, atomic_write_text

TEMPLATE_DIR = Path(__file__).with_name("hf_template")
MODELING_FILES = ("modeling_biomedclip.py", "image_processing_biomedclip.py")
PREPROCESS_SOURCE = Path(__file__).parents[1] / "onnx" / "preprocess.py"
WEIGHTS = "model.safetensors"
AUTO_MAP = {
    "AutoConfig": "modeling_biomedclip.BiomedCLIPConfig",
    "AutoModel": "modeling_biomedclip.BiomedCLIPModel",
    "AutoModelForZeroShotImageClassification": "modeling_biomedclip.BiomedCLIPModel",
}
CARD = """---
library_name: transformers
pipeline_tag: zero-shot-image-classification
tags: [clip, biomedical, biomedclip]
---
# BiomedCLIP for transformers

Exported by `biomedclip export hf` (see `export_manifest.json` for the source and its sha256, and
the parity measured at export time).

```python
from transformers import AutoModel, pipeline
model = AutoModel.from_pretrained("DIR", trust_remote_code=True)
clf = pipeline("zero-shot-image-classification", model="DIR", trust_remote_code=True)
clf("xray.jpg", candidate_labels=["chest X-ray", "brain MRI"])
```
"""


def hf_config(model) -> dict[str, Any]:
    """``config.json`` for the exported folder."""
    c = model.config
    try:
        tf_version = importlib.metadata.version("transformers")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - transformers is core
        tf_version = None
    return {
        "architectures": ["BiomedCLIPModel"],
        "auto_map": AUTO_MAP,
        "model_type": "biomedclip",
        "embed_dim": c.embed_dim,
        "vision_cfg": {
            "timm_model_name": c.vision.timm_model_name,
            "image_size": c.vision.image_size,
            "timm_kwargs": c.vision.timm_kwargs,
            "proj_bias": c.vision.proj_bias,
        },
        "text_cfg": {
            "hf_model_name": c.text.hf_model_name,
            "context_length": c.text.context_length,
            "proj": c.text.proj,
            "pooler": c.text.pooler,
            "bert": dataclasses.asdict(c.text.bert),
        },
        "logit_scale_init_value": c.init_logit_scale,
        "dtype": "float32",
        "torch_dtype": "float32",
        "transformers_version": tf_version,
    }


def preprocessor_config(model) -> dict[str, Any]:
    p = model.config.preprocess
    return {
        "image_processor_type": "BiomedCLIPImageProcessor",
        "auto_map": {"AutoImageProcessor": "image_processing_biomedclip.BiomedCLIPImageProcessor"},
        "size": p.image_size,
        "image_mean": list(p.mean),
        "image_std": list(p.std),
        "resample": p.interpolation,
    }


def write_hf(model, tokenizer, directory: Path) -> None:
    """Write every file of the transformers folder into ``directory``."""
    for name in MODELING_FILES:
        shutil.copyfile(TEMPLATE_DIR / name, directory / name)
    shutil.copyfile(PREPROCESS_SOURCE, directory / "preprocessing_biomedclip.py")
    atomic_save_safetensors(model.state_dict(), directory / WEIGHTS)
    atomic_write_json(directory / "config.json", hf_config(model))
    atomic_write_json(directory / "preprocessor_config.json", preprocessor_config(model))
    tokenizer.save_pretrained(directory)
    atomic_write_text(directory / "README.md", CARD)


def load_hf(directory: Path):
    """``(model, image_processor, tokenizer)`` through the transformers auto classes."""
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(str(directory), trust_remote_code=True).eval()
    processor = AutoImageProcessor.from_pretrained(str(directory), trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(str(directory), trust_remote_code=True)
    return model, processor, tokenizer


def export_hf(model, tokenizer, directory: Path, probe: Probe, options: dict) -> dict[str, Any]:
    """Write the folder, load it back with transformers and measure its parity."""
    import torch

    write_hf(model, tokenizer, directory)
    hf_model, processor, hf_tok = load_hf(directory)
    length = model.config.text.context_length

    @torch.inference_mode()
    def images(items) -> np.ndarray:
        pixels = processor(images=items, return_tensors="pt")["pixel_values"]
        return hf_model.get_image_features(pixels).numpy()

    @torch.inference_mode()
    def texts(items) -> np.ndarray:
        batch = hf_tok(items, padding=True, truncation=True, max_length=length, return_tensors="pt")
        return hf_model.get_text_features(batch["input_ids"], batch["attention_mask"]).numpy()

    return {"fp32": measure(probe, images, texts)}
