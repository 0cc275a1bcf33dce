"""Metrics: per-image foreground Dice/IoU and the quality of generated prompts."""
from .dice_metric import PerImageDiceMetric, dice_iou

__all__ = ['PerImageDiceMetric', 'dice_iou']
