"""Reusable building blocks shared by several paper nets (metadata encoders, fusion, ...)."""

from dermfuse_models.blocks.metadata import MetadataTokenizer

__all__ = ["MetadataTokenizer"]
