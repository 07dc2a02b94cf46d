"""dermfuse_xai: explanations users can check.

Methods: Grad-CAM for CNN nets (:func:`grad_cam`), Seg-Grad-CAM for the segmentation nets EAM-Net and
Deep-UNet (:func:`seg_grad_cam`), TMME transformer relevancy and attention rollout
for ViT nets (:func:`transformer_relevancy`, :func:`attention_rollout`), fusion cross-attention maps
(:func:`cross_attention_maps`), SHAP / LIME over named clinical features
(:func:`clinical_attributions`). Checks: localisation against lesion masks, deletion faithfulness and
the model-randomisation test (:mod:`dermfuse_xai.metrics`, :mod:`dermfuse_xai.sanity`). Runner:
:func:`explain_batches` (the command: ``python -m dermfuse_models.runner explain``).
"""
from dermfuse_xai.cross_attention import AttentionSummary, cross_attention_maps
from dermfuse_xai.explain import ExplainReport, ExplainSettings, default_methods, explain_batches, write_report
from dermfuse_xai.feature_attribution import (
    FeatureAttribution,
    clinical_attributions,
    group_feature_mask,
    missing_baseline,
)
from dermfuse_xai.gradcam import grad_cam
from dermfuse_xai.metrics import (
    deletion_curve,
    deletion_scores,
    energy_in_mask,
    mask_fraction,
    pointing_hit,
    spearman,
)
from dermfuse_xai.model_io import LogitsModel, cam_layers_of
from dermfuse_xai.relevancy import TokenRelevance, attention_rollout, transformer_relevancy
from dermfuse_xai.sanity import randomized_copy
from dermfuse_xai.segmentation import is_segmentation_net, predicted_region, seg_cam_layers_of, seg_grad_cam


__all__ = [
    "AttentionSummary", "ExplainReport", "ExplainSettings", "FeatureAttribution", "LogitsModel", "TokenRelevance",
    "attention_rollout", "cam_layers_of", "clinical_attributions", "cross_attention_maps", "default_methods",
    "deletion_curve", "deletion_scores", "energy_in_mask", "explain_batches", "grad_cam",
    "group_feature_mask", "is_segmentation_net", "mask_fraction", "missing_baseline", "pointing_hit",
    "predicted_region", "randomized_copy", "seg_cam_layers_of", "seg_grad_cam", "spearman",
    "transformer_relevancy", "write_report",
]
