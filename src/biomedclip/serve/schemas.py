"""Request and response bodies (pydantic): what /openapi.json publishes.

Image fields take a ``data:`` URI (``data:image/png;base64,...``, ``data:application/dicom;...``),
bare base64, or, when the server allows it, a ``file://`` URL / absolute path.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

IMAGE_DOC = "data: URI or base64 of a JPEG/PNG/TIFF/DICOM/NIfTI file (or an allowed file:// URL)"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(BaseModel):
    message: str
    type: str
    code: str
    param: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


# ---- embeddings (OpenAI shape) ---------------------------------------------------------------
class EmbeddingsRequest(Strict):
    input: str | list[str] = Field(
        description="texts and/or images (data URIs, bare base64 of an image file, allowed paths)"
    )
    model: str | None = Field(None, description="ignored beyond a check: one model per server")
    modality: Literal["text", "image"] | None = Field(
        None,
        description="all inputs are of this kind; default: each input recognised on its own "
        "(data:/file:// URIs, allowed paths and base64 with an image signature are images)",
    )
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(
        None, description="only the model's own dimension is accepted (no silent truncation)"
    )
    user: str | None = None


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str = Field(description="floats, or base64 of little-endian float32")
    modality: Literal["text", "image"]


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage
    modality: Literal["text", "image", "mixed"]
    truncated: list[int] = Field(
        default_factory=list, description="indices of texts cut at the context length"
    )


# ---- classify ----------------------------------------------------------------------------------
class ClassifyRequest(Strict):
    image: str = Field(description=IMAGE_DOC)
    labels: list[str] = Field(description="candidate labels (at least one)")
    templates: str | list[str] | None = Field(
        None,
        description='"model-card" (default), "paper", or templates: literal text with exactly '
        "one bare {} for the label ({{ and }} are literal braces; no field names, format specs "
        "or conversions: 422)",
    )
    top_k: int | None = Field(None, ge=1, description="return only the k most probable labels")


class LabelProbability(BaseModel):
    label: str
    probability: float


class ClassifyResponse(BaseModel):
    model: str
    probabilities: list[LabelProbability] = Field(description="sorted, most probable first")


# ---- search ----------------------------------------------------------------------------------
class SearchRequest(Strict):
    text: str | None = None
    image: str | None = Field(None, description=IMAGE_DOC)
    embedding: list[float] | None = Field(None, description="a query vector of the model's dim")
    item: int | None = Field(None, ge=0, description="search by the image of this index row")
    top_k: int = Field(10, ge=1)
    modality: Literal["image", "text"] | None = Field(None, description="keep only these rows")


class SearchHit(BaseModel):
    rank: int
    id: str
    score: float
    row: int
    modality: str | None = None
    path: str | None = None
    caption: str | None = None
    has_image: bool = False
    thumbnail: str | None = Field(
        None, description="thumbnail URL (signed for 10 minutes when the server has an API key)"
    )


class SearchResponse(BaseModel):
    model: str
    query: Literal["text", "image", "embedding", "item"]
    hits: list[SearchHit]


# ---- explain ---------------------------------------------------------------------------------
class ExplainRequest(Strict):
    image: str = Field(description=IMAGE_DOC)
    text: str
    method: Literal["patch-similarity", "grad-cam"] = "patch-similarity"  # explain.DEFAULT_METHOD
    alpha: float = Field(0.45, ge=0.0, le=1.0, description="heatmap opacity in the PNG")


class ExplainResponse(BaseModel):
    model: str
    text: str
    method: str
    score: float = Field(description="image-text cosine similarity")
    grid: list[list[float]] = Field(description="raw map over the patch grid (rows, cols)")
    png: str = Field(description="data:image/png;base64 overlay on the model's centre crop")


# ---- models / health -------------------------------------------------------------------------
class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    owned_by: str = "biomedclip"
    sha256: str | None
    dimensions: int
    context_length: int
    image_size: int
    index: str | None = None
    index_size: int | None = None
    backend: dict | None = None  # what runs: backend, precision, auto's choice + cosine, CPU


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class Health(BaseModel):
    status: Literal["ok", "loading", "error"]
    detail: str | None = None
