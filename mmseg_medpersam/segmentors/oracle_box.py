"""``OracleBoxSegmentor``: SAM prompted with each target's ground-truth box. Not a method.

An upper reference for tables: what the promptable model makes of a perfect box around each
structure. It reads the target's ground truth (``gt_sem_seg``), which no method may do, so its
rows must always be labelled as a reference, never compared as a method.
"""
from __future__ import annotations

import time
from typing import List, Optional, Tuple

import torch
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from torch import Tensor

from ..prompts.structures import Prompts, decode_union
from ..structures.prompt_record import PROMPTS_KEY, PromptRecord
from ..utils.masks import component_boxes, dice, mask_bbox, merge_class_logits
from ..utils.padding import crop_padding, image_size
from .base import OneShotSegmentorBase

BOX_RULES = ('single', 'per_component', 'best')


@MODELS.register_module()
class OracleBoxSegmentor(OneShotSegmentorBase):
    """Per class present in the ground truth: its box -> SAM -> mask; classes merged by logit.

    A structure in several pieces gets either one box around all of them ('single'), one
    box per connected component, decoded as one batch and merged ('per_component', the rule
    of ``BoxPrompt(per_component=True)``), or, per class and target, whichever of the two
    agrees better with the ground truth ('best': the fair upper reference for both prompt
    rules, and only possible because an oracle reads the ground truth).

    Args:
        sam: ``SAMBackend`` config.
        multimask_output: take the best of SAM's three masks by predicted IoU (else its
            single-mask output).
        boxes: 'single', 'per_component' or 'best' (see above).
        min_component_fraction, max_components: as ``BoxPrompt``'s.
    """

    method_name = 'Oracle: GT box (upper reference)'
    #: The one segmentor given the targets' labels: a reference for tables, not a method.
    reads_target_labels = True
    reference_row = True

    def __init__(self, sam: dict, multimask_output: bool = True, boxes: str = 'best',
                 min_component_fraction: float = 0.05, max_components: int = 8,
                 data_preprocessor: Optional[dict] = None, init_cfg: Optional[dict] = None,
                 **mmseg_kwargs) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg, **mmseg_kwargs)
        if boxes not in BOX_RULES:
            raise ValueError(f'OracleBoxSegmentor: boxes must be one of {BOX_RULES}, '
                             f'got {boxes!r}')
        self.sam = MODELS.build(sam)
        self.multimask_output = multimask_output
        self.boxes = boxes
        self.min_component_fraction = min_component_fraction
        self.max_components = max_components

    def _segment(self, emb, gt: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """GT mask -> (image logits, the boxes used, their predicted IoUs)."""
        options = []
        if self.boxes in ('single', 'best'):
            options.append(mask_bbox(gt)[None])
        if self.boxes in ('per_component', 'best'):
            options.append(component_boxes(gt, self.min_component_fraction,
                                           self.max_components))
        best = None
        for boxes in options:
            low, iou = decode_union(self.sam, emb, Prompts(boxes=boxes),
                                    multimask=self.multimask_output)
            logits = emb.geometry.frame_to_image(low[0, 0])
            score = dice(logits > 0, gt)
            if best is None or score > best[0]:
                best = (score, logits, boxes, iou)
        return best[1], best[2], best[3]

    def predict(self, inputs: Tensor, data_samples: List[SegDataSample]) -> List[SegDataSample]:
        for image, sample in zip(inputs, data_samples):
            start = time.perf_counter()
            h, w = image_size(image, sample.metainfo)
            gt = sample.gt_sem_seg.data[0, :h, :w].to(self.sam.device)
            emb = self.sam.encode(crop_padding(image, sample.metainfo).float())
            classes = [int(c) for c in torch.unique(gt) if 0 < int(c) < 255]
            logits, records = [], {}
            for c in classes:
                class_logits, boxes, iou = self._segment(emb, gt == c)
                logits.append(class_logits)
                records[c] = PromptRecord(boxes=boxes.cpu().numpy(),
                                          info=dict(iou_prediction=float(iou.mean())))
            labels = (merge_class_logits(classes, torch.stack(logits)) if logits
                      else torch.zeros((h, w), dtype=torch.long))
            sample.set_data({'pred_sem_seg': PixelData(data=labels[None])})
            sample.set_field(records, PROMPTS_KEY, field_type='metainfo')
            sample.set_field(time.perf_counter() - start, 'predict_seconds',
                             field_type='metainfo')
        return data_samples


__all__ = ['OracleBoxSegmentor']
