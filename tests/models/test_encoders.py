"""create_encoder: offline failure is fast and clear, local weights files load exactly."""

import time

import pytest
import timm
import torch

from dermfuse_models.encoders import create_encoder


def test_default_is_random_init_offline():
    model = create_encoder("resnet18", num_classes=4).eval()
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 4)


def test_pretrained_offline_fails_fast_with_weights_path_hint(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # an empty hub cache, so a developer's cached resnet18 weights cannot make this pass silently
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="weights_path") as info:
        create_encoder("resnet18", pretrained=True)
    assert time.monotonic() - start < 5
    assert "resnet18" in str(info.value) and "hub" in str(info.value)


def test_hub_offline_flag_restored_after_failure(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # as if imported without the variable
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = constants.HF_HUB_OFFLINE
    with pytest.raises(RuntimeError):
        create_encoder("resnet18", pretrained=True)
    assert before == constants.HF_HUB_OFFLINE


def test_missing_weights_file_is_file_not_found(tmp_path):
    missing = tmp_path / "nope" / "resnet18.pth"
    with pytest.raises(FileNotFoundError, match="resnet18.pth"):
        create_encoder("resnet18", weights_path=str(missing))


def _save(model: torch.nn.Module, path) -> None:
    if str(path).endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    else:
        torch.save(model.state_dict(), path)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_weights_file_loads_identical_parameters(tmp_path, suffix):
    torch.manual_seed(0)
    source = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / f"resnet18{suffix}"
    _save(source, path)
    torch.manual_seed(1)  # a different random init, so equality can only come from the file
    loaded = create_encoder("resnet18", weights_path=path)
    fresh = create_encoder("resnet18")
    src, dst = source.state_dict(), loaded.state_dict()
    assert src.keys() == dst.keys()
    for key in src:
        torch.testing.assert_close(dst[key], src[key], rtol=0, atol=0)
    assert not torch.equal(fresh.conv1.weight, source.conv1.weight)


def test_local_weights_with_new_head_keep_backbone(tmp_path):
    """timm drops a classifier whose class count differs (fine-tuning); the backbone is loaded."""
    torch.manual_seed(0)
    source = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "resnet18.pth"
    _save(source, path)
    loaded = create_encoder("resnet18", weights_path=path, num_classes=3)
    assert loaded.fc.out_features == 3
    torch.testing.assert_close(loaded.layer4[1].conv2.weight, source.layer4[1].conv2.weight, rtol=0, atol=0)
