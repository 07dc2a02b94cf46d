"""Small versions of every paper's net (classifiers and the segmentation nets EAM-Net / Deep-UNet; 32-64 px,
CPU-fast) for the explanation tests."""

from __future__ import annotations

import os

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ["HF_HUB_OFFLINE"] = "1"

import pytest
import torch
import torch.nn as nn

GROUPS = [3, 2, 4]  # three clinical features: one-hot blocks, each ending with its missing indicator
NAMES = ["sex", "smoke", "region"]
SIZE = 64


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No hub, no wandb from an explanation test; one torch thread (the CPU is shared)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("WANDB_MODE", "disabled")
    torch.set_num_threads(1)


def one_hot_meta(labels: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Encoded metadata like ``dermfuse_data.tabular`` emits (one known value per feature block, the
    block's last column being its missing indicator); the first feature's value is the label (mod its
    width - 1) so that a model can learn to use it, the others are random."""
    g = torch.Generator().manual_seed(seed)
    batch = labels.shape[0]
    parts = []
    for i, width in enumerate(GROUPS):
        block = torch.zeros(batch, width)
        value = labels % (width - 1) if i == 0 else torch.randint(0, width - 1, (batch,), generator=g)
        block[torch.arange(batch), value] = 1.0
        parts.append(block)
    return torch.cat(parts, dim=1)


def lesion_batch(n: int, n_classes: int = 3, size: int = SIZE, seed: int = 0):
    """``(images, masks, labels)``: ``n`` synthetic lesions (``dermfuse_data.synthetic.draw_lesion``)
    whose class sets the lesion's colour/texture, normalised like the DataModule does, with masks."""
    import numpy as np

    from dermfuse_data.synthetic.lesions import draw_lesion
    from dermfuse_data.transforms import IMAGENET_MEAN, IMAGENET_STD

    rng = np.random.default_rng(seed)
    pics, masks = [], []
    labels = torch.arange(n) % n_classes
    for c in labels.tolist():
        pic, mask = draw_lesion(rng, size, c, n_classes)
        pics.append(pic)
        masks.append(mask)
    x = torch.from_numpy(np.stack(pics)).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]
    # contiguous NCHW: permuted (channels-last strided) input makes EAMNet's CPU backward crash (torch 2.15)
    return x.contiguous(), torch.from_numpy(np.stack(masks))[:, None].float(), labels


def fit_briefly(net: nn.Module, steps: int = 20, n_classes: int = 3, seed: int = 0, lr: float = 2e-3) -> nn.Module:
    """A few Adam steps on synthetic lesions (+ metadata, masks) so maps are not those of a random net."""
    from dermfuse_xai.model_io import LogitsModel

    torch.manual_seed(seed)
    x, masks, labels = lesion_batch(24, n_classes, SIZE, seed)
    meta = one_hot_meta(labels, seed)
    model = LogitsModel(net)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    for _ in range(steps):
        idx = torch.randperm(24)[:12]
        loss = nn.functional.cross_entropy(model(x[idx], meta[idx], masks[idx]), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def make_seg_net(kind: str) -> nn.Module:
    """A small, seeded, eval-mode segmentation net: ``"eamnet"`` (EAM-Net, every module on, 8 base
    channels) or ``"deepunet"`` (DualNet's stage-1 Deep-UNet on timm's ``test_efficientnet``)."""
    torch.manual_seed(0)
    if kind == "eamnet":
        from dermfuse_models.nets.eamnet import EAMNet

        net = EAMNet(base_channels=8, blocks_per_stage=1, memory_size=16, fusion_channels=8)
    elif kind == "deepunet":
        from dermfuse_models.nets.dualnet_unet import DeepUNet

        net = DeepUNet(encoder="test_efficientnet", decoder_channels=(32, 16, 16, 8), aspp_rates=(2, 4))
    else:
        raise ValueError(kind)
    return net.eval()


def fit_seg_briefly(net: nn.Module, steps: int = 15, seed: int = 0, lr: float = 3e-3, batch: int = 8) -> nn.Module:
    """A few Adam steps of BCE + soft Dice on synthetic lesion masks (64 px): enough for Dice > 0.8."""
    from dermfuse_xai.model_io import LogitsModel

    torch.manual_seed(seed)
    x, masks, _ = lesion_batch(32, 3, SIZE, seed)
    model = LogitsModel(net)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    for _ in range(steps):
        idx = torch.randperm(32)[:batch]
        logits = model(x[idx])
        prob, target = logits.sigmoid().flatten(1), masks[idx].flatten(1)
        soft_dice = 1 - (2 * (prob * target).sum(1) + 1) / (prob.sum(1) + target.sum(1) + 1)
        loss = nn.functional.binary_cross_entropy_with_logits(logits, masks[idx]) + soft_dice.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def make_net(kind: str) -> nn.Module:
    """A small, seeded, eval-mode instance of one paper's net (``kind``) or a bare timm CNN (in ``ImageOnlyNet``)."""
    torch.manual_seed(0)
    if kind == "vitatt":
        from dermfuse_models.nets.vitatt import ViTAtt

        net = ViTAtt(num_classes=3, meta_groups=GROUPS, meta_names=NAMES, backbone="test_vit", img_size=SIZE)
    elif kind == "msvit":
        from dermfuse_models.nets.msvit import MSViT

        net = MSViT(num_classes=3, backbone="test_vit", img_size=SIZE, scales=(1, 2))
    elif kind in ("mammo_xattn", "mammo_xattn_co"):
        from dermfuse_models.nets.mammo_xattn import MammoXAttn

        net = MammoXAttn(
            num_classes=3,
            meta_groups=GROUPS,
            meta_names=NAMES,
            backbone="test_resnet",
            latent_dim=16,
            num_heads=2,
            fusion="co" if kind.endswith("co") else "cross",
        )
    elif kind == "dualnet":
        from dermfuse_models.nets.dualnet_classifier import DualNetClassifier

        net = DualNetClassifier(
            num_classes=3,
            meta_groups=GROUPS,
            meta_names=NAMES,
            encoder="densenet121",
            encoder_kwargs={"growth_rate": 8, "block_config": (1, 1, 1, 1)},
            embed_dim=32,
            num_heads=4,
            meta_heads=2,
        )
    elif kind == "timm_cnn":
        import timm

        from dermfuse_models.protocol import ImageOnlyNet

        net = ImageOnlyNet(timm.create_model("test_resnet", num_classes=3))
    else:
        raise ValueError(kind)
    return net.eval()


SEG_KINDS = ("eamnet", "deepunet")


@pytest.fixture(scope="session")
def fitted():
    """kind -> briefly fitted net, built lazily, once per session: a classifier (:func:`make_net`) after 40 steps
    of :func:`fit_briefly` (at 20, dualnet's segmented branch, whose tokens are attention keys only, can still
    have no positive Grad-CAM evidence on an image; dualnet gets 80: with its nn.MultiheadAttention init draw one
    of three images lacked positive evidence in one branch at 40, 60 and 100 steps, none at 80, measured), a
    segmentation net (:data:`SEG_KINDS`) after 15 steps of :func:`fit_seg_briefly`. Tests must not change the
    nets (explain a :func:`randomized_copy` instead)."""
    cache: dict[str, nn.Module] = {}

    def get(kind: str) -> nn.Module:
        if kind not in cache:
            cache[kind] = (
                fit_seg_briefly(make_seg_net(kind), steps=15)
                if kind in SEG_KINDS
                else fit_briefly(make_net(kind), steps=80 if kind == "dualnet" else 40)
            )
        return cache[kind]

    return get


@pytest.fixture(scope="session")
def kit():
    """The helpers above in one namespace (test modules cannot import conftest under importlib mode)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        make_net=make_net,
        lesion_batch=lesion_batch,
        one_hot_meta=one_hot_meta,
        fit_briefly=fit_briefly,
        make_seg_net=make_seg_net,
        fit_seg_briefly=fit_seg_briefly,
        GROUPS=GROUPS,
        NAMES=NAMES,
        SIZE=SIZE,
    )
