"""Paper architectures: one plain ``nn.Module`` per file, taking tensors, returning a dict."""

from dermfuse_models.nets.vitatt import ViTAtt

__all__ = ["ViTAtt"]
