"""The CAMELYON-like MIL cohort, composed from shared patch features (no slide is decoded).

Every slide is a tissue grid of ``GRID x GRID`` patches (level-0 coordinates on a 448 px step, as
224 px patches at 20x read from a 40x slide). A normal slide's patches are normal-lung features; a
tumour slide holds a small contiguous tumour region (``TUMOUR_MIN``..``TUMOUR_MAX`` patches of
``GRID**2``: at most 14 % of the tissue) among normal ones. Each patch takes the feature of a
source patch drawn at random, plus small Gaussian noise, renormalised. Two slides per patient,
one label per patient.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

GRID = 8  # 64 tissue patches per slide
STEP = 448  # level-0 pixels between patches
TUMOUR_MIN, TUMOUR_MAX = 4, 9  # patches in the tumour region (6 % to 14 % of the tissue)
NOISE = 0.004  # per-dimension feature noise (unit-norm features; class means ~0.47 apart)


@dataclass
class MILCohort:
    root: Path  # features under root/h5_files, the cohort table at root/cohort.csv
    csv: Path
    tumour_fraction: dict[str, float]
    tumour_coords: dict[str, set[tuple[int, int]]]


def build_mil_cohort(
    root: Path,
    tumour_feats: np.ndarray,
    normal_feats: np.ndarray,
    n_patients: int = 16,
    slides_per_patient: int = 2,
    seed: int = 0,
    attrs: dict | None = None,
) -> MILCohort:
    from biomedclip.slide.features_file import SlideFeatures, h5_path, write_h5

    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:GRID, 0:GRID]
    coords = np.stack([xs.ravel(), ys.ravel()], 1) * STEP + STEP  # a margin around the tissue
    rows, fractions, regions = ["slide_id,label,patient_id"], {}, {}
    for p in range(n_patients):
        label = "tumor" if p % 2 else "normal"
        for s in range(slides_per_patient):
            sid = f"P{p:02d}-S{s}"
            src = rng.integers(0, len(normal_feats), GRID * GRID)
            feats = normal_feats[src].copy()
            region: set[tuple[int, int]] = set()
            if label == "tumor":
                n = int(rng.integers(TUMOUR_MIN, TUMOUR_MAX + 1))
                h = 3 if n > 4 else 2
                w = -(-n // h)
                x0, y0 = rng.integers(0, GRID - w + 1), rng.integers(0, GRID - h + 1)
                cells = [(x0 + i % w, y0 + i // w) for i in range(n)]
                for cx, cy in cells:
                    k = cy * GRID + cx
                    feats[k] = tumour_feats[rng.integers(0, len(tumour_feats))]
                    region.add((int(coords[k, 0]), int(coords[k, 1])))
            feats = feats + rng.normal(0, NOISE, feats.shape)
            feats /= np.linalg.norm(feats, axis=1, keepdims=True)
            write_h5(
                h5_path(root, sid),
                SlideFeatures(feats.astype(np.float32), coords, {
                    "patch_size": 224, "patch_size_level0": STEP, **(attrs or {}),
                }),
            )  # fmt: skip
            fractions[sid] = len(region) / (GRID * GRID)
            regions[sid] = region
            rows.append(f"{sid},{label},P{p:02d}")
    csv = root / "cohort.csv"
    csv.write_text("\n".join(rows) + "\n")
    return MILCohort(root, csv, fractions, regions)
