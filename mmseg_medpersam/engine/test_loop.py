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
from mmengine.dist import get_world_size
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.runner import TestLoop
from mmseg.registry import LOOPS

from ..datasets.io import OneShotDataError


class OneShotTargetsFailed(OneShotDataError):
    """Some targets could not be segmented; ``metrics`` covers the others."""

    metrics: dict = {}


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

    def fit_transductive(self, batches: list, failures: List[Tuple[str, str]]) -> None:
        """Fit the head on the unlabeled targets, then retrain on its own predictions.

        fit -> predict -> retrain -> ... (``head.retrain_rounds`` times); the final prediction
        is the evaluation pass of ``run``. Ground truth is never looked at here.
        """
        model = self.model
        if get_world_size() > 1:
            raise RuntimeError(
                'transductive heads (Med-PerSAM) fit on the whole unlabeled test set, which '
                'one process must see: run tools/test.py without a launcher (one GPU).')
        images, metas = [], []
        with torch.no_grad():
            for batch in batches:
                data = model.data_preprocessor(batch, False)
                for img, sample in zip(data['inputs'], data['data_samples']):
                    h, w = sample.metainfo.get('img_shape', img.shape[-2:])
                    images.append(img[:, :h, :w].float())
                    metas.append(sample.metainfo)
        if not images:
            return
        model.fit_transductive(images, metas)
        for round_ in range(getattr(model.head, 'retrain_rounds', 0)):
            pseudo = []
            with torch.no_grad():
                for img, meta in zip(images, metas):
                    pseudo.append(model.predict_labels(img, meta))
            print_log(f'retraining round {round_ + 1}: pseudo-labels for {len(pseudo)} targets',
                      logger='current')
            model.fit_transductive(images, metas, pseudo_labels=pseudo)

    def run(self) -> dict:
        self.runner.call_hook('before_test')
        self.runner.call_hook('before_test_epoch')
        self.runner.model.eval()
        self.check_reference()
        failures: List[Tuple[str, str]] = []
        batches = self.iter_batches(failures)
        if getattr(getattr(self.model, 'head', None), 'transductive', False):
            batches = list(batches)  # every target is needed before the first prediction
            self.fit_transductive(batches, failures)
        for idx, data_batch in enumerate(batches):
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
            error = OneShotTargetsFailed(
                f'{len(failures)} target(s) could not be segmented; the metrics above cover '
                f'the other {len(self.dataloader.dataset) - len(failures)}:\n  {listing}')
            error.metrics = metrics
            raise error
        return metrics
