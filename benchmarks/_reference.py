"""The reference model (open_clip) built offline, and ours loaded from the very same weights.

``build_reference(tmpdir)`` writes an open_clip ``local-dir:`` model directory under ``tmpdir`` from
the released hub files in ``../shared/data/biomedclip_hub`` (config + tokenizer; no weights, so the
towers are randomly initialised), and returns ``(oc_model, oc_preprocess, oc_tokenizer)``.
``ours_from_reference(oc_model, tmpdir)`` saves its state dict as ``open_clip_pytorch_model.bin``
and loads our model from it with :func:`biomedclip.load`, so both sides hold identical weights.

Used by the benchmarks and by tests (import with ``benchmarks`` on ``sys.path``). Nothing is written
into the repository: every file goes under ``tmpdir``.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BIOMEDCLIP_SHARED_DATA", ROOT.parent / "shared" / "data"))
HUB_DIR = SHARED / "biomedclip_hub"
TOKENIZER_FILES = (
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)


def _write_reference_dir(tmpdir: Path) -> Path:
    """``tmpdir/reference``: an open_clip local-dir config whose text tower needs no network."""
    if not (HUB_DIR / "open_clip_config.json").is_file():
        raise FileNotFoundError(f"released hub files not found in {HUB_DIR}")
    model_dir = tmpdir / "reference"
    bert_dir = tmpdir / "reference_bert"
    model_dir.mkdir(parents=True, exist_ok=True)
    bert_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(HUB_DIR / "biomedbert_config.json", bert_dir / "config.json")
    for name in TOKENIZER_FILES:
        shutil.copyfile(HUB_DIR / name, model_dir / name)
    cfg = json.loads((HUB_DIR / "open_clip_config.json").read_text())
    text = cfg["model_cfg"]["text_cfg"]
    renames = {"proj": "hf_proj_type", "pooler_type": "hf_pooler_type"}
    text = {renames.get(k, k): v for k, v in text.items()}
    text["hf_model_name"] = str(bert_dir)
    text["hf_tokenizer_name"] = str(model_dir)
    cfg["model_cfg"]["text_cfg"] = text
    (model_dir / "open_clip_config.json").write_text(json.dumps(cfg, indent=2))
    return model_dir


def build_reference(tmpdir: str | Path, seed: int = 0):
    """open_clip's BiomedCLIP (random weights, seeded) -> ``(model, preprocess, tokenizer)``, eval mode."""
    import open_clip

    model_dir = _write_reference_dir(Path(tmpdir))
    torch.manual_seed(seed)
    model, _, preprocess = open_clip.create_model_and_transforms(
        "local-dir:" + str(model_dir), pretrained_hf=False
    )
    tokenizer = open_clip.get_tokenizer("local-dir:" + str(model_dir))
    model.eval()
    return model, preprocess, tokenizer


def ours_from_reference(oc_model, tmpdir: str | Path):
    """Our ``(model, preprocess, tokenizer)`` loaded from ``oc_model``'s saved state dict."""
    import biomedclip

    model_dir = Path(tmpdir) / "ours"
    model_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(HUB_DIR / "open_clip_config.json", model_dir / "open_clip_config.json")
    for name in TOKENIZER_FILES:
        shutil.copyfile(HUB_DIR / name, model_dir / name)
    torch.save(oc_model.state_dict(), model_dir / "open_clip_pytorch_model.bin")
    return biomedclip.load(str(model_dir))


def machine_info() -> dict:
    """What the figures were measured on."""
    info = {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        import open_clip

        info["open_clip"] = open_clip.__version__
    except ImportError:
        pass
    try:
        flags = Path("/proc/cpuinfo").read_text().split("flags", 1)[1].split("\n", 1)[0].split()
        info["cpu_bf16"] = any(f in flags for f in ("avx512_bf16", "amx_bf16"))
        info["cpu_amx"] = "amx_tile" in flags
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    except (OSError, IndexError):
        pass
    return info


def write_result(name: str, result: dict) -> Path:
    """Write ``benchmarks/results/<name>.json`` with the machine info."""
    out = ROOT / "benchmarks" / "results" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": name, "machine": machine_info(), **result}
    out.write_text(json.dumps(result, indent=2) + "\n")
    return out
