"""Embedding at scale: sources -> batched, overlapped encoding -> a resumable Parquet dataset.

Python API::

    from biomedclip.embedding import Encoder, EncoderSettings, EmbedConfig, embed_to_dataset
    from biomedclip.embedding import sources, read_embeddings
    enc = Encoder(model, settings=EncoderSettings(precision="bf16"))  # the one encoding engine
    r = enc.encode_images(["a.jpg", "b.dcm"])     # r.ids, r.embeddings, r.parts, r.failures
    t = enc.encode_texts(["chest X-ray", "brain MRI"])
    embed_to_dataset(model, preprocess, tok, sources.image_folder("imgs/"), "emb/")
    ids, vectors, table = read_embeddings("emb/")
"""

from biomedclip.embedding import sources
from biomedclip.embedding.batching import Failure
from biomedclip.embedding.encoded import Encoded
from biomedclip.embedding.encoder import Encoder, EncoderSettings
from biomedclip.embedding.engine import (
    EmbedConfig,
    EmbedResult,
    EmbedStats,
    embed_images,
    embed_source,
    embed_texts,
    embed_to_dataset,
    run_local,
)
from biomedclip.embedding.store import read_embeddings, read_manifest

__all__ = [
    "EmbedConfig",
    "EmbedResult",
    "EmbedStats",
    "Encoded",
    "Encoder",
    "EncoderSettings",
    "Failure",
    "embed_images",
    "embed_source",
    "embed_texts",
    "embed_to_dataset",
    "read_embeddings",
    "read_manifest",
    "run_local",
    "sources",
]
