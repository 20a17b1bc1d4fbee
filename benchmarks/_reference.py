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
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests import reference as tests_reference  # noqa: E402  (one offline open_clip layout)

SHARED = Path(os.environ.get("BIOMEDCLIP_SHARED_DATA", ROOT.parent / "shared" / "data"))
HUB_DIR = SHARED / "biomedclip_hub"
TOKENIZER_FILES = tests_reference.TOKENIZER_FILES


def build_reference(tmpdir: str | Path, seed: int = 0):
    """open_clip's BiomedCLIP (random weights, seeded) -> ``(model, preprocess, tokenizer)``, eval mode."""
    if not (HUB_DIR / "open_clip_config.json").is_file():
        raise FileNotFoundError(f"released hub files not found in {HUB_DIR}")
    model_dir = Path(tmpdir) / "reference"
    model_dir.mkdir(parents=True, exist_ok=True)
    return tests_reference.build_reference(HUB_DIR, model_dir, seed=seed)


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
