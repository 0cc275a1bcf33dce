"""``OneShotEvaluator``: mmengine's Evaluator in the one form mmseg's ``tools/test.py`` can set.

mmseg's ``tools/test.py --out DIR`` sets ``test_evaluator['output_dir']`` and
``['keep_results']``, which needs the evaluator to be one dict: this is it, holding the
plugin's metrics. With ``output_dir`` each target's predicted label map is written there
(``<name>.png``, class indices), as mmseg's ``IoUMetric`` does for offline evaluation.

Every metric's names carry whose they are: the plugin's are ``oneshot/...`` and ``prompt/...``;
a metric added without a prefix gets one (mmseg's ``IoUMetric``: ``mmseg/mIoU``, ``mmseg/mDice``,
dataset-aggregated with the background class in), so no two different scores share a name on
the console or in the report.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

from mmengine.evaluator import Evaluator
from mmengine.registry import EVALUATOR

from ..utils.prediction_png import write_prediction_png


@EVALUATOR.register_module()
class OneShotEvaluator(Evaluator):
    """The plugin's metrics, with mmseg's ``output_dir`` / ``keep_results`` arguments.

    Args:
        metrics: metric configs (``PerImageDiceMetric``, ``PromptQualityMetric``, mmseg's).
        output_dir: write each predicted label map here (None: write nothing).
        keep_results: accepted for mmseg's ``--out``; the maps are written as they come.
    """

    def __init__(self, metrics: Union[dict, Sequence[dict]], output_dir: Optional[str] = None,
                 keep_results: bool = False) -> None:
        super().__init__(metrics)
        for metric in self.metrics:
            if not metric.prefix:
                metric.prefix = unprefixed_metric_prefix(metric)
        self.output_dir = output_dir
        self.keep_results = keep_results

    def process(self, data_samples: Sequence, data_batch=None) -> None:
        if self.output_dir:
            for sample in data_samples:
                write_prediction_png(self.output_dir, sample)
        super().process(data_samples, data_batch)


def unprefixed_metric_prefix(metric) -> str:
    """The prefix of a metric that has none: ``mmseg`` for mmseg's own (``IoUMetric``'s
    ``mIoU`` is not the plugin's ``oneshot/mIoU``), else its class name."""
    return 'mmseg' if type(metric).__module__.startswith('mmseg.') else type(metric).__name__


__all__ = ['OneShotEvaluator', 'unprefixed_metric_prefix']
