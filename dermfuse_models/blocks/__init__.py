"""Reusable building blocks shared by several paper nets (metadata encoders, fusion, attention).

Import from the module itself, e.g. ``dermfuse_models.blocks.metadata.MetadataTokenizer``.
"""
