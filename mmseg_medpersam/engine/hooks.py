"""Test-time hooks: write each prediction, or a panel of it, as it is made."""
from __future__ import annotations

import os.path as osp
import warnings
from typing import Optional, Sequence

import numpy as np
from mmengine.hooks import Hook
from mmseg.engine.hooks import SegVisualizationHook
from mmseg.registry import HOOKS

from ..structures.labels import IGNORE_INDEX
from ..structures.prompt_record import PromptRecord
from ..structures.references import OneShotReferences
from ..utils.atomic import check_writable_dir
from ..utils.masks import mean_foreground_dice
from ..utils.naming import prediction_name
from ..utils.padding import crop_padding
from ..utils.prediction_png import write_prediction_png


class _OutputDirHook(Hook):
    """A test hook that writes one file per target into ``out_dir`` (made before the run)."""

    priority = 'LOW'

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir

    def before_test(self, runner) -> None:
        check_writable_dir(self.out_dir)


@HOOKS.register_module()
class SaveMasksHook(_OutputDirHook):
    """Write every predicted label map to ``out_dir/<name>.png`` (class indices, uint8).

    ``tools/test.py --out-masks DIR`` adds it. Written as each target finishes, so an
    interrupted run keeps what it predicted.
    """

    def after_test_iter(self, runner, batch_idx: int, data_batch: Optional[dict] = None,
                        outputs: Optional[Sequence] = None) -> None:
        for sample in outputs or []:
            write_prediction_png(self.out_dir, sample)


@HOOKS.register_module()
class PanelVisualizationHook(_OutputDirHook):
    """Draw a panel per target (``visualization.target_panel``) into ``out_dir``.

    The reference with its label, the target with the predicted and true contours, the
    prompts SAM got, Med-PerSAM's warped prior and SAM's mask after each refinement step;
    method, target and Dice in the title. ``tools/test.py --show-dir DIR`` adds it.
    """

    def after_test_iter(self, runner, batch_idx: int, data_batch: Optional[dict] = None,
                        outputs: Optional[Sequence] = None) -> None:
        from ..datasets.loading import slice_letters
        from ..visualization import target_panel
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        method = getattr(model, 'method_name', type(model).__name__)  # the run's facts
        for image, sample in zip(data_batch['inputs'], outputs or []):
            img = crop_padding(image, sample.metainfo).permute(1, 2, 0).cpu().numpy().astype(
                np.uint8)
            pred = sample.pred_sem_seg.data[0].cpu().numpy()
            gt = sample.gt_sem_seg.data[0].cpu().numpy() if 'gt_sem_seg' in sample else None
            reference = None
            refs = OneShotReferences.of(sample.metainfo)
            if refs and refs.loaded:  # handed over by LoadOneShotImage; the first is drawn
                reference = (np.asarray(refs.images[0]).astype(np.uint8),
                             np.asarray(refs.label_maps[0]))
            name = prediction_name(sample.metainfo)
            score = mean_foreground_dice(pred, gt, IGNORE_INDEX) if gt is not None else None
            title = f'{method} | {name}' + (f' | Dice {score:.3f}' if score is not None else '')
            meta = sample.metainfo
            ref = refs.files[0] if refs else None
            target_panel(osp.join(self.out_dir, name + '.png'), img, pred, gt,
                         PromptRecord.of(meta), reference, title,
                         slice_letters(meta['img_path'], meta.get('slice_index'),
                                       meta.get('axis')),
                         slice_letters(ref.img_path, ref.slice_index, meta.get('axis'))
                         if ref else None)


@HOOKS.register_module()
class OneShotVisualizationHook(SegVisualizationHook):
    """mmseg's ``SegVisualizationHook`` for one-shot tasks: what mmseg's own ``tools/test.py
    --show-dir`` turns on (``default_hooks.visualization``).

    Every target is drawn (``interval=1``: a task has tens of targets, not thousands), from
    the image the model saw (a slice of a volume has no image file of its own), under a name
    unique per target (``prediction_name``: a volume's slices share a file name), in colours
    that stand out on a scan (``drawing_palette``: the datasets' white structure would be a
    white blend on grey with a blank label box). Off (``draw=False``, the default until
    ``--show-dir``) it stays silent: mmseg's hook warns about that on every run.
    """

    def __init__(self, draw: bool = False, interval: int = 1, **kwargs) -> None:
        with warnings.catch_warnings():
            warnings.filterwarnings('ignore', message='The draw is False', category=UserWarning)
            super().__init__(draw=draw, interval=interval, **kwargs)

    def _contrasting_palette(self) -> None:
        """The visualizer's palette (the dataset's) made to stand out on a scan."""
        from ..utils.palette import drawing_palette
        meta = getattr(self._visualizer, 'dataset_meta', None) or {}
        if meta.get('classes'):
            palette = drawing_palette(meta['classes'], meta.get('palette'))
            self._visualizer.dataset_meta = dict(meta, palette=palette)

    def after_test_iter(self, runner, batch_idx: int, data_batch: dict,
                        outputs: Sequence) -> None:
        if not self.draw or not self.every_n_inner_iters(batch_idx, self.interval):
            return
        self._contrasting_palette()
        for image, sample in zip(data_batch['inputs'], outputs):
            img = np.ascontiguousarray(
                crop_padding(image, sample.metainfo).permute(1, 2, 0).cpu().numpy(),
                dtype=np.uint8)
            self._visualizer.add_datasample(f'test_{prediction_name(sample.metainfo)}', img,
                                            data_sample=sample, show=self.show,
                                            wait_time=self.wait_time, step=runner.iter)

    after_val_iter = after_test_iter


__all__ = ['SaveMasksHook', 'PanelVisualizationHook', 'OneShotVisualizationHook']
