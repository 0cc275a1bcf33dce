"""``OneShotTestLoop``: mmengine's test loop, made for one-shot tasks.

* a run starts from scratch (``model.begin_run``) and loads and checks the reference before
  any target is touched (a bad reference fails at once, nothing computed is lost);
* a transductive method (Med-PerSAM) is fitted once on the WHOLE unlabeled test set first
  (``model.fit``: the method owns its procedure), whatever the number of processes: rank 0
  fits, the fitted states are broadcast, and every rank predicts its shard with them;
* a target that cannot be read or used is reported by name and skipped: the others are still
  segmented and scored, the metrics file is written, and the loop then raises one error
  listing the failed files;
* ``test_cfg.propagate=True`` (an inference mode, like ``tools/infer.py --propagate`` and
  ``OneShotInferencer.propagate``) segments the volume slices (``NiftiSliceDataset``) by
  propagation from their labelled slices (``segmentors.propagation``) before any batch; the
  batches then score those results;
* the one metrics report (``out_file``): summary, per-class and per-image scores, prompt
  quality, skipped targets, the transductive fit's log and the run's facts;
* the evaluation's summaries and mmengine's after-epoch metrics line go to the log file only
  under a ``QuietRunner`` (``engine.console``): the tool prints the metrics once.
"""
from __future__ import annotations

import json
import logging
import os
import os.path as osp
import sys
import time
from contextlib import contextmanager
from typing import Dict, List, Optional

import torch
from mmengine.dist import all_gather_object, broadcast_object_list, get_rank, get_world_size
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.runner import TestLoop
from mmengine.runner.amp import autocast
from mmseg.registry import LOOPS

from ..datasets.transforms import LoadOneShotImage
from ..evaluation.report import write_report
from ..segmentors.propagation import DEFAULT_MAX_AREA_CHANGE, SliceResult, propagate_targets
from ..structures.errors import OneShotDataError, OneShotTargetsFailed, ReportNotWritten  # noqa: E402
from ..structures.labels import IGNORE_INDEX
from ..structures.references import REFERENCES_KEY
from ..utils.atomic import WriteError, atomic_write_text, check_writable_file
from ..utils.masks import mean_foreground_dice
from ..utils.naming import image_name, prediction_name, sample_key
from ..utils.padding import image_size
from .console import file_only
from .hooks import SaveMasksHook
from .targets import preprocess_targets


@contextmanager
def fit_threads():
    """Run the fit with ``MEDPERSAM_FIT_THREADS`` CPU threads when set (``dist_test.sh`` sets
    what a one-process run uses: the fit's floating point depends on the thread count)."""
    threads = int(os.environ.get('MEDPERSAM_FIT_THREADS') or 0)
    before = torch.get_num_threads()
    if threads > 0:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def one_line(err: BaseException) -> str:
    """An error's own message, also when a dataloader worker re-raised it (torch then wraps it
    in 'Caught ... in DataLoader worker process N' and the worker's traceback)."""
    text = str(err)
    if 'Original Traceback' in text:
        last = [line for line in text.strip().splitlines() if line.strip()][-1]
        text = last.split(': ', 1)[1] if ': ' in last else last
    return text


def sidecar_path(out_file: str, rank: int = 0, world_size: int = 1) -> str:
    """The per-image JSON-lines file beside a report (one per process in a multi-process run)."""
    stem = osp.splitext(out_file)[0]
    return f'{stem}.per_image.jsonl' if world_size == 1 else f'{stem}.per_image.rank{rank}.jsonl'


@LOOPS.register_module()
class OneShotTestLoop(TestLoop):
    """Test loop for one-shot segmentors (see module docstring).

    Args:
        out_file: where to write the metrics report (``tools/test.py --out-metrics``).
        propagate: segment the targets by volume propagation from the labelled slices (each
            slice's result the next one's reference) instead of each from the references.
            None takes the dataset's ``propagate`` (how configs written before said it).
        max_area_change: propagation's collapse bound: a slice whose foreground area changes
            by more than this fraction against its neighbour stops that chain (reported).
            None: the dataset's, else ``DEFAULT_MAX_AREA_CHANGE``.
    """

    def __init__(self, runner, dataloader, evaluator, fp16: bool = False,
                 out_file: Optional[str] = None, propagate: Optional[bool] = None,
                 max_area_change: Optional[float] = None) -> None:
        super().__init__(runner, dataloader, evaluator, fp16=fp16)
        self.out_file = out_file
        if max_area_change is not None and not max_area_change > 0:
            raise ValueError(f'OneShotTestLoop: max_area_change must be > 0, got '
                             f'{max_area_change!r}')
        dataset = self.dataloader.dataset
        self.propagate_mode = bool(getattr(dataset, 'propagate', False) if propagate is None
                                   else propagate)
        self.max_area_change = float(
            max_area_change if max_area_change is not None
            else getattr(dataset, 'max_area_change', DEFAULT_MAX_AREA_CHANGE))
        self._per_image: List[str] = []  # the sidecar's lines so far
        self._sidecar_failed = False
        self._printed = 0  # sidecar lines printed to the console (when the file failed)
        self._propagated: Optional[Dict[str, SliceResult]] = None  # a propagation's results

    @torch.no_grad()
    def run_iter(self, idx, data_batch) -> None:
        """mmengine's step (predict, evaluate, hooks), then the target's line of the sidecar."""
        self.runner.call_hook('before_test_iter', batch_idx=idx, data_batch=data_batch)
        if self._propagated is not None:
            outputs = self.propagated_outputs(data_batch)
        else:
            with autocast(enabled=self.fp16):
                outputs = self.runner.model.test_step(data_batch)
        self.evaluator.process(data_samples=outputs, data_batch=data_batch)
        self.runner.call_hook('after_test_iter', batch_idx=idx, data_batch=data_batch,
                              outputs=outputs)
        if self.out_file:
            self._write_sidecar(outputs)

    def _write_sidecar(self, outputs) -> None:
        """Every finished target so far, one JSON line each, rewritten atomically: a run that
        dies later (or whose report cannot be written) keeps every score it computed."""
        for sample in outputs:
            gt = sample.gt_sem_seg.data[0].cpu().numpy() if 'gt_sem_seg' in sample else None
            pred = sample.pred_sem_seg.data[0].cpu().numpy()
            score = mean_foreground_dice(pred, gt, IGNORE_INDEX) if gt is not None else None
            self._per_image.append(json.dumps(dict(
                img=image_name(sample.metainfo), name=prediction_name(sample.metainfo),
                dice=score, seconds=sample.metainfo.get('predict_seconds'))))
        try:
            atomic_write_text(sidecar_path(self.out_file, get_rank(), get_world_size()),
                              '\n'.join(self._per_image) + '\n')
        except WriteError as e:  # a safety net only: the run goes on, the report says more
            if not self._sidecar_failed:
                print_log(f'{e}; the run goes on (the report is written at the end), each '
                          "target's score printed here as it finishes", logger='current',
                          level=logging.WARNING)
            self._sidecar_failed = True
        if self._sidecar_failed:  # the console keeps the scores the file could not
            for line in self._per_image[self._printed:]:
                print(f'per-image score: {line}', file=sys.stderr, flush=True)
            self._printed = len(self._per_image)

    @property
    def model(self):
        model = self.runner.model
        return model.module if is_model_wrapper(model) else model

    def check_reference(self) -> None:
        """Load and prepare the references now, so a bad one stops the run before any target.

        It is read by the pipeline's ``LoadOneShotImage`` (which then hands it to every
        sample) and prepared by the model.
        """
        dataset = self.dataloader.dataset
        loaders = [t for t in getattr(dataset.pipeline, 'transforms', [])
                   if isinstance(t, LoadOneShotImage)]
        if not len(dataset) or not loaders or not hasattr(self.model, 'get_reference'):
            return
        info = dataset.get_data_info(0)
        with torch.no_grad():
            self.model.get_reference(
                dict(info, **{REFERENCES_KEY: loaders[0].load_references(info)}))

    def iter_batches(self, failures: List[str]):
        """Batches of this rank's dataloader; a sample that fails to load is skipped."""
        iterator = iter(self.dataloader)
        while True:
            try:
                yield next(iterator)
            except StopIteration:
                return
            except OneShotDataError as e:
                failures.append(one_line(e))
                print_log(f'skipped a target: {one_line(e)}', logger='current',
                          level=logging.ERROR)

    def all_targets(self, failures: List[str]):
        """Every target of the dataset (not only this rank's shard), preprocessed."""
        images, metas = preprocess_targets(self.dataloader.dataset, self.model,
                                           self.dataloader.collate_fn, failures=failures)
        for message in failures:
            print_log(f'skipped a target: {message}', logger='current', level=logging.ERROR)
        return images, metas

    def fit(self, failures: List[str]) -> Optional[dict]:
        """Fit the transductive method on all targets (rank 0) and share the fitted states.

        Returns the fit's log: per reference the method's log, and the total ``seconds``.
        """
        log = None
        if get_rank() == 0:
            images, metas = self.all_targets(failures)
            if images:
                start = time.perf_counter()
                with fit_threads():
                    log = dict(references=self.model.fit(images, metas),
                               seconds=round(time.perf_counter() - start, 2))
        if get_world_size() > 1:
            shared = [self.model.fit_states, log]
            broadcast_object_list(shared, src=0)
            self.model.fit_states, log = shared
        return log

    def propagate(self, failures: List[str]) -> Optional[dict]:
        """Segment every target by volume propagation (``test_cfg.propagate``), on rank 0,
        the results shared; returns the propagation's log per volume."""
        log = None
        if get_rank() == 0:
            images, metas = self.all_targets(failures)
            start = time.perf_counter()
            results, log = propagate_targets(self.model, images, metas, self.max_area_change)
            for volume, entry in log.items():
                for line in entry['stopped']:
                    print_log(f'{volume}: {line}', logger='current', level=logging.WARNING)
            log = dict(volumes=log, seconds=round(time.perf_counter() - start, 2))
            self._propagated = results
        if get_world_size() > 1:
            shared = [self._propagated, log]
            broadcast_object_list(shared, src=0)
            self._propagated, log = shared
        return log

    def propagated_outputs(self, data_batch) -> list:
        """The batch's samples (with their labels, for the metrics) holding the propagation's
        results as predictions."""
        data = self.model.data_preprocessor(data_batch, False)
        outputs = []
        for image, sample in zip(data['inputs'], data['data_samples']):
            result = self._propagated.get(sample_key(sample.metainfo))
            if result is None:
                raise OneShotDataError(f'{image_name(sample.metainfo)}: no propagation result')
            outputs.append(self.model.fill_sample(sample, result.results,
                                                  image_size(image, sample.metainfo),
                                                  result.seconds))
        return outputs

    def run(self) -> dict:
        start = time.perf_counter()
        if self.out_file:  # before any work: a report that cannot be written is known now
            check_writable_file(self.out_file, 'metrics report')
        self._per_image, self._sidecar_failed, self._printed = [], False, 0
        self.runner.call_hook('before_test')
        self.runner.call_hook('before_test_epoch')
        self.runner.model.eval()
        if hasattr(self.model, 'begin_run'):
            self.model.begin_run()
        self.check_reference()
        failures: List[str] = []
        fit_log = propagation = None
        self._propagated = None
        if self.propagate_mode:
            propagation = self.propagate(failures)
        elif getattr(self.model, 'transductive', False):
            fit_log = self.fit(failures)
        for idx, data_batch in enumerate(self.iter_batches(failures)):
            try:
                self.run_iter(idx, data_batch)
            except OneShotDataError as e:
                failures.append(str(e))
                print_log(f'skipped a target: {e}', logger='current', level=logging.ERROR)
        # One entry per file, whichever rank (and the fit) met it.
        failures = sorted({msg for part in all_gather_object(failures) for msg in part})
        with file_only():
            metrics = self.evaluator.evaluate(len(self.dataloader.dataset))
        details = {k.rpartition('/')[2]: metrics.pop(k) for k in list(metrics)
                   if k.rpartition('/')[2] in ('per_image', 'per_class')}
        if self.out_file and get_rank() == 0:
            run = dict(config=getattr(self.runner.cfg, 'filename', None),
                       method=getattr(self.model, 'method_name', type(self.model).__name__),
                       reference_row=bool(getattr(self.model, 'reference_row', False)),
                       device=device_name(self.model),
                       processes=get_world_size(),
                       masks_dir=next((h.out_dir for h in self.runner.hooks
                                       if isinstance(h, SaveMasksHook)), None),
                       wall_seconds=round(time.perf_counter() - start, 2))
            with file_only():  # before any file: a failed write loses nothing
                print_log('metrics: ' + ', '.join(f'{k} {v}' for k, v in metrics.items()),
                          logger='current')
            try:
                write_report(self.out_file, metrics, details, skipped=failures,
                             transductive=fit_log, run=run, propagation=propagation)
            except WriteError as e:
                kept = ('' if self._sidecar_failed else '; every target\'s score is in '
                        + sidecar_path(self.out_file, get_rank(), get_world_size()))
                error = ReportNotWritten(f'{e} (the metrics are printed above{kept})')
                error.metrics = metrics
                raise error from e
        with file_only():  # mmengine's LoggerHook logs the metrics again here
            self.runner.call_hook('after_test_epoch', metrics=metrics)
        self.runner.call_hook('after_test')
        if failures:
            listing = '\n  '.join(failures)
            error = OneShotTargetsFailed(
                f'{len(failures)} target(s) could not be segmented; the metrics above cover '
                f'the others:\n  {listing}')
            error.metrics = metrics
            raise error
        return metrics


def device_name(model: torch.nn.Module) -> str:
    """The GPU's name, or the CPU and its core count."""
    param = next(iter(model.parameters()), None)
    buffer = next(iter(model.buffers()), None)
    tensor = param if param is not None else buffer
    device = tensor.device if tensor is not None else torch.device('cpu')
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    return f'CPU ({os.cpu_count()} cores)'


__all__ = ['OneShotTestLoop', 'OneShotTargetsFailed', 'ReportNotWritten', 'device_name',
           'sidecar_path']
