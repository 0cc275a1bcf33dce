"""``OneShotTestLoop``: mmengine's test loop, made for one-shot tasks.

* the reference is loaded and checked before any target is touched (a bad reference fails at
  once, nothing computed is lost);
* transductive heads (Med-PerSAM) are fitted on the whole unlabeled test set first, predict,
  optionally retrain on their own refined predictions, and predict again;
* a target that cannot be read or used is reported by name and skipped: the others are still
  segmented and scored, the metrics are written, and the loop then raises one error listing the
  failed files.
"""
from __future__ import annotations

from typing import List, Tuple

import torch
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.runner import TestLoop
from mmseg.registry import LOOPS

from ..datasets.io import OneShotDataError


class OneShotTargetsFailed(OneShotDataError):
    """Some targets could not be segmented; the metrics cover the others."""


@LOOPS.register_module()
class OneShotTestLoop(TestLoop):
    """Test loop for one-shot segmentors (see module docstring)."""

    @property
    def model(self):
        model = self.runner.model
        return model.module if is_model_wrapper(model) else model

    def check_reference(self) -> None:
        """Load the reference now, so a bad one stops the run before any target."""
        dataset = self.dataloader.dataset
        if len(dataset) and hasattr(self.model, 'get_reference'):
            with torch.no_grad():
                self.model.get_reference(dataset.get_data_info(0))

    def iter_batches(self, failures: List[Tuple[str, str]]):
        """Batches of the dataloader; a sample that fails to load is recorded and skipped."""
        iterator = iter(self.dataloader)
        while True:
            try:
                yield next(iterator)
            except StopIteration:
                return
            except OneShotDataError as e:
                failures.append(('data', str(e)))
                print_log(f'skipped a target: {e}', logger='current', level=40)

    def run(self) -> dict:
        self.runner.call_hook('before_test')
        self.runner.call_hook('before_test_epoch')
        self.runner.model.eval()
        self.check_reference()
        failures: List[Tuple[str, str]] = []
        for idx, data_batch in enumerate(self.iter_batches(failures)):
            try:
                self.run_iter(idx, data_batch)
            except OneShotDataError as e:
                failures.append(('target', str(e)))
                print_log(f'skipped a target: {e}', logger='current', level=40)
        metrics = self.evaluator.evaluate(len(self.dataloader.dataset))
        self.runner.call_hook('after_test_epoch', metrics=metrics)
        self.runner.call_hook('after_test')
        if failures:
            listing = '\n  '.join(msg for _, msg in failures)
            raise OneShotTargetsFailed(
                f'{len(failures)} target(s) could not be segmented; the metrics above cover '
                f'the other {len(self.dataloader.dataset) - len(failures)}:\n  {listing}')
        return metrics
