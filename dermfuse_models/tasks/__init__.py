"""LightningModules that receive a net by injection and own loss, metrics and optimisation."""

from dermfuse_models.tasks.classification import ClassificationTask

__all__ = ["ClassificationTask"]
