"""SHAP and LIME attributions of the clinical features, grouped back into named features (captum).

mammo_xattn (arXiv 2508.16000, "SHAP for clinical feature attribution, LIME for case-level
explanations") and ViTAtt's metadata explanations work on the *encoded* metadata vector, whose
columns are one-hot / multi-hot blocks plus a missing indicator per feature
(``dermfuse_data.tabular``). Attributing single columns (``mass_shape=OVAL``) would split one
clinical feature over many columns and make "off" states (all zeros) that the encoder never emits.
Here every method works on *clinical features*: captum's ``feature_mask`` puts each feature's block
in one group (``meta_groups`` from the DataModule), a feature is "absent" when its whole block is
replaced by the baseline's block, and the image (and mask) stay fixed at the explained sample.

Conventions (what the numbers mean):
    * Output explained ``f``: the softmax **probability** of the target class (default,
      ``output="probability"``) or its **logit** (``output="logit"``), with the image held fixed.
    * Baseline (default ``"missing"``): every feature set to its encoder's "missing" state (block
      all zeros except its last column, the ``<feature>=missing`` indicator, = 1). An attribution
      then answers "how much does knowing this feature move ``f`` compared with not knowing it".
      ``"zeros"`` (all-zero vector; off the encoder's manifold) or an explicit ``(F_cols,)``
      tensor (e.g. the training mean) can be given instead.
    * ``kernel_shap`` (captum ``KernelShap``): Shapley values estimated by Shapley-kernel-weighted
      linear regression; the all-present and all-absent coalitions get a 1e6 weight, so
      ``sum_i phi_i ~= f(x) - f(baseline)`` (efficiency; approximate, exact only in the limit).
      Sign: ``phi_i > 0`` means feature ``i``'s value raises ``f`` above the baseline.
    * ``shapley_sampling`` (captum ``ShapleyValueSampling``): permutation-sampled Shapley values;
      efficiency holds exactly for every sample (each permutation's marginal contributions
      telescope to ``f(x) - f(baseline)``).
    * ``gradient_shap`` (captum ``GradientShap``, expected gradients between the baseline and the
      sample with ``stdevs=0``): per column ``(x - b) * E_alpha[df/dx]``, summed within each
      feature's block; sums to ``f(x) - f(b)`` only in expectation (a path integral estimate).
    * ``lime`` (captum ``Lime``): coefficients of a weighted ridge regression (``alpha=1``) of ``f``
      on the binary presence of each feature (absent = baseline block), samples weighted by the
      LIME-tabular kernel ``exp(-d^2 / w^2)``, ``d`` = Euclidean distance in presence space to the
      sample (all present), ``w = 0.75 sqrt(F)``. Local linear effects: no sum constraint; the
      sign says whether presence of the feature raises (``+``) or lowers (``-``) ``f`` locally.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn as nn
from captum._utils.models.linear_model import SkLearnRidge
from captum.attr import GradientShap, KernelShap, Lime, ShapleyValueSampling

from dermfuse_xai.methods.base import ExplanationMethod, FeatureScores, MethodContext, MethodInputs, MethodResult
from dermfuse_xai.model_io import LogitsModel, meta_names_of

FEATURE_METHODS = ("kernel_shap", "shapley_sampling", "gradient_shap", "lime")


@dataclass
class FeatureAttribution:
    """Attribution of one output to each clinical feature, for a batch.

    Attributes:
        method: one of :data:`FEATURE_METHODS`.
        names: the ``F`` clinical feature names (never one-hot column indices).
        values: ``(B, F)`` attributions (see the module doc for each method's meaning).
        output: ``"probability"`` or ``"logit"`` (what ``f`` is).
        baseline: ``"missing"``, ``"zeros"`` or ``"custom"``.
        f_input: ``(B,)`` ``f`` at the sample. f_baseline: ``(B,)`` ``f`` at the baseline
            (same image); for the Shapley methods ``values.sum(1) ~= f_input - f_baseline``.
        target: ``(B,)`` explained class.
    """

    method: str
    names: list[str]
    values: torch.Tensor
    output: str
    baseline: str
    f_input: torch.Tensor
    f_baseline: torch.Tensor
    target: torch.Tensor

    def as_records(self) -> list[dict[str, float]]:
        """One ``{feature name: attribution}`` dict per sample."""
        return [{n: float(v) for n, v in zip(self.names, row, strict=True)} for row in self.values.tolist()]


def group_feature_mask(meta_groups: list[int], device: torch.device | None = None) -> torch.Tensor:
    """captum ``feature_mask`` ``(1, sum(meta_groups))``: column ``j`` -> index of its clinical feature."""
    widths = [int(w) for w in meta_groups]
    if not widths or any(w <= 0 for w in widths):
        raise ValueError(f"meta_groups must be a non-empty list of positive widths, got {meta_groups}.")
    ids = torch.repeat_interleave(torch.arange(len(widths)), torch.tensor(widths))
    return ids[None].to(device) if device is not None else ids[None]


def missing_baseline(
    meta_groups: list[int], device: torch.device | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """The encoder's "every feature missing" vector ``(sum(meta_groups),)``: each block's last column is 1.

    Follows ``dermfuse_data.tabular``: every feature's block ends with its ``<name>=missing``
    indicator and is zero elsewhere when the value is missing (numeric features: standardised
    value 0 and indicator 1).
    """
    ends = torch.cumsum(torch.tensor([int(w) for w in meta_groups]), 0) - 1
    base = torch.zeros(int(sum(meta_groups)), dtype=dtype, device=device)
    base[ends.to(base.device)] = 1.0
    return base


def clinical_attributions(
    net: nn.Module,
    image: torch.Tensor,
    meta: torch.Tensor,
    target: torch.Tensor | int,
    meta_groups: list[int],
    meta_names: list[str] | None = None,
    method: str = "kernel_shap",
    baseline: Literal["missing", "zeros"] | torch.Tensor = "missing",
    output: Literal["probability", "logit"] = "probability",
    n_samples: int = 200,
    mask: torch.Tensor | None = None,
    batch_size: int = 64,
    seed: int = 0,
) -> FeatureAttribution:
    """Attribute ``f`` (target probability or logit) to each clinical feature, image held fixed.

    Args:
        net: a net taking ``meta`` (ViTAtt, MammoXAttn, ...) or a task; put it in ``eval()`` first.
        image: ``(B, 3, H, W)``; meta: ``(B, sum(meta_groups))`` encoded metadata.
        target: class per sample ``(B,)`` or one int.
        meta_groups: width of each clinical feature's block (``DermDataModule.meta_groups``).
        meta_names: their names (``DermDataModule.meta_names``); default the net's ``meta_names``.
        method: ``kernel_shap`` | ``shapley_sampling`` | ``gradient_shap`` | ``lime``.
        baseline: ``"missing"`` | ``"zeros"`` | a ``(sum(meta_groups),)`` tensor (module doc).
        output: explain the ``"probability"`` (softmax) or the ``"logit"`` of the target.
        n_samples: per sample: coalitions (KernelShap, Lime), path samples (GradientShap) or
            forward evaluations (Shapley sampling: ``n_samples // F`` permutations, at least 1).
        mask: lesion masks (a net ignores them where it does not use them).
        batch_size: perturbed copies evaluated per forward pass.
        seed: seeds the sampling (results are reproducible for a given seed).

    Returns:
        :class:`FeatureAttribution` with ``values (B, F)`` on the CPU.
    """
    if method not in FEATURE_METHODS:
        raise ValueError(f"unknown feature attribution method {method!r}; choose one of {FEATURE_METHODS}.")
    if output not in ("probability", "logit"):
        raise ValueError(f"output must be 'probability' or 'logit', got {output!r}.")
    model = LogitsModel(net)
    if not model.uses_meta:
        raise TypeError(
            f"{type(model.net).__name__} uses no clinical features (no `meta_names`, "
            "dermfuse_models.protocol.UsesMetadata): there are no clinical features to attribute."
        )
    groups = [int(w) for w in meta_groups]
    if meta.ndim != 2 or meta.shape[1] != sum(groups):
        raise ValueError(f"meta has shape {tuple(meta.shape)} but meta_groups {groups} sum to {sum(groups)} columns.")
    names = list(meta_names) if meta_names is not None else meta_names_of(model.net)
    names = names or [f"meta_{i}" for i in range(len(groups))]
    if len(names) != len(groups):
        raise ValueError(f"{len(names)} meta_names for {len(groups)} meta_groups; give one name per clinical feature.")

    device = meta.device
    if isinstance(baseline, str):
        if baseline == "missing":
            base = missing_baseline(groups, device, meta.dtype)
        elif baseline == "zeros":
            base = torch.zeros(meta.shape[1], device=device, dtype=meta.dtype)
        else:
            raise ValueError(f"baseline must be 'missing', 'zeros' or a tensor, got {baseline!r}.")
        baseline_name = baseline
    else:
        base = torch.as_tensor(baseline, device=device, dtype=meta.dtype).reshape(-1)
        if base.numel() != meta.shape[1]:
            raise ValueError(f"baseline has {base.numel()} values; the metadata has {meta.shape[1]} columns.")
        baseline_name = "custom"
    feature_mask = group_feature_mask(groups, device)
    targets = torch.as_tensor(target, device=device).long()
    targets = targets.expand(meta.shape[0]) if targets.ndim == 0 else targets

    values, f_in, f_base = [], [], []
    generator_state = torch.random.get_rng_state()
    numpy_state = np.random.get_state()  # captum's GradientShap draws its path points from numpy's global RNG
    try:
        for i in range(meta.shape[0]):
            torch.manual_seed(seed + i)
            np.random.seed(seed + i)
            one_mask = None if mask is None else mask[i : i + 1]
            f = _fixed_image_output(model, image[i : i + 1], one_mask, int(targets[i]), output)
            x, b = meta[i : i + 1], base[None]
            with torch.no_grad():
                f_in.append(f(x).detach().cpu())
                f_base.append(f(b).detach().cpu())
            values.append(_attribute_one(f, x, b, feature_mask, groups, method, n_samples, batch_size).cpu())
    finally:
        torch.random.set_rng_state(generator_state)
        np.random.set_state(numpy_state)
    return FeatureAttribution(
        method=method,
        names=names,
        values=torch.cat(values).float(),
        output=output,
        baseline=baseline_name,
        f_input=torch.cat(f_in).float(),
        f_baseline=torch.cat(f_base).float(),
        target=targets.cpu(),
    )


def _fixed_image_output(model: LogitsModel, image: torch.Tensor, mask: torch.Tensor | None, target: int, output: str):
    """``f(meta_batch) -> (n,)``: the target's probability/logit for one fixed image and many metadata vectors."""

    def f(meta_batch: torch.Tensor) -> torch.Tensor:
        n = meta_batch.shape[0]
        img = image.expand(n, *image.shape[1:])
        msk = None if mask is None else mask.expand(n, *mask.shape[1:])
        logits = model(img, meta_batch, msk).float()
        return logits.softmax(dim=-1)[:, target] if output == "probability" else logits[:, target]

    return f


def _lime_tabular_kernel(n_features: int):
    """LIME-tabular similarity on the binary presence vector (width ``0.75 sqrt(F)``)."""
    width = 0.75 * math.sqrt(n_features)

    def similarity(original, perturbed, interpretable, **kwargs) -> float:
        off = float((1.0 - interpretable.float()).sum())
        return math.exp(-off / width**2)

    return similarity


def _attribute_one(
    f,
    x: torch.Tensor,
    b: torch.Tensor,
    feature_mask: torch.Tensor,
    groups: list[int],
    method: str,
    n_samples: int,
    batch_size: int,
) -> torch.Tensor:
    """``(1, F)`` attributions of one sample."""
    n_features = len(groups)
    if method == "gradient_shap":
        with torch.enable_grad():
            cols = GradientShap(f).attribute(x, baselines=b, n_samples=n_samples, stdevs=0.0)
        group_ids = feature_mask[0]
        out = torch.zeros(1, n_features, device=cols.device, dtype=cols.dtype)
        return out.index_add_(1, group_ids, cols.detach())
    with torch.no_grad():
        if method == "kernel_shap":
            return KernelShap(f).attribute(
                x,
                baselines=b,
                feature_mask=feature_mask,
                n_samples=n_samples,
                perturbations_per_eval=batch_size,
                return_input_shape=False,
            )
        if method == "lime":
            lime = Lime(
                f, interpretable_model=SkLearnRidge(alpha=1.0), similarity_func=_lime_tabular_kernel(n_features)
            )
            return lime.attribute(
                x,
                baselines=b,
                feature_mask=feature_mask,
                n_samples=n_samples,
                perturbations_per_eval=batch_size,
                return_input_shape=False,
            )
        cols = ShapleyValueSampling(f).attribute(
            x,
            baselines=b,
            feature_mask=feature_mask,
            n_samples=max(1, n_samples // max(n_features, 1)),
            perturbations_per_eval=batch_size,
        )
    first_col = torch.cumsum(torch.tensor([0] + groups[:-1]), 0).to(cols.device)
    return cols[:, first_col]


def _runner(method: str):
    """``run`` of the registry record of ``method``: :func:`clinical_attributions` with the run's settings."""

    def run(net: nn.Module, inputs: MethodInputs) -> MethodResult:
        s = inputs.settings
        attr = clinical_attributions(
            net,
            inputs.image,
            inputs.meta,
            inputs.target,
            inputs.meta_groups,
            inputs.meta_names,
            method=method,
            baseline=s.feature_baseline,
            output=s.feature_output,
            n_samples=s.n_samples,
            mask=inputs.mask,
            batch_size=s.perturbation_batch,
            seed=s.seed,
        )
        extra = {
            "f_input": attr.f_input.tolist(),
            "f_baseline": attr.f_baseline.tolist(),
            "output": attr.output,
            "baseline": attr.baseline,
        }
        return MethodResult(features={method: FeatureScores(attr.names, attr.values, extra)})

    return run


def _has_clinical_features(net: nn.Module, context: MethodContext) -> str | None:
    if context.meta_groups and LogitsModel(net).uses_meta:
        return None
    return "the net uses no clinical features (meta) or the data has none"


def _feature_method(name: str, convention: str, default: bool) -> ExplanationMethod:
    return ExplanationMethod(
        name=name,
        task="classification",
        convention=convention,
        run=_runner(name),
        applies=_has_clinical_features,
        default=default,
        yields_maps=False,
    )


KERNEL_SHAP = _feature_method(
    "kernel_shap", "captum KernelShap, one group per clinical feature, image fixed; sum ~= f(x) - f(baseline)", True
)
SHAPLEY_SAMPLING = _feature_method(
    "shapley_sampling", "captum ShapleyValueSampling, one group per clinical feature; sum == f(x) - f(baseline)", False
)
GRADIENT_SHAP = _feature_method(
    "gradient_shap",
    "captum GradientShap (stdevs=0) summed per feature block; sum ~= f(x) - f(baseline) in expectation",
    False,
)
LIME = _feature_method(
    "lime",
    "captum Lime, ridge (alpha=1) on feature presence, LIME-tabular kernel; local linear effect, no sum rule",
    True,
)
