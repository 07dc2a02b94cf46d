"""dermfuse_xai: explanations users can check.

Methods (:mod:`dermfuse_xai.methods`, one registry): Grad-CAM for CNN nets (:func:`grad_cam`), Seg-Grad-CAM
(the same Grad-CAM on a region score) for the segmentation nets EAM-Net and Deep-UNet (:func:`seg_grad_cam`),
TMME transformer relevancy, attention rollout and Grad-CAM on the patch tokens for ViT nets
(:func:`transformer_relevancy`, :func:`attention_rollout`, :func:`vit_grad_cam`), fusion cross-attention
maps (:func:`cross_attention_maps`), SHAP / LIME over named clinical features (:func:`clinical_attributions`).
Checks: localisation against lesion masks, deletion faithfulness and the model-randomisation test
(:mod:`dermfuse_xai.metrics`, :mod:`dermfuse_xai.sanity`). Runner: :func:`explain_batches` and
:func:`write_report` (the command: ``python -m dermfuse_models.runner explain``).
"""

from dermfuse_models.protocol import is_segmentation_net
from dermfuse_xai.explain import explain_batches
from dermfuse_xai.methods import check_methods, default_methods, method_names
from dermfuse_xai.methods.base import ExplanationMethod, FeatureScores, MethodContext, MethodInputs, MethodResult
from dermfuse_xai.methods.cross_attention import AttentionSummary, cross_attention_maps
from dermfuse_xai.methods.feature_attribution import (
    FeatureAttribution,
    clinical_attributions,
    group_feature_mask,
    missing_baseline,
)
from dermfuse_xai.methods.gradcam import RegionScore, grad_cam, seg_grad_cam
from dermfuse_xai.methods.relevancy import TokenRelevance, attention_rollout, transformer_relevancy
from dermfuse_xai.methods.vit_gradcam import vit_grad_cam
from dermfuse_xai.metrics import deletion_curve, deletion_scores, energy_in_mask, mask_fraction, pointing_hit, spearman
from dermfuse_xai.model_io import LogitsModel, cam_layers_of, seg_cam_layers_of
from dermfuse_xai.regions import dice, predicted_region
from dermfuse_xai.report import ExplainReport, write_report
from dermfuse_xai.sanity import randomized_copy
from dermfuse_xai.scoring import SCORE_KEYS
from dermfuse_xai.settings import ExplainSettings

__all__ = [
    "SCORE_KEYS",
    "AttentionSummary",
    "ExplainReport",
    "ExplainSettings",
    "ExplanationMethod",
    "FeatureAttribution",
    "FeatureScores",
    "LogitsModel",
    "MethodContext",
    "MethodInputs",
    "MethodResult",
    "RegionScore",
    "TokenRelevance",
    "attention_rollout",
    "cam_layers_of",
    "check_methods",
    "clinical_attributions",
    "cross_attention_maps",
    "default_methods",
    "deletion_curve",
    "deletion_scores",
    "dice",
    "energy_in_mask",
    "explain_batches",
    "grad_cam",
    "group_feature_mask",
    "is_segmentation_net",
    "mask_fraction",
    "method_names",
    "missing_baseline",
    "pointing_hit",
    "predicted_region",
    "randomized_copy",
    "seg_cam_layers_of",
    "seg_grad_cam",
    "spearman",
    "transformer_relevancy",
    "vit_grad_cam",
    "write_report",
]
