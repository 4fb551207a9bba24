"""ivmixed plugin for VideoCrafter2: its fps-conditioned video UNet (the backbone follows)."""

from .unet import VideoCrafter2UNet

__all__ = ["VideoCrafter2UNet"]
