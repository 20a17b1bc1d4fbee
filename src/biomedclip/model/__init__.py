"""The BiomedCLIP model: image tower, text tower and the dual encoder around them."""

from biomedclip.model.clip import BiomedCLIP, create_model
from biomedclip.model.text import TextTower
from biomedclip.model.vision import ImageTower

__all__ = ["BiomedCLIP", "ImageTower", "TextTower", "create_model"]
