"""Checkpoint I/O: resolving sources (hub, directory, file), reading and saving weights."""

from biomedclip.checkpoint.hub import ResolvedSource, resolve_source
from biomedclip.checkpoint.integrity import sha256_file, verify_sha256
from biomedclip.checkpoint.save import atomic_save_safetensors, save_pretrained
from biomedclip.checkpoint.state_dict import load_into, normalize_state_dict, read_state_dict

__all__ = [
    "ResolvedSource",
    "atomic_save_safetensors",
    "load_into",
    "normalize_state_dict",
    "read_state_dict",
    "resolve_source",
    "save_pretrained",
    "sha256_file",
    "verify_sha256",
]
