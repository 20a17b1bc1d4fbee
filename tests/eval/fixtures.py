"""Small datasets written by the tests in each public distribution format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_png(path: Path, colour: tuple[int, int, int], size: int = 24, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    arr = np.clip(np.asarray(colour)[None, None] + rng.integers(-20, 21, (size, size, 3)), 0, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.astype(np.uint8)).save(path)
    return path


def write_class_folders(
    root: Path, classes: dict[str, tuple[int, int, int]], per_class: int
) -> Path:
    for ci, (name, colour) in enumerate(classes.items()):
        for i in range(per_class):
            write_png(root / name / f"{name}_{i:03d}.png", colour, seed=100 * ci + i)
    return root


def write_pcam(root: Path, split: str, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``camelyonpatch_level_2_split_<split>_{x,y}.h5`` with ``n`` random 96 px patches."""
    import h5py

    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 96, 96, 3), dtype=np.uint8)
    y = rng.integers(0, 2, (n, 1, 1, 1)).astype(np.uint8)
    root.mkdir(parents=True, exist_ok=True)
    with h5py.File(root / f"camelyonpatch_level_2_split_{split}_x.h5", "w") as f:
        f.create_dataset("x", data=x, chunks=(1, 96, 96, 3))
    with h5py.File(root / f"camelyonpatch_level_2_split_{split}_y.h5", "w") as f:
        f.create_dataset("y", data=y)
    return x, y.reshape(-1)


def write_dicom(path: Path, patient_id: str, value: int, size: int = 32) -> Path:
    """A 12-bit MONOCHROME2 chest-radiograph-like DICOM (CR) of a flat grey ``value``."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientID = patient_id
    ds.Modality = "CR"
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    arr = np.full((size, size), value, np.uint16)
    arr[: size // 2] = value // 2  # not flat, so windowing has a range
    ds.PixelData = arr.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_rsna(root: Path, patients: dict[str, list[int]]) -> Path:
    """``stage_2_train_labels.csv`` (one row per box; ``Target`` per row) + one DICOM each."""
    rows = ["patientId,x,y,width,height,Target"]
    for i, (pid, targets) in enumerate(patients.items()):
        for t in targets:
            rows.append(f"{pid},10,10,5,5,{t}" if t else f"{pid},,,,,0")
        write_dicom(root / "stage_2_train_images" / f"{pid}.dcm", pid, 400 + 300 * i)
    (root / "stage_2_train_labels.csv").write_text("\n".join(rows) + "\n")
    return root
