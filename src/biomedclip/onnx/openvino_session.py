"""OpenVINO IR behind the runner's session interface (``run(None, feeds) -> [features]``), torch-free.

``biomedclip export openvino`` writes ``image.xml`` / ``text.xml`` (fp32) and ``*.int8.xml`` (NNCF
int8); :class:`~biomedclip.onnx.runner.OnnxBiomedCLIP` runs them with ``variant="openvino-fp32"``,
``"openvino-int8"`` or ``"openvino-bf16"`` (the fp32 IR with OpenVINO's bf16 inference hint: bf16
where the CPU has AMX or AVX512-BF16; OpenVINO itself keeps f32 elsewhere). Needs ``openvino``
(the ``cpu-fast`` extra).
"""

from __future__ import annotations

import os
from pathlib import Path

from biomedclip.errors import ConfigError
from biomedclip.onnx.signal_stack import keep_sigaltstack


class OpenVINOSession:
    """A compiled IR with ONNX Runtime's ``run(output_names, feeds)`` call."""

    def __init__(self, path: str | Path, threads: int | None = None, hint: str = "f32"):
        try:
            import openvino as ov
        except ImportError as e:
            raise ConfigError(
                "the runner's OpenVINO variants need openvino: pip install 'biomedclip[cpu-fast]'"
            ) from e
        config = {
            "INFERENCE_PRECISION_HINT": hint,
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": threads or os.cpu_count() or 1,
        }
        with keep_sigaltstack():
            self.compiled = ov.Core().compile_model(str(path), "CPU", config)
        self.request = self.compiled.create_infer_request()

    def run(self, output_names, feeds: dict) -> list:
        return [self.request.infer(feeds)[0].copy()]
