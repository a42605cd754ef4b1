"""Encoders and whole models composed from :mod:`mmgraph.nn` layers."""

from mmgraph.models.encoder import VARIANTS, EncoderOutput, MMGraphEncoder, MMGraphEncoderConfig

__all__ = ["MMGraphEncoder", "MMGraphEncoderConfig", "EncoderOutput", "VARIANTS"]
