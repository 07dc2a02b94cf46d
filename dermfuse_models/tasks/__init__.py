"""LightningModules that receive a net by injection and own loss, metrics and optimisation.

``classification.ClassificationTask`` and ``segmentation.SegmentationTask``; import from the modules.
"""
