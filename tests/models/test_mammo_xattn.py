"""MammoXAttn (arXiv 2508.16000): fusion switches, modality dropout, ResNet-50 branch, FreezeBackbone."""

import math
from functools import partial

import pytest
import pytorch_lightning as pl
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from dermfuse_models.blocks.cross_attention import CrossAttentionFusion
from dermfuse_models.blocks.fusion import ModalityDropout
from dermfuse_models.blocks.metadata import MetadataTokenizer
from dermfuse_models.encoders import create_encoder
from dermfuse_models.nets.mammo_xattn import FUSIONS, MammoXAttn
from dermfuse_models.runner.callbacks import FreezeBackbone
from dermfuse_models.tasks.classification import ClassificationTask
from tests.models._support import quiet_trainer

GROUPS = [5, 9, 6, 15, 6]  # CBIS-DDSM density, mass shape/margins, calc type/distribution (+ missing flags)
SMALL = "resnet10t"  # timm ResNet with layer4, fast on CPU
SIZE = 32  # layer-4 grid 1 x 1
GRID_SIZE = 64  # layer-4 grid 2 x 2: four image tokens, so attention over image locations is not trivial


def _meta(batch: int, seed: int = 0) -> torch.Tensor:
    """One active one-hot column per feature, like encoded clinical rows."""
    g = torch.Generator().manual_seed(seed)
    meta = torch.zeros(batch, sum(GROUPS))
    start = 0
    for width in GROUPS:
        meta[torch.arange(batch), start + torch.randint(width, (batch,), generator=g)] = 1.0
        start += width
    return meta


def _net(fusion: str = "cross", **kwargs) -> MammoXAttn:
    torch.manual_seed(0)
    groups = None if fusion == "image" else GROUPS
    return MammoXAttn(num_classes=2, meta_groups=groups, backbone=SMALL, fusion=fusion, **kwargs)


def _images(batch: int, seed: int = 0, size: int = SIZE) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _unzero_residual_gammas(net: nn.Module) -> None:
    """Give every zero-initialised BatchNorm scale the value 1.

    timm ResNets start the last BN of each residual branch at gamma = 0 (``zero_init_last``), so
    at initialisation the branch's earlier convs and BNs get exactly zero gradient. ImageNet
    weights (the paper's setting) have non-zero gammas; with them every parameter must train.
    """
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d) and not module.weight.detach().any():
            nn.init.ones_(module.weight)


def _attention_modules(net: MammoXAttn) -> list[nn.MultiheadAttention]:
    if net.cross_attention is not None:
        return [net.cross_attention.attention]
    if net.co_attention is not None:
        return [net.co_attention.a_to_b.attention, net.co_attention.b_to_a.attention]
    return []


# ----------------------------------------------------------------------------- modality dropout
def test_modality_dropout_rate_training_only():
    dropout = ModalityDropout(p=0.3).train()
    image, clinical = torch.ones(20_000, 4), torch.ones(20_000, 3, 4)
    torch.manual_seed(0)
    (img_out,), (clin_out,) = dropout([[image], [clinical]])
    image_dropped = img_out.abs().sum(1) == 0
    clinical_dropped = clin_out.abs().sum((1, 2)) == 0
    assert not (image_dropped & clinical_dropped).any()  # never both modalities
    rate = (image_dropped | clinical_dropped).float().mean().item()
    assert rate == pytest.approx(0.3, abs=0.015)
    assert image_dropped.float().mean().item() == pytest.approx(0.15, abs=0.015)
    assert torch.equal(~dropout.last_keep, torch.stack([image_dropped, clinical_dropped], 1))
    kept = ~(image_dropped | clinical_dropped)
    assert torch.equal(img_out[kept], image[kept])  # kept samples are not rescaled
    dropout.eval()
    (img_eval,), (clin_eval,) = dropout([[image], [clinical]])
    assert torch.equal(img_eval, image) and torch.equal(clin_eval, clinical)


def test_net_modality_dropout_zeroes_embeddings_in_training_and_never_in_eval():
    net = _net("concat")
    seen = []
    net.modality_dropout.register_forward_hook(lambda m, i, out: seen.append((out, m.last_keep.clone())))
    net.train()
    net(_images(64), _meta(64))
    (image_parts, clinical_parts), keep = seen[-1]
    assert torch.equal(image_parts[0].abs().sum(1) == 0, ~keep[:, 0])
    assert torch.equal(clinical_parts[0].abs().sum(1) == 0, ~keep[:, 1])
    assert 0 < (~keep).any(1).sum() < 64
    net.eval()
    x, meta = _images(4), _meta(4)
    with torch.no_grad():
        first, second = net(x, meta)["logits"], net(x, meta)["logits"]
    torch.testing.assert_close(first, second)
    assert bool(seen[-1][1].all())


# ----------------------------------------------------------------------------- fusion switches
@pytest.mark.parametrize("fusion", FUSIONS)
def test_forward_backward_every_parameter_gets_a_nonzero_gradient(fusion):
    net = _net(fusion, modality_dropout=0.0).train()
    _unzero_residual_gammas(net)
    out = net(_images(2, size=GRID_SIZE), _meta(2))
    assert out["logits"].shape == (2, 2)
    F.cross_entropy(out["logits"], torch.tensor([0, 1])).backward()
    params = list(net.named_parameters())
    assert all(p.requires_grad for _, p in params)
    no_grad = [n for n, p in params if p.grad is None or not torch.isfinite(p.grad).all()]
    zero_grad = [n for n, p in params if p.grad is not None and p.grad.abs().sum() == 0]
    assert no_grad == [] and zero_grad == []
    # Inside nn.MultiheadAttention's packed in_proj_bias the *key* bias adds the same amount to
    # every score of a query, which softmax ignores: its gradient is zero by construction (up to
    # rounding). The query and value biases train.
    for attention in _attention_modules(net):
        q_bias, k_bias, v_bias = attention.in_proj_bias.grad.view(3, -1).abs().sum(dim=1)
        assert q_bias > 0 and v_bias > 0 and k_bias < 1e-6 * v_bias


def test_each_fusion_uses_the_inputs_it_names():
    x, x2, meta, meta2 = _images(3, 0), _images(3, 1), _meta(3, 0), _meta(3, 1)

    def logits(net, image, m):
        with torch.no_grad():
            return net(image, m)["logits"]

    for fusion in ("cross", "co", "concat", "image", "clinical"):
        net = _net(fusion).eval()
        base = logits(net, x, meta)
        meta_changes = not torch.allclose(base, logits(net, x, meta2))
        image_changes = not torch.allclose(base, logits(net, x2, meta))
        assert meta_changes == (fusion != "image"), fusion
        assert image_changes == (fusion != "clinical"), fusion
    assert _net("clinical").backbone is None
    assert _net("image")(x)["logits"].shape == (3, 2)  # image-only needs no meta


def test_fusions_differ_in_structure_and_keep_attention_maps():
    cross, co = _net("cross").eval(), _net("co").eval()
    with torch.no_grad():
        cross(_images(2), _meta(2))
        co(_images(2), _meta(2))
    names = tuple(f"meta_{i}" for i in range(len(GROUPS)))
    to_clinical = cross.attention_maps["image_to_clinical"]
    assert to_clinical.keys == "feature_tokens" and to_clinical.names == names  # keys = the clinical features
    weights = to_clinical.weights
    assert weights.shape == (2, 4, 1, len(GROUPS)) and not weights.requires_grad
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4, 1))
    grid = 1  # resnet10t at 32 px: layer4 is 1 x 1 (see the GRID_SIZE tests for 2 x 2)
    assert co.attention_maps["image_to_clinical"].weights.shape == (2, 4, grid, len(GROUPS))
    assert co.attention_maps["image_to_clinical"].keys == "feature_tokens"
    assert co.attention_maps["clinical_to_image"].weights.shape == (2, 4, len(GROUPS), grid)
    assert co.attention_maps["clinical_to_image"].keys == "image_grid"
    assert co.attention_maps["clinical_to_image"].grid == (grid, grid)
    assert _net("concat").attention_maps == {} and _net("concat").cross_attention is None
    assert co.classifier[0].in_features == 4 * 100 and cross.classifier[0].in_features == 2 * 100
    assert isinstance(cross.clinical_tokens, MetadataTokenizer)  # the shared per-feature tokenizer, Eq. 3 per feature
    assert cross.clinical_tokens.norms is None and cross.clinical_tokens.feature_embed is None
    assert isinstance(cross.cross_attention, CrossAttentionFusion) and not cross.cross_attention.residual
    assert cross.cross_attention.value_source == "key"  # K and V from the clinical tokens


def _record_attention_inputs(attention: nn.MultiheadAttention, store: list) -> object:
    """Forward pre-hook keeping the (query, key, value) an attention module is called with."""
    return attention.register_forward_pre_hook(lambda module, args, kwargs: store.append(args[:3]), with_kwargs=True)


def _reference_weights(attention: nn.MultiheadAttention, query: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    """``softmax(Q K^T / sqrt(d_h))`` per head, recomputed from the module's own projections."""
    d, heads = attention.embed_dim, attention.num_heads
    w_q, w_k, _ = attention.in_proj_weight.chunk(3)
    b_q, b_k, _ = attention.in_proj_bias.chunk(3)

    def split(x: torch.Tensor) -> torch.Tensor:  # (B, N, d) -> (B, heads, N, d / heads)
        return x.view(x.shape[0], x.shape[1], heads, d // heads).transpose(1, 2)

    q, k = split(query @ w_q.T + b_q), split(context @ w_k.T + b_k)
    return (q @ k.transpose(-2, -1) / math.sqrt(d // heads)).softmax(dim=-1)


@pytest.mark.parametrize("num_heads", [4, 5])
@pytest.mark.parametrize("fusion", ["cross", "co"])
def test_attention_queries_and_keys_come_from_the_named_modality(fusion, num_heads):
    """At 64 px (four layer-4 image tokens): ``cross`` = Q image embedding, K/V clinical tokens;
    ``co`` = image locations -> clinical tokens and clinical tokens -> image locations."""
    net = _net(fusion, num_heads=num_heads).eval()
    x, meta = _images(2, size=GRID_SIZE), _meta(2)
    calls: list[list] = [[] for _ in _attention_modules(net)]
    handles = [_record_attention_inputs(a, c) for a, c in zip(_attention_modules(net), calls, strict=True)]
    try:
        with torch.no_grad():
            net(x, meta)
            fmap = net.backbone.forward_features(x)
            image_embedding = net.image_proj(fmap.mean(dim=(2, 3)))  # e, (B, d)
            image_tokens = net.image_proj(fmap.flatten(2).transpose(1, 2))  # (B, 4, d)
            clinical_tokens = net.clinical_tokens(meta)  # (B, 5, d)
    finally:
        for handle in handles:
            handle.remove()
    assert image_tokens.shape == (2, 4, 100) and clinical_tokens.shape == (2, len(GROUPS), 100)
    assert {name: m.keys for name, m in net.attention_maps.items()} == (
        {"image_to_clinical": "feature_tokens"}
        if fusion == "cross"
        else {"image_to_clinical": "feature_tokens", "clinical_to_image": "image_grid"}
    )
    if fusion == "co":
        assert net.attention_maps["clinical_to_image"].grid == (2, 2)  # the four layer-4 locations
    maps = {name: m.weights for name, m in net.attention_maps.items()}
    if fusion == "cross":
        ((query, key, value),) = calls[0]
        torch.testing.assert_close(query, image_embedding[:, None])
        torch.testing.assert_close(key, clinical_tokens)
        torch.testing.assert_close(value, clinical_tokens)
        assert set(maps) == {"image_to_clinical"} and maps["image_to_clinical"].shape == (2, num_heads, 1, 5)
        expected = _reference_weights(net.cross_attention.attention, image_embedding[:, None], clinical_tokens)
        torch.testing.assert_close(maps["image_to_clinical"], expected, atol=1e-5, rtol=1e-4)
        return
    ((q_ab, k_ab, v_ab),), ((q_ba, k_ba, v_ba),) = calls
    torch.testing.assert_close(q_ab, image_tokens)  # image locations query ...
    torch.testing.assert_close(k_ab, clinical_tokens)  # ... the clinical tokens
    torch.testing.assert_close(v_ab, clinical_tokens)
    torch.testing.assert_close(q_ba, clinical_tokens)  # clinical tokens query ...
    torch.testing.assert_close(k_ba, image_tokens)  # ... the image locations
    torch.testing.assert_close(v_ba, image_tokens)
    assert maps["image_to_clinical"].shape == (2, num_heads, 4, 5)
    assert maps["clinical_to_image"].shape == (2, num_heads, 5, 4)
    a_to_b, b_to_a = net.co_attention.a_to_b.attention, net.co_attention.b_to_a.attention
    torch.testing.assert_close(
        maps["image_to_clinical"], _reference_weights(a_to_b, image_tokens, clinical_tokens), atol=1e-5, rtol=1e-4
    )
    torch.testing.assert_close(
        maps["clinical_to_image"], _reference_weights(b_to_a, clinical_tokens, image_tokens), atol=1e-5, rtol=1e-4
    )
    # with four keys the clinical -> image attention is a real distribution, not the constant 1
    assert maps["clinical_to_image"].amax() < 0.999 and maps["clinical_to_image"].std(dim=-1).min() > 0


@pytest.mark.parametrize("fusion", ["cross", "co"])
def test_num_heads_switch_changes_the_attention_with_the_same_weights(fusion):
    four, five = _net(fusion, num_heads=4).eval(), _net(fusion, num_heads=5).eval()
    five.load_state_dict(four.state_dict())  # head count has no parameters of its own
    x, meta = _images(2, size=GRID_SIZE), _meta(2)
    with torch.no_grad():
        logits_four, logits_five = four(x, meta)["logits"], five(x, meta)["logits"]
    assert four.attention_maps["image_to_clinical"].weights.shape[1] == 4
    assert five.attention_maps["image_to_clinical"].weights.shape[1] == 5
    assert not torch.allclose(logits_four, logits_five, atol=1e-6)
    assert [a.head_dim for a in _attention_modules(five)] == [20] * len(_attention_modules(five))


@pytest.mark.parametrize("fusion", ["cross", "co", "concat"])
def test_latent_dim_switch_sets_the_width_of_every_embedding(fusion):
    net = _net(fusion, latent_dim=40, num_heads=4).eval()
    seen: dict[str, list[torch.Tensor]] = {"image": [], "clinical": []}
    handles = [net.image_proj.register_forward_hook(lambda m, i, o: seen["image"].append(o) and None)]
    tokens = net.clinical_tokens if net.clinical_tokens is not None else net.clinical_proj
    handles.append(tokens.register_forward_hook(lambda m, i, o: seen["clinical"].append(o) and None))
    try:
        with torch.no_grad():
            out = net(_images(2, size=GRID_SIZE), _meta(2))
    finally:
        for handle in handles:
            handle.remove()
    assert out["logits"].shape == (2, 2)
    image_shapes = [tuple(t.shape) for t in seen["image"]]
    assert image_shapes == ([(2, 40), (2, 4, 40)] if fusion == "co" else [(2, 40)])  # e (+ layer-4 tokens)
    assert [t.shape[-1] for t in seen["clinical"]] == [40]
    assert all(a.embed_dim == 40 and a.head_dim == 10 for a in _attention_modules(net))
    assert net.classifier[0].in_features == {"cross": 80, "co": 160, "concat": 80}[fusion]


def test_cam_layers_and_clear_errors():
    net = _net("cross")
    assert net.cam_layers() == {"image": net.backbone.layer4}
    assert _net("clinical").cam_layers() == {}
    with pytest.raises(ValueError, match="fusion"):
        _net("late")
    with pytest.raises(ValueError, match="meta_groups"):
        MammoXAttn(num_classes=2, backbone=SMALL, fusion="cross")
    with pytest.raises(ValueError, match="divisible"):
        _net("cross", num_heads=3)
    with pytest.raises(ValueError, match="meta"):
        net(_images(2))
    with pytest.raises(ValueError, match="shape"):
        net(_images(2), torch.zeros(2, 7))


def test_paper_resnet50_branch_has_timms_parameter_count():
    with torch.device("meta"):
        with_head = create_encoder("resnet50")
        net = MammoXAttn(num_classes=2, meta_groups=[4, 8, 5, 14, 5], fusion="cross")
        timm_resnet50 = timm.create_model("resnet50", pretrained=False)
        timm_headless = timm.create_model("resnet50", pretrained=False, num_classes=0)
    timm_count = sum(p.numel() for p in timm_resnet50.parameters())
    headless_count = sum(p.numel() for p in timm_headless.parameters())
    assert 25.5e6 < timm_count < 25.6e6  # the ResNet-50 everyone quotes (25.6 M)
    assert sum(p.numel() for p in with_head.parameters()) == timm_count
    assert sum(p.numel() for p in net.backbone.parameters()) == headless_count
    assert timm_count - headless_count == 2048 * 1000 + 1000  # only the ImageNet classifier is dropped
    assert net.image_proj[0].in_features == 2048 and net.latent_dim == 100
    assert net.cross_attention.attention.num_heads == 4


# ----------------------------------------------------------------------------- FreezeBackbone
class _MammoSet(Dataset):
    def __init__(self, n: int) -> None:
        self.images, self.meta = _images(n), _meta(n)
        self.labels = torch.arange(n) % 2

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "meta": self.meta[i], "label": self.labels[i]}


LOWER_STAGES = ["conv1", "bn1", "layer1", "layer2", "layer3"]  # experiments/mammo_xattn/config.yaml


class _Recorder(pl.Callback):
    """At the first batch of each epoch: backbone trainability, optimiser groups, BN mode, weights (also of the
    lower stages and of layer4 apart)."""

    def __init__(self) -> None:
        self.epochs: list[dict] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx:
            return
        backbone = pl_module.net.backbone
        optimizer = trainer.optimizers[0]
        lower = [p for name in LOWER_STAGES for p in backbone.get_submodule(name).parameters()]
        lower_modules = [m for name in LOWER_STAGES for m in backbone.get_submodule(name).modules()]
        self.epochs.append(
            {
                "lower_grad": {p.requires_grad for p in lower},
                "top_grad": {p.requires_grad for p in backbone.layer4.parameters()},
                "lower": [p.detach().clone() for p in lower],
                "top": [p.detach().clone() for p in backbone.layer4.parameters()],
                "lower_params": set(lower),
                "lower_bn_training": {m.training for m in lower_modules if isinstance(m, nn.BatchNorm2d)},
                "requires_grad": {p.requires_grad for p in backbone.parameters()},
                "groups": [list(g["params"]) for g in optimizer.param_groups],
                "lrs": [g["lr"] for g in optimizer.param_groups],
                "bn_training": {m.training for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)},
                "conv1": backbone.conv1[0].weight.detach().clone(),
            }
        )


def _fit_with_freeze(freeze_mode: str, frozen_modules: list[str] | None = None) -> tuple[MammoXAttn, list[dict]]:
    net = _net("cross")
    task = ClassificationTask(net, class_weights=None, optimizer=partial(torch.optim.Adam, lr=1e-2))
    recorder = _Recorder()
    freeze = FreezeBackbone(unfreeze_at_epoch=1, lr_factor=0.1, freeze_mode=freeze_mode, frozen_modules=frozen_modules)
    trainer = quiet_trainer(max_epochs=3, limit_val_batches=0, callbacks=[freeze, recorder])
    trainer.fit(task, DataLoader(_MammoSet(8), batch_size=4))
    return net, recorder.epochs


def test_freeze_backbone_unfreezes_at_the_epoch_and_adds_a_param_group():
    net, (before, at_unfreeze, after) = _fit_with_freeze("auto")  # one process: requires_grad mode
    backbone_params = set(net.backbone.parameters())
    assert before["requires_grad"] == {False} and before["bn_training"] == {False}
    assert len(before["groups"]) == 1 and not backbone_params & set(before["groups"][0])
    assert at_unfreeze["requires_grad"] == {True} and at_unfreeze["bn_training"] == {True}
    assert len(at_unfreeze["groups"]) == 2 and set(at_unfreeze["groups"][1]) == backbone_params
    assert at_unfreeze["lrs"][1] == pytest.approx(0.1 * at_unfreeze["lrs"][0])
    assert torch.equal(before["conv1"], at_unfreeze["conv1"])  # frozen during epoch 0
    assert not torch.equal(at_unfreeze["conv1"], after["conv1"])  # trained from epoch 1


def test_freeze_backbone_zero_lr_mode_for_ddp_keeps_grads_but_not_updates():
    net, (before, at_unfreeze, after) = _fit_with_freeze("zero_lr")
    backbone_params = set(net.backbone.parameters())
    assert before["requires_grad"] == {True} and before["bn_training"] == {False}  # DDP sees every param
    assert len(before["groups"]) == 2 and set(before["groups"][1]) == backbone_params
    assert not backbone_params & set(before["groups"][0]) and before["lrs"][1] == 0.0
    assert torch.equal(before["conv1"], at_unfreeze["conv1"])  # lr 0: unchanged during epoch 0
    assert at_unfreeze["lrs"][1] == pytest.approx(0.1 * at_unfreeze["lrs"][0]) and at_unfreeze["bn_training"] == {True}
    assert not torch.equal(at_unfreeze["conv1"], after["conv1"])


def test_freeze_backbone_lower_stages_only_trains_layer4_from_the_start():
    """frozen_modules freezes what it names (stem + layer1-3) and nothing else; they join at unfreeze."""
    net, (before, at_unfreeze, after) = _fit_with_freeze("auto", LOWER_STAGES)
    assert before["lower_grad"] == {False} and before["top_grad"] == {True} and before["lower_bn_training"] == {False}
    assert all(torch.equal(a, b) for a, b in zip(before["lower"], at_unfreeze["lower"], strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(before["top"], at_unfreeze["top"], strict=True))
    first_group = set(before["groups"][0])
    assert not before["lower_params"] & first_group and set(net.backbone.layer4.parameters()) <= first_group
    assert at_unfreeze["lower_grad"] == {True} and set(at_unfreeze["groups"][1]) == before["lower_params"]
    assert any(not torch.equal(a, b) for a, b in zip(at_unfreeze["lower"], after["lower"], strict=True))
    task = ClassificationTask(net, class_weights=None)
    with pytest.raises(AttributeError, match=r"no submodule 'layer9'.*children"):
        FreezeBackbone(frozen_modules=["layer9"]).freeze_before_training(task)


def test_freeze_backbone_errors_and_no_backbone():
    task = ClassificationTask(_net("clinical"), class_weights=None)
    FreezeBackbone().freeze_before_training(task)  # clinical-only: nothing to freeze, no error
    with pytest.raises(AttributeError, match="backbone_attr"):
        FreezeBackbone(backbone_attr="net.encoder").freeze_before_training(task)
    with pytest.raises(ValueError, match="lr_factor"):
        FreezeBackbone(lr_factor=0)
    with pytest.raises(ValueError, match="freeze_mode"):
        FreezeBackbone(freeze_mode="detach")


def test_timm_small_backbone_is_a_resnet():
    assert hasattr(timm.create_model(SMALL, num_classes=0), "layer4")
