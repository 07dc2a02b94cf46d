"""Paper architectures: one plain ``nn.Module`` per file, taking tensors, returning a dict.

Import from the module itself (``dermfuse_models.nets.vitatt.ViTAtt``); nothing is imported here so
that loading one net does not import every other (timm alone costs seconds).
"""
