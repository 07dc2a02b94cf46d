"""Encoder factory: every backbone comes from ``timm.create_model`` (DESIGN.md, Models).

``pretrained`` defaults to ``False`` so everything works offline. For clusters without
internet, pass ``weights_path`` (a ``.pth``/``.bin``/``.safetensors`` state dict saved from the
same timm architecture); a hub download that cannot happen is turned into a clear error that
says how to do that instead of hanging or raising a bare ``LocalEntryNotFoundError``.
"""

from __future__ import annotations

import contextlib
import difflib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import timm
import torch.nn as nn

_TRUE = {"1", "on", "yes", "true", "y"}


def _hub_offline_requested() -> bool:
    """Whether ``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` is set *now* (not at import time)."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().lower() in _TRUE


@contextlib.contextmanager
def _hub_offline_mode(enabled: bool) -> Iterator[None]:
    """Force huggingface_hub's offline mode for the duration of the block.

    huggingface_hub reads ``HF_HUB_OFFLINE`` once, at import; an environment variable set later
    (a test's ``monkeypatch.setenv``, a notebook cell) would otherwise be ignored and a download
    would wait for a network timeout (~50 s to ~13 min, STACK_NOTES.md).
    """
    if not enabled:
        yield
        return
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - timm falls back to URL downloads
        yield
        return
    previous = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = previous


def _download_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean "the weights could not be fetched"."""
    errors: list[type[BaseException]] = [OSError, ConnectionError, TimeoutError]
    try:
        from huggingface_hub import errors as hf_errors

        errors += [hf_errors.LocalEntryNotFoundError, hf_errors.HfHubHTTPError]
    except ImportError:  # pragma: no cover
        pass
    for module_name in ("httpx", "requests"):
        with contextlib.suppress(ImportError):
            module = __import__(module_name)
            base = getattr(module, "HTTPError", None) or getattr(module, "RequestException", None)
            if isinstance(base, type) and issubclass(base, BaseException):
                errors.append(base)
    return tuple(errors)


def check_model_name(name: str) -> None:
    """A one-line ``ValueError`` naming timm's closest architectures when ``name`` is not one of them.

    Hub names (``hf-hub:org/repo``, ``local-dir:...``) are left to timm. Tags (``resnet50.a1_in1k``) are fine.
    """
    if ":" in name or timm.is_model(name):
        return
    close = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.6)
    family = name.split("_")[0].rstrip("0123456789") or name
    raise ValueError(
        f"unknown timm model {name!r}"
        + (f"; did you mean {', '.join(close)}?" if close else "")
        + f" (all names: python -c \"import timm; print(timm.list_models('{family}*'))\")"
    )


def create_encoder(
    name: str, pretrained: bool = False, weights_path: str | os.PathLike[str] | None = None, **timm_kwargs: Any
) -> nn.Module:
    """Create a timm model, optionally with pretrained weights from the hub or a local file.

    Args:
        name: timm model name, e.g. ``"vit_base_patch16_224"`` or ``"resnet18"``.
        pretrained: load pretrained weights. From ``weights_path`` when given, else from the
            Hugging Face hub (respecting ``HF_HUB_OFFLINE=1`` read at call time: fails in <1 s
            unless the weights are already in the local hub cache).
        weights_path: local state-dict file for the same architecture; implies ``pretrained``.
            Loaded through timm (``pretrained_cfg_overlay=dict(file=...)``), so timm's usual
            adaptation applies (classifier dropped when ``num_classes`` differs, pos-embed
            resampling for ViTs at a new ``img_size``, ...).
        **timm_kwargs: forwarded to ``timm.create_model`` (``num_classes``, ``img_size``,
            ``dynamic_img_size``, ``drop_rate``, ``features_only``, ...).

    Raises:
        ValueError: ``name`` is not a timm architecture (the message names the closest ones).
        FileNotFoundError: ``weights_path`` does not point to a file.
        RuntimeError: the hub could not be reached (offline, DNS, HTTP error, not cached).
    """
    check_model_name(name)
    if weights_path is not None:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"weights_path={str(weights_path)!r} for encoder {name!r} does not exist or is "
                "not a file; pass the path of a state dict saved for this timm architecture."
            )
        overlay = dict(timm_kwargs.pop("pretrained_cfg_overlay", None) or {})
        overlay["file"] = str(path)
        return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, **timm_kwargs)

    if not pretrained:
        return timm.create_model(name, pretrained=False, **timm_kwargs)

    offline = _hub_offline_requested()
    try:
        with _hub_offline_mode(offline):
            return timm.create_model(name, pretrained=True, **timm_kwargs)
    except _download_errors() as err:
        reason = (
            "HF_HUB_OFFLINE is set and the weights are not in the local cache"
            if offline
            else (f"{type(err).__name__}: {err}")
        )
        raise RuntimeError(
            f"Could not load pretrained weights for encoder {name!r}: the Hugging Face hub could "
            f"not be reached ({reason}). On a machine without internet, download the weights "
            "elsewhere and pass a local file with weights_path=PATH (create_encoder / the net's "
            "`weights_path` argument; it calls timm.create_model(name, pretrained=True, "
            "pretrained_cfg_overlay=dict(file=PATH))), or use pretrained=False."
        ) from err
