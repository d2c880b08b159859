"""Generalization: a fitted CATE model carried beyond the trial, as a map."""

from models.generalization.prediction import cate_map, training_sample

__all__ = ["cate_map", "training_sample"]
