"""MammoXAttn (arXiv 2508.16000): fusion switches, modality dropout, ResNet-50 branch, FreezeBackbone."""

import pytest
import pytorch_lightning as pl
import timm
import torch
from torch.utils.data import DataLoader, Dataset

from dermfuse_models.blocks.fusion import ClinicalTokenProjection, CrossAttentionFusion, ModalityDropout
from dermfuse_models.callbacks import FreezeBackbone
from dermfuse_models.encoders import create_encoder
from dermfuse_models.nets.mammo_xattn import MammoXAttn
from dermfuse_models.tasks.classification import ClassificationTask

GROUPS = [5, 9, 6, 15, 6]  # CBIS-DDSM density, mass shape/margins, calc type/distribution (+ missing flags)
SMALL = "resnet10t"  # timm ResNet with layer4, fast on CPU
SIZE = 32


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


def _images(batch: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


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
@pytest.mark.parametrize("fusion", ["cross", "co", "concat", "image", "clinical"])
def test_forward_backward_every_parameter_trains(fusion):
    net = _net(fusion, modality_dropout=0.0).train()
    out = net(_images(2), _meta(2))
    assert out["logits"].shape == (2, 2)
    out["logits"].sum().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None]
    assert missing == []


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
    weights = cross.attention_maps["image_to_clinical"]
    assert weights.shape == (2, 4, 1, len(GROUPS)) and not weights.requires_grad
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4, 1))
    grid = 1  # resnet10t at 32 px: layer4 is 1 x 1
    assert co.attention_maps["image_to_clinical"].shape == (2, 4, grid, len(GROUPS))
    assert co.attention_maps["clinical_to_image"].shape == (2, 4, len(GROUPS), grid)
    assert _net("concat").attention_maps == {} and _net("concat").cross_attention is None
    assert co.classifier[0].in_features == 4 * 100 and cross.classifier[0].in_features == 2 * 100
    assert isinstance(cross.clinical_tokens, ClinicalTokenProjection)
    assert isinstance(cross.cross_attention, CrossAttentionFusion)


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
    assert sum(p.numel() for p in with_head.parameters()) == 25_557_032
    assert sum(p.numel() for p in net.backbone.parameters()) == 23_508_032
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


class _Recorder(pl.Callback):
    """At the first batch of each epoch: backbone trainability, optimiser groups, BN mode, weights."""

    def __init__(self) -> None:
        self.epochs: list[dict] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx:
            return
        backbone = pl_module.net.backbone
        optimizer = trainer.optimizers[0]
        self.epochs.append({
            "requires_grad": {p.requires_grad for p in backbone.parameters()},
            "groups": [list(g["params"]) for g in optimizer.param_groups],
            "lrs": [g["lr"] for g in optimizer.param_groups],
            "bn_training": {m.training for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)},
            "conv1": backbone.conv1[0].weight.detach().clone(),
        })


def _fit_with_freeze(freeze_mode: str) -> tuple[MammoXAttn, list[dict]]:
    net = _net("cross")
    task = ClassificationTask(net, class_weights=None, lr=1e-2)
    recorder = _Recorder()
    trainer = pl.Trainer(
        max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0,
        callbacks=[FreezeBackbone(unfreeze_at_epoch=1, lr_factor=0.1, freeze_mode=freeze_mode), recorder],
    )
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
