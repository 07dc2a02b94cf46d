"""The knobs of an explanation run (:class:`ExplainSettings`), shared by the loop and the methods."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ExplainSettings:
    """Knobs of :func:`dermfuse_xai.explain.explain_batches` (written into ``scores.json["settings"]``).

    Attributes:
        target: explain the predicted class (``"pred"``) or the true label (``"label"``).
        deletion_steps: points of each deletion curve minus one. deletion_fill: ``"mean"`` |
            ``"blur"`` | constant (see :func:`dermfuse_xai.metrics.deletion_curve`).
        n_samples: samples per image for KernelShap / Lime / GradientShap / Shapley sampling.
        feature_output: ``"probability"`` or ``"logit"`` explained by feature methods.
        feature_baseline: ``"missing"`` or ``"zeros"`` (see :mod:`dermfuse_xai.methods.feature_attribution`).
        randomization: also run the model-randomisation test (doubles the map cost).
        perturbation_batch: perturbed copies per forward pass (KernelShap / Lime).
        max_figure_rows: images shown per heatmap figure.
        seed: seeds sampling, random deletion orders and the re-initialised model.
    """

    target: str = "pred"
    deletion_steps: int = 20
    deletion_fill: str | float = "mean"
    n_samples: int = 200
    feature_output: str = "probability"
    feature_baseline: str = "missing"
    randomization: bool = True
    perturbation_batch: int = 64
    max_figure_rows: int = 16
    seed: int = 0
