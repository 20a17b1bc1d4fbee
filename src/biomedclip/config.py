"""Typed configuration for the BiomedCLIP model and its preprocessing.

The released model is described by an ``open_clip_config.json``; :func:`ModelConfig.from_open_clip`
reads both spellings of it (``proj``/``pooler_type`` as released, and open_clip 3.x's
``hf_proj_type``/``hf_pooler_type``) and both names of the text model. The BERT architecture of the
text tower is embedded here, so building a model never touches the network.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from biomedclip.errors import ConfigError

HUB_ID = "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
HUB_PREFIX = "hf-hub:"
DEFAULT_MODEL = HUB_PREFIX + HUB_ID
RELEASED_WEIGHTS_FILE = "open_clip_pytorch_model.bin"
RELEASED_SHA256 = "8792dba76fc3a96544a87bb0f76c82167b4ba509d57c08b98b9c9266f764598b"
CONFIG_FILE = "open_clip_config.json"
WEIGHTS_FILE = "open_clip_model.safetensors"

# Both names the text model has carried on the hub (it was renamed in 2023).
TEXT_MODEL_IDS = (
    "microsoft/BiomedNLP-PubMedBERT-base-uncased-abstract",
    "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract",
)
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class BertConfig:
    """Architecture of the BERT text encoder (PubMedBERT-base by default)."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0


def _bert_config_for(name: str) -> BertConfig:
    """The BERT architecture for a text-model name: embedded for PubMedBERT/BiomedBERT ids,
    read from ``config.json`` when the name is a local directory, else the embedded default."""
    local = Path(name) / "config.json"
    if name not in TEXT_MODEL_IDS and local.is_file():
        try:
            raw = json.loads(local.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ConfigError(f"{local}: cannot read BERT config ({e})") from e
        if raw.get("model_type", "bert") != "bert":
            raise ConfigError(f"{local}: model_type {raw.get('model_type')!r} is not 'bert'")
        known = {f.name for f in dataclasses.fields(BertConfig)}
        return BertConfig(**{k: v for k, v in raw.items() if k in known})
    if name not in TEXT_MODEL_IDS:
        import logging  # here: the command line's --help imports this module

        logging.getLogger(__name__).warning(
            "text model %r is not a known PubMedBERT/BiomedBERT id; using the embedded "
            "PubMedBERT-base architecture",
            name,
        )
    return BertConfig()


@dataclass
class VisionConfig:
    """Image tower: a timm ViT trunk (CLS token after the final norm) and a linear projection."""

    timm_model_name: str = "vit_base_patch16_224"
    image_size: int = 224
    # Extra keyword arguments for ``timm.create_model`` (used by tiny test configs).
    timm_kwargs: dict[str, Any] = field(default_factory=dict)
    proj_bias: bool = False
    patch_dropout: float = 0.0
    drop_path_rate: float = 0.0


@dataclass
class TextConfig:
    """Text tower: BERT, [CLS] of the last hidden state (or the BERT pooler's output for
    ``cls_pooler`` configs), MLP projection."""

    hf_model_name: str = TEXT_MODEL_IDS[0]
    context_length: int = 256
    proj: str = "mlp"  # "mlp" (768 -> 640 -> 512, exact GELU) or "linear"
    pooler: str = "cls_last_hidden_state_pooler"
    bert: BertConfig = field(default_factory=BertConfig)


@dataclass
class PreprocessConfig:
    """Image preprocessing: shortest-side bicubic resize, centre crop, normalisation."""

    image_size: int = 224
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD
    interpolation: str = "bicubic"
    train_scale: tuple[float, float] = (0.9, 1.0)


@dataclass
class ModelConfig:
    """Complete description of a BiomedCLIP-style model."""

    embed_dim: int = 512
    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    init_logit_scale: float = math.log(1 / 0.07)

    # ---- presets -------------------------------------------------------------------------
    @classmethod
    def biomedclip(cls) -> ModelConfig:
        """The released BiomedCLIP architecture (ViT-B/16 + PubMedBERT, 512-d)."""
        return cls()

    @classmethod
    def tiny(
        cls, vocab_size: int = 30522, image_size: int = 32, embed_dim: int = 32
    ) -> ModelConfig:
        """A few-hundred-thousand-parameter model of the same shape, for fast tests."""
        return cls(
            embed_dim=embed_dim,
            vision=VisionConfig(
                timm_model_name="vit_base_patch16_224",
                image_size=image_size,
                timm_kwargs=dict(
                    img_size=image_size, patch_size=8, embed_dim=64, depth=2, num_heads=2
                ),
            ),
            text=TextConfig(
                context_length=64,
                bert=BertConfig(
                    vocab_size=vocab_size,
                    hidden_size=64,
                    num_hidden_layers=2,
                    num_attention_heads=2,
                    intermediate_size=128,
                    max_position_embeddings=128,
                ),
            ),
            preprocess=PreprocessConfig(image_size=image_size),
        )

    # ---- (de)serialisation ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        d = dict(d)
        text = dict(d.pop("text", {}))
        bert = BertConfig(**text.pop("bert", {}))
        pre = dict(d.pop("preprocess", {}))
        for key in ("mean", "std", "train_scale"):
            if key in pre:
                pre[key] = tuple(pre[key])
        return cls(
            vision=VisionConfig(**d.pop("vision", {})),
            text=TextConfig(bert=bert, **text),
            preprocess=PreprocessConfig(**pre),
            **d,
        )

    def to_open_clip(self) -> dict[str, Any]:
        """The ``open_clip_config.json`` layout (released spelling) plus our exact config."""
        return {
            "model_cfg": {
                "embed_dim": self.embed_dim,
                "vision_cfg": {
                    "timm_model_name": self.vision.timm_model_name,
                    "timm_model_pretrained": False,
                    "timm_pool": "",
                    "timm_proj": "linear",
                    "image_size": self.vision.image_size,
                },
                "text_cfg": {
                    "hf_model_name": self.text.hf_model_name,
                    "hf_tokenizer_name": self.text.hf_model_name,
                    "proj": self.text.proj,
                    "pooler_type": self.text.pooler,
                    "context_length": self.text.context_length,
                },
            },
            "preprocess_cfg": {
                "mean": list(self.preprocess.mean),
                "std": list(self.preprocess.std),
            },
            "biomedclip_cfg": self.to_dict(),
        }

    @classmethod
    def from_open_clip(cls, d: dict[str, Any]) -> ModelConfig:
        """Read an ``open_clip_config.json`` dict (released or open_clip 3.x spelling)."""
        if "biomedclip_cfg" in d:  # written by us: exact round trip
            return cls.from_dict(d["biomedclip_cfg"])
        try:
            mc = d["model_cfg"]
            vc = mc["vision_cfg"]
            tc = mc["text_cfg"]
        except (KeyError, TypeError) as e:
            raise ConfigError(f"not an open_clip config (missing {e})") from e
        proj = tc.get("hf_proj_type", tc.get("proj", "mlp"))
        pooler = tc.get("hf_pooler_type", tc.get("pooler_type", "cls_last_hidden_state_pooler"))
        if proj not in ("mlp", "linear"):
            raise ConfigError(f"unsupported text projection {proj!r} (expected 'mlp' or 'linear')")
        if pooler not in ("cls_last_hidden_state_pooler", "cls_pooler"):
            raise ConfigError(f"unsupported text pooler {pooler!r}")
        name = tc.get("hf_model_name", TEXT_MODEL_IDS[0])
        bert = _bert_config_for(name)
        if vc.get("timm_pool", "") not in ("", "token"):
            raise ConfigError(f"unsupported timm_pool {vc.get('timm_pool')!r}")
        pre = d.get("preprocess_cfg", {})
        image_size = int(vc.get("image_size", 224))
        return cls(
            embed_dim=int(mc.get("embed_dim", 512)),
            vision=VisionConfig(
                timm_model_name=vc.get("timm_model_name", "vit_base_patch16_224"),
                image_size=image_size,
            ),
            text=TextConfig(
                hf_model_name=name,
                context_length=int(tc.get("context_length", 256)),
                proj=proj,
                pooler=pooler,
                bert=bert,
            ),
            preprocess=PreprocessConfig(
                image_size=image_size,
                mean=tuple(pre.get("mean", OPENAI_MEAN)),
                std=tuple(pre.get("std", OPENAI_STD)),
            ),
        )

    @classmethod
    def from_file(cls, path: str | Path) -> ModelConfig:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise ConfigError(f"{path}: config file not found") from e
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"{path}: cannot read config ({e})") from e
        try:
            return cls.from_open_clip(data) if "model_cfg" in data else cls.from_dict(data)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from e
        except TypeError as e:
            raise ConfigError(f"{path}: invalid config ({e})") from e

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_open_clip(), indent=2) + "\n", encoding="utf-8")
