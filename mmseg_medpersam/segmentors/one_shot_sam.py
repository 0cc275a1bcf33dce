"""``OneShotSAMSegmentor``: segment targets from one labelled reference with a frozen SAM."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.structures import PixelData
from mmseg.models.segmentors import BaseSegmentor
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from torch import Tensor

from ..datasets.io import OneShotDataError
from ..heads.base import BaseOneShotHead, HeadResult
from ..prompts.context import PromptContext, ReferenceContext

#: metainfo key of a target's prior (per class), set by the test loop after a transductive fit.
PRIOR_KEY = 'transductive_prior'
#: ``seg_logits`` of a class the reference does not label.
NO_CLASS_LOGIT = -1e4


@dataclass
class ReferenceSet:
    """A loaded reference: its image and one ``ReferenceContext`` per labelled class."""

    img_path: str
    seg_map_path: str
    image: Tensor
    labels: np.ndarray
    classes: Dict[int, ReferenceContext] = field(default_factory=dict)


def sample_key(metainfo: dict, prefix: str = '') -> str:
    """A stable key for an image (its path and, for volumes, its slice)."""
    path = metainfo.get(prefix + 'img_path')
    index = metainfo.get(prefix + 'slice_index')
    return f'{path}' if index is None else f'{path}#{index}'


@MODELS.register_module()
class OneShotSAMSegmentor(BaseSegmentor):
    """A frozen SAM plus a one-shot head; the reference comes from the config or each sample.

    For every foreground class of the reference mask the head segments the target once; the
    class masks are merged into one label map (a pixel claimed by several classes goes to the
    class with the highest logit). Prompts used are stored with each prediction.

    Args:
        sam: ``SAMBackend`` config; None for a method that needs no SAM (warp-only ablation).
        head: head config (``PerSAMHead``, ``PerSAMFHead``, ``MatcherHead``, ``MedPerSAMHead``...).
        num_classes: classes including background; None takes the dataset's (sample metainfo).

    The reference comes with each sample (``ref_img``, ``ref_seg_map``, loaded by the data
    pipeline's ``LoadOneShotImage``); the model reads no file.
    """

    def __init__(self, sam: Optional[dict], head: dict, num_classes: Optional[int] = None,
                 data_preprocessor: Optional[dict] = None, init_cfg: Optional[dict] = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.sam = MODELS.build(sam) if sam is not None else None
        self.head: BaseOneShotHead = MODELS.build(head)
        self.num_classes = num_classes
        self.align_corners = False
        # Encoded and prepared references of the current run (``begin_run`` clears).
        self._references: Dict[str, ReferenceSet] = {}
        self.register_buffer('_device_anchor', torch.zeros(0), persistent=False)

    def begin_run(self) -> None:
        """Start a run from scratch: forget references, their fits and cached embeddings."""
        self._references.clear()
        if self.sam is not None:
            self.sam.clear_cache()
        self.head.reset()

    # ------------------------------------------------------------------ reference
    @staticmethod
    def reference_key(metainfo: dict) -> str:
        """Which reference a sample uses (its image's path and slice)."""
        return sample_key(metainfo, prefix='ref_')

    def _num_classes(self, metainfo: dict) -> int:
        num = self.num_classes or metainfo.get('num_classes')
        if not num:
            raise OneShotDataError('the number of classes is unknown: use a one-shot dataset '
                                   '(it sets it from its class names) or set model.num_classes.')
        return int(num)

    def get_reference(self, metainfo: dict) -> ReferenceSet:
        """Encode and prepare the sample's reference (once per reference and run).

        The data pipeline hands the reference over (``ref_img``, ``ref_seg_map``:
        ``LoadOneShotImage``); the model reads no file.
        """
        key = self.reference_key(metainfo)
        if key in self._references:
            return self._references[key]
        if metainfo.get('ref_img') is None or metainfo.get('ref_seg_map') is None:
            raise OneShotDataError(
                'no reference with the sample: load the data with LoadOneShotImage (the one-shot '
                'pipelines do), which hands the reference image and label map over.')
        image, labels = metainfo['ref_img'], np.asarray(metainfo['ref_seg_map'])
        present = [int(c) for c in np.unique(labels) if c != 0]
        image_t = torch.as_tensor(np.asarray(image)).permute(2, 0, 1).float().to(self.device)
        emb = self.sam.encode(image_t, key='ref:' + key) if self.sam is not None else None
        ref = ReferenceSet(metainfo.get('ref_img_path'), metainfo.get('ref_seg_map_path'),
                           image_t, labels)
        label_map = torch.from_numpy(labels.astype(np.int64)).to(self.device)
        for c in present:
            ref.classes[c] = ReferenceContext(image_t, label_map == c, emb, key=key, label=c,
                                              label_map=label_map)
            self.head.prepare(self.sam, ref.classes[c])
        missing = set(range(1, self._num_classes(metainfo))) - set(present)
        if missing:
            print_log(f'{ref.seg_map_path}: classes {sorted(missing)} have no reference pixels '
                      'and will not be predicted.', logger='current', level=logging.WARNING)
        self._references[key] = ref
        return ref

    @property
    def method_name(self) -> str:
        """The method this segmentor runs, as tables name it (from its head)."""
        return self.head.method_name

    @property
    def device(self) -> torch.device:
        """Where the model runs (also without SAM: the anchor buffer moves with ``.to``)."""
        return self._device_anchor.device

    # ------------------------------------------------------------------ transductive fit
    def fit_transductive(self, images: List[Tensor], metainfos: List[dict],
                         pseudo_labels: Optional[List[Optional[Tensor]]] = None
                         ) -> Tuple[Dict[str, Dict[int, Tensor]], dict]:
        """Fit a transductive head on the unlabeled targets (and, later, pseudo-labels).

        Targets are grouped by reference. Returns the prior of every target (by
        ``sample_key``, then class: what ``segment`` takes) and the head's fit log per
        reference.
        """
        groups: Dict[str, List[int]] = {}
        for i, meta in enumerate(metainfos):
            groups.setdefault(self.reference_key(meta), []).append(i)
        all_priors: Dict[str, Dict[int, Tensor]] = {}
        log = {}
        for ref_key, idx in groups.items():
            ref = self.get_reference(metainfos[idx[0]])
            labels = None if pseudo_labels is None else [pseudo_labels[i] for i in idx]
            priors, log[ref_key] = self.head.fit_transductive(
                self.sam, ref.classes, [images[i] for i in idx], labels)
            for i, prior in zip(idx, priors):
                all_priors[sample_key(metainfos[i])] = prior
        return all_priors, log

    # ------------------------------------------------------------------ prediction
    def segment(self, image: Tensor, metainfo: dict,
                priors: Optional[Dict[int, Tensor]] = None) -> Dict[int, HeadResult]:
        """Per-class head results for one (3, H, W) RGB target image.

        ``priors``: per class, the target's prior from ``fit_transductive`` (Med-PerSAM's
        warped reference mask), if any.
        """
        ref = self.get_reference(metainfo)
        key = sample_key(metainfo)
        emb = self.sam.encode(image, key=key) if self.sam is not None else None
        priors = priors or {}
        results = {}
        for c, ref_ctx in ref.classes.items():
            ctx = PromptContext(reference=ref_ctx, target=emb, image=image, prior=priors.get(c),
                                target_key=key)
            results[c] = self.head.predict(self.sam, ctx)
        return results

    @staticmethod
    def class_logits(results: Dict[int, HeadResult], size, num_classes: int) -> Tensor:
        """(C, H, W) scores as mmseg's ``seg_logits``: background 0, each predicted class its
        head's logits (positive = foreground), classes without a reference very low."""
        logits = torch.full((num_classes, *size), NO_CLASS_LOGIT)
        logits[0] = 0
        for c, result in results.items():
            logits[c] = result.logits.float().cpu()
        return logits

    @staticmethod
    def merge_classes(results: Dict[int, HeadResult], size) -> Tensor:
        """(H, W) label map: each pixel takes the class with the highest positive logit."""
        labels = torch.zeros(size, dtype=torch.long)
        if not results:
            return labels
        classes = sorted(results)
        logits = torch.stack([results[c].logits.float().cpu() for c in classes])
        best = logits.argmax(dim=0)
        fg = logits.max(dim=0).values > 0
        labels[fg] = torch.tensor(classes)[best[fg]]
        return labels

    def predict(self, inputs: Tensor, data_samples: Optional[List[SegDataSample]] = None
                ) -> List[SegDataSample]:
        if data_samples is None:
            data_samples = [SegDataSample(metainfo=dict(img_shape=inputs.shape[-2:],
                                                        ori_shape=inputs.shape[-2:]))
                            for _ in range(inputs.shape[0])]
        if self.sam is not None and len(data_samples) > 1:  # encode the batch first
            crops = [img[:, :s.metainfo.get('img_shape', img.shape[-2:])[0],
                         :s.metainfo.get('img_shape', img.shape[-2:])[1]].float()
                     for img, s in zip(inputs, data_samples)]
            self.sam.encode_many(crops, [sample_key(s.metainfo) for s in data_samples])
        for image, sample in zip(inputs, data_samples):
            meta = sample.metainfo
            h, w = meta.get('img_shape', image.shape[-2:])
            start = time.perf_counter()
            results = self.segment(image[:, :h, :w].float(), meta, meta.get(PRIOR_KEY))
            labels = self.merge_classes(results, (h, w))
            ori = tuple(meta.get('ori_shape', (h, w)))
            if ori != (h, w):
                labels = F.interpolate(labels[None, None].float(), ori, mode='nearest')[0, 0].long()
            num = max([int(self.num_classes or meta.get('num_classes') or 2)]
                      + [c + 1 for c in results])
            seg_logits = self.class_logits(results, (h, w), num)
            if ori != (h, w):
                seg_logits = F.interpolate(seg_logits[None], ori, mode='bilinear')[0]
            sample.set_data({'pred_sem_seg': PixelData(data=labels[None]),
                             'seg_logits': PixelData(data=seg_logits)})
            sample.set_field({c: self.prompt_record(r) for c, r in results.items()},
                             'prompts', field_type='metainfo')
            sample.set_field(time.perf_counter() - start, 'predict_seconds',
                             field_type='metainfo')
        return data_samples

    @staticmethod
    def prompt_record(result: HeadResult) -> dict:
        """What is stored with a prediction: the prompts (numpy), the prompt mask, the info."""
        record = result.prompts.to_numpy() if result.prompts is not None else {}
        if result.prompt_mask is not None:
            record['mask'] = result.prompt_mask.detach().cpu().numpy().astype(bool)
        for key, value in result.info.items():
            if isinstance(value, (list, tuple)) and value and isinstance(value[0], Tensor):
                value = [v.detach().cpu().numpy() for v in value]
            elif isinstance(value, Tensor):
                value = value.detach().cpu().numpy()
            record[key] = value
        return record

    # ------------------------------------------------------------------ BaseSegmentor API
    def loss(self, inputs: Tensor, data_samples: List[SegDataSample]) -> dict:
        raise NotImplementedError(
            'OneShotSAMSegmentor never trains SAM: run tools/test.py (the one-shot fits of '
            'PerSAM-F and Med-PerSAM happen inside the test loop).')

    def extract_feat(self, inputs: Tensor) -> List[Tensor]:
        """The promptable model's image embeddings (none for a method without SAM)."""
        if self.sam is None:
            return []
        return [self.sam.encode(img.float()).features for img in inputs]

    def encode_decode(self, inputs: Tensor, batch_data_samples: List[SegDataSample]) -> Tensor:
        samples = self.predict(inputs, batch_data_samples)
        return torch.stack([s.pred_sem_seg.data for s in samples])

    def _forward(self, inputs: Tensor, data_samples: Optional[List[SegDataSample]] = None):
        return self.extract_feat(inputs)


__all__ = ['OneShotSAMSegmentor', 'ReferenceSet', 'sample_key', 'PRIOR_KEY']
