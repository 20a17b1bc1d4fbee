"""The imaging options' fixed vocabularies: window presets, NIfTI planes, reader formats, limits.

Plain Python: the command-line parsers (:mod:`biomedclip.cli.image_args`) read these without
importing NumPy or Pillow; :mod:`.windowing` and :mod:`.options` re-export them.
"""

from __future__ import annotations

MAX_FRAMES = 65_536  # frames one read may decode ("all"); a header may declare 2**31
DEFAULT_MAX_PIXELS = 50_000 * 50_000 // 4  # ~625 Mpx per decoded image / volume / frame set
PLANES = ("axial", "coronal", "sagittal")
FORMATS = ("pillow", "dicom", "nifti", "wsi")
# Common CT presets in Hounsfield units: (centre, width).
PRESETS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
    "abdomen": (40.0, 400.0),
    "soft-tissue": (50.0, 400.0),
    "liver": (60.0, 160.0),
}
WINDOW_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")
