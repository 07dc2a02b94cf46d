"""Model-randomisation sanity check (Adebayo et al. 2018, *Sanity Checks for Saliency Maps*).

An explanation that looks the same for the trained model and for the same architecture with random
weights explains the input (edges, colour blobs), not the model. :func:`randomized_copy` gives the
re-initialised model; comparing the two models' maps with :func:`dermfuse_xai.metrics.spearman`
gives the reported rank correlation (near 1 = the method fails the check).
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn


def randomized_copy(net: nn.Module, seed: int = 0) -> nn.Module:
    """A deep copy of ``net`` with every weight re-initialised (full randomisation, not cascading).

    Modules with ``reset_parameters()`` (convolutions, linear layers, norms -- BatchNorm running
    statistics too) use it; parameters no module resets (timm's ``cls_token``/``pos_embed``,
    dermfuse's per-feature embeddings, scale logits, ...) are redrawn from N(0, 0.02). The copy keeps
    the original's train/eval mode; the original is untouched.
    """
    clone = copy.deepcopy(net)
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        reset: set[int] = set()
        for module in clone.modules():
            if callable(getattr(module, "reset_parameters", None)):
                module.reset_parameters()
                reset.update(id(p) for p in module.parameters(recurse=False))
        with torch.no_grad():
            for param in clone.parameters():
                if id(param) not in reset:
                    param.copy_(torch.randn(param.shape, device="cpu").mul_(0.02).to(param))
    finally:
        torch.random.set_rng_state(generator_state)
    return clone
