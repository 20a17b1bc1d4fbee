"""One exception hierarchy for everything the package raises on bad input.

Every error names the input it is about (a path, a source, a label) so a user can act on it.
"""

from __future__ import annotations


class BiomedCLIPError(Exception):
    """Base class of all errors raised by biomedclip."""


class ConfigError(BiomedCLIPError, ValueError):
    """A model or job configuration is invalid."""


class CheckpointError(BiomedCLIPError):
    """A checkpoint cannot be read or does not fit the model."""


class ChecksumError(CheckpointError):
    """A file claiming to be a known checkpoint has the wrong sha256."""


class ModelNotFoundError(BiomedCLIPError, FileNotFoundError):
    """A model source (hub id, directory, file) cannot be resolved."""


class TokenizerError(BiomedCLIPError, ValueError):
    """Tokenizer files are missing or a text cannot be tokenized (for example an empty label)."""


class ImageError(BiomedCLIPError):
    """An image cannot be read. Subclasses say why; ``path`` names the input."""

    def __init__(self, message: str, path: object | None = None):
        self.path = path
        super().__init__(f"{path}: {message}" if path is not None else message)


class ImageDecodeError(ImageError):
    """The file is corrupt, truncated or empty."""


class UnsupportedFormatError(ImageError):
    """The content is not an image format we can read."""


class ImageTooLargeError(ImageError):
    """The image exceeds the configured pixel limit (decompression-bomb guard)."""


class MissingPixelDataError(ImageDecodeError):
    """A DICOM file holds no pixel data (a report, a plan, a structured document)."""


class UnsupportedTransferSyntaxError(UnsupportedFormatError):
    """DICOM pixel data is encoded with a transfer syntax that no installed decoder handles."""


class ImageDependencyError(UnsupportedFormatError):
    """Reading this format needs an optional package that is not installed (the message says which)."""


class NoTissueError(ImageError):
    """A whole-slide image has no tile with enough tissue at the chosen level and threshold."""


class InputError(BiomedCLIPError, ValueError):
    """A user-supplied argument is unusable (for example an empty label list)."""
