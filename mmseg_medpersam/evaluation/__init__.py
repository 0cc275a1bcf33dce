"""Metrics: per-image foreground Dice/IoU, the quality of generated prompts, the run report."""
from .dice_metric import PerImageDiceMetric
from .evaluator import OneShotEvaluator
from .prompt_metric import PromptQualityMetric, prompt_figures
from .report import write_report

__all__ = ['OneShotEvaluator', 'PerImageDiceMetric', 'PromptQualityMetric', 'prompt_figures',
           'write_report']
