"""Paper architectures: one plain ``nn.Module`` per file, following ``dermfuse_models.protocol``
(``forward(image, meta=None, mask=None) -> NetOutput``; callers use ``protocol.call_net``).

Import from the module itself (``dermfuse_models.nets.vitatt.ViTAtt``); nothing is imported here so
that loading one net does not import every other (timm alone costs seconds).
"""
