"""Metrics: per-image foreground Dice/IoU and the quality of generated prompts."""
from .dice_metric import PerImageDiceMetric, dice_iou
from .prompt_metric import PromptQualityMetric, prompt_figures

__all__ = ['PerImageDiceMetric', 'dice_iou', 'PromptQualityMetric', 'prompt_figures']
