"""dermfuse_models: encoders, reusable blocks, paper nets and Lightning tasks.

``blocks/`` holds parts more than one net can use, ``nets/`` one plain ``nn.Module`` per paper
architecture (tensors in, ``{"logits": ..., "aux_losses": ...}`` out), ``tasks/`` the
LightningModules that own loss, metrics and optimisation, and ``encoders.create_encoder`` the
single entry point to timm backbones.
"""
