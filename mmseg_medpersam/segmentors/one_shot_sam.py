"""``OneShotSAMSegmentor``: segment targets from one labelled reference with a frozen SAM."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.logging import print_log
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from torch import Tensor

from ..methods.base import (
    BaseOneShotHead,
    FitState,
    HeadResult,
    ReferenceClasses,
    TargetImage,
    class_references,
)
from ..prompts.context import PromptContext, ReferenceContext
from ..structures.errors import OneShotDataError
from ..structures.prompt_record import PROMPTS_KEY, PromptRecord
from ..structures.references import REFERENCES_KEY, OneShotReferences
from ..utils.masks import merge_class_logits
from ..utils.naming import reference_cache_key, references_key, sample_key
from ..utils.padding import crop_padding
from .base import OneShotSegmentorBase

#: ``seg_logits`` of a class the reference does not label.
NO_CLASS_LOGIT = -1e4


@dataclass
class ReferenceSet:
    """The loaded references of a run (one labelled image, or k used together): per image its
    ``ReferenceContext`` per labelled class, and the method's fit on the references alone
    (None for a transductive method: see ``fit``)."""

    key: str
    img_paths: List[str]
    seg_map_paths: List[str]
    images: List[Tensor]
    labels: List[np.ndarray]
    views: List[ReferenceClasses] = field(default_factory=list)
    state: Optional[FitState] = None

    @property
    def classes(self) -> Dict[int, List[ReferenceContext]]:
        """Per labelled class, its context in every reference that labels it."""
        return class_references(self.views)


@MODELS.register_module()
class OneShotSAMSegmentor(OneShotSegmentorBase):
    """A frozen SAM plus a one-shot method (its head); the reference comes with each sample.

    For every foreground class of the reference mask the head segments the target once; the
    class masks are merged into one label map (a pixel claimed by several classes goes to the
    class with the highest logit). Prompts used are stored with each prediction.

    A run: ``begin_run`` -> ``fit`` on every unlabeled target (transductive methods, once)
    -> ``predict``. The references come with each sample (``OneShotReferences``, loaded by
    the pipeline's ``LoadOneShotImage``); the model reads no file
    and never a target label. With k references every method uses all of them together.

    Args:
        sam: ``SAMBackend`` config; None for a method that needs no SAM (warp-only ablation).
        head: the method (``PerSAMHead``, ``PerSAMFHead``, ``MatcherHead``, ``MedPerSAMHead``).
        num_classes: classes including background; None takes the dataset's (sample metainfo).
    """

    def __init__(self, sam: Optional[dict], head: dict, num_classes: Optional[int] = None,
                 data_preprocessor: Optional[dict] = None, init_cfg: Optional[dict] = None,
                 **mmseg_kwargs) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg, **mmseg_kwargs)
        self.sam = MODELS.build(sam) if sam is not None else None
        self.head: BaseOneShotHead = MODELS.build(head)
        self.num_classes = num_classes
        self.align_corners = False
        # This run's prepared references, and its transductive fits (by reference key).
        self._references: Dict[str, ReferenceSet] = {}
        self.fit_states: Dict[str, FitState] = {}
        self.register_buffer('_device_anchor', torch.zeros(0), persistent=False)

    def begin_run(self) -> None:
        """Start a run from scratch: forget references, fits and cached embeddings."""
        self._references.clear()
        self.fit_states.clear()
        if self.sam is not None:
            self.sam.clear_cache()

    @property
    def method_name(self) -> str:
        """The method this segmentor runs, as tables name it (from its head)."""
        return self.head.method_name

    @property
    def reference_row(self) -> bool:
        """Whether its head is a reference for the methods rather than a method."""
        return bool(self.head.reference_row)

    @property
    def transductive(self) -> bool:
        """Whether ``fit`` must see the unlabeled targets before ``predict``."""
        return self.head.transductive

    @property
    def device(self) -> torch.device:
        """Where the model runs (also without SAM: the anchor buffer moves with ``.to``)."""
        return self._device_anchor.device

    # ------------------------------------------------------------------ reference
    @staticmethod
    def reference_key(metainfo: dict) -> str:
        """Which references a sample uses (each image's path and slice)."""
        return references_key(OneShotReferences.of(metainfo) or ())

    def _num_classes(self, metainfo: dict) -> int:
        num = self.num_classes or metainfo.get('num_classes')
        if not num:
            raise OneShotDataError('the number of classes is unknown: use a one-shot dataset '
                                   '(it sets it from its class names) or set model.num_classes.')
        return int(num)

    def get_reference(self, metainfo: dict) -> ReferenceSet:
        """Encode and prepare the sample's references (once per reference set and run); a
        method that fits on the references alone is fitted here."""
        key = self.reference_key(metainfo)
        if key in self._references:
            return self._references[key]
        refs = OneShotReferences.of(metainfo)
        if not refs or not refs.loaded:
            raise OneShotDataError(
                'no reference with the sample: load the data with LoadOneShotImage (the one-shot '
                'pipelines do), which hands the reference images and label maps over.')
        ref = ReferenceSet(key, [r.img_path for r in refs], [r.seg_map_path for r in refs],
                           [], [])
        for info, image, labels in zip(refs, refs.images, refs.label_maps):
            labels = np.asarray(labels)
            image_key = sample_key(info)
            image_t = torch.as_tensor(np.asarray(image)).permute(2, 0, 1).float().to(self.device)
            emb = (self.sam.encode(image_t, key=reference_cache_key(image_key))
                   if self.sam is not None else None)
            label_map = torch.from_numpy(labels.astype(np.int64)).to(self.device)
            ref.images.append(image_t)
            ref.labels.append(labels)
            ref.views.append({int(c): ReferenceContext(image_t, label_map == c, emb,
                                                       key=image_key, label=int(c),
                                                       label_map=label_map)
                              for c in np.unique(labels) if c != 0})
        missing = set(range(1, self._num_classes(metainfo))) - set(ref.classes)
        if missing:
            print_log(f'{", ".join(ref.seg_map_paths)}: classes {sorted(missing)} have no '
                      'reference pixels and will not be predicted.', logger='current',
                      level=logging.WARNING)
        if not self.head.transductive:
            with torch.no_grad():
                ref.state = self.head.fit(self.sam, ref.views)
        self._references[key] = ref
        return ref

    # ------------------------------------------------------------------ transductive fit
    @torch.no_grad()
    def fit(self, images: Sequence[Tensor], metainfos: Sequence[dict]) -> Dict[str, dict]:
        """Fit a transductive method once on every unlabeled target, per reference.

        The fits are kept for ``predict`` (``fit_states``); returns each reference's fit log.
        A method that is not transductive has nothing to fit here.
        """
        if not self.head.transductive:
            return {}
        groups: Dict[str, List[int]] = {}
        for i, meta in enumerate(metainfos):
            groups.setdefault(self.reference_key(meta), []).append(i)
        for ref_key, idx in groups.items():
            ref = self.get_reference(metainfos[idx[0]])
            targets = [TargetImage(images[i], sample_key(metainfos[i])) for i in idx]
            self.fit_states[ref_key] = self.head.fit(self.sam, ref.views, targets)
        return {k: s.log for k, s in self.fit_states.items()}

    def _state(self, ref: ReferenceSet, target: TargetImage,
               init: Optional[FitState] = None) -> Optional[FitState]:
        """The fit that covers ``target``; a transductive method not fitted on it is fitted on
        the reference and this target alone (one target at a time, e.g. ``inference_model``),
        starting from ``init`` if given."""
        if not self.head.transductive:
            return ref.state
        state = self.fit_states.get(ref.key)
        if state is None or not state.covers(target.key):
            with torch.no_grad():
                state = self.head.fit(self.sam, ref.views, [target], init=init)
        return state

    # ------------------------------------------------------------------ prediction
    def segment(self, image: Tensor, metainfo: dict) -> Dict[int, HeadResult]:
        """Per-class head results for one (3, H, W) RGB target image."""
        return self._segment(image, metainfo)[0]

    def _segment(self, image: Tensor, metainfo: dict, init: Optional[FitState] = None
                 ) -> Tuple[Dict[int, HeadResult], Optional[FitState]]:
        ref = self.get_reference(metainfo)
        target = TargetImage(image, sample_key(metainfo))
        state = self._state(ref, target, init)
        emb = (self.sam.encode(image, key=target.key)
               if self.sam is not None and self.head.needs_target_embedding(state) else None)
        results = {c: self.head.predict(self.sam, PromptContext(
                       reference=refs[0], more_references=tuple(refs[1:]), target=emb,
                       image=image, target_key=target.key), state)
                   for c, refs in ref.classes.items()}
        return results, state

    def segment_from(self, image: Tensor, metainfo: dict, reference: OneShotReferences,
                     init: Optional[FitState] = None
                     ) -> Tuple[Dict[int, HeadResult], Optional[FitState]]:
        """Segment one target with the references given (loaded ``OneShotReferences``) in
        place of its own, keeping nothing of them afterwards (one step of a
        volume propagation: every slice has its own reference). A transductive method is
        fitted on this target, starting from ``init`` (the neighbour's fit); returns the
        results and the fit."""
        meta = dict(metainfo, **{REFERENCES_KEY: reference})
        key = self.reference_key(meta)
        try:
            return self._segment(image, meta, init)
        finally:
            self._references.pop(key, None)
            self.fit_states.pop(key, None)

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
        if not results:
            return torch.zeros(size, dtype=torch.long)
        classes = sorted(results)
        return merge_class_logits(classes, torch.stack([results[c].logits.float().cpu()
                                                        for c in classes]))

    def predict(self, inputs: Tensor, data_samples: Optional[List[SegDataSample]] = None
                ) -> List[SegDataSample]:
        """Segment each target; its ``predict_seconds`` is its encoder time plus the method's
        time (prompts, decoding, refinement) in this pass, the same rule for every method."""
        if data_samples is None:
            data_samples = [SegDataSample(metainfo=dict(img_shape=inputs.shape[-2:],
                                                        ori_shape=inputs.shape[-2:]))
                            for _ in range(inputs.shape[0])]
        crops = [crop_padding(img, s.metainfo).float() for img, s in zip(inputs, data_samples)]
        embeddings = [None] * len(crops)
        if self.sam is not None:  # the batch in one go (cached: the method reuses them)
            wanted = [i for i, s in enumerate(data_samples) if self._needs_embedding(s.metainfo)]
            encoded = self.sam.encode_many([crops[i] for i in wanted],
                                           [sample_key(data_samples[i].metainfo)
                                            for i in wanted])
            for i, emb in zip(wanted, encoded):
                embeddings[i] = emb
        for image, emb, sample in zip(crops, embeddings, data_samples):
            start = time.perf_counter()
            results = self.segment(image, sample.metainfo)
            seconds = time.perf_counter() - start + (emb.encode_seconds if emb else 0.0)
            self.fill_sample(sample, results, tuple(image.shape[-2:]), seconds)
        return data_samples

    def _needs_embedding(self, metainfo: dict) -> bool:
        """Whether the method's fit for this target will read its SAM embedding (a target not
        fitted yet: assume so)."""
        state = self.fit_states.get(self.reference_key(metainfo))
        if self.head.transductive and (state is None or not state.covers(sample_key(metainfo))):
            return True
        return self.head.needs_target_embedding(state if self.head.transductive
                                                else self.get_reference(metainfo).state)

    def fill_sample(self, sample: SegDataSample, results: Dict[int, HeadResult], size,
                    seconds: float) -> SegDataSample:
        """Store a target's per-class results in its sample as mmseg does (``pred_sem_seg``,
        ``seg_logits``) with its prompts and ``predict_seconds``."""
        labels = self.merge_classes(results, size)
        num = max([self._num_classes_or_two(sample.metainfo)] + [c + 1 for c in results])
        sample.set_data({'pred_sem_seg': PixelData(data=labels[None]),
                         'seg_logits': PixelData(data=self.class_logits(results, size, num))})
        sample.set_field({c: self.prompt_record(r) for c, r in results.items()},
                         PROMPTS_KEY, field_type='metainfo')
        sample.set_field(seconds, 'predict_seconds', field_type='metainfo')
        refinement = {c: r.refinement.summary() for c, r in results.items()
                      if r.refinement is not None}
        if refinement:  # per class, what the method's SAM refinement did (the report lists it)
            sample.set_field(refinement, 'refinement', field_type='metainfo')
        return sample

    def _num_classes_or_two(self, metainfo: dict) -> int:
        return int(self.num_classes or metainfo.get('num_classes') or 2)

    @staticmethod
    def prompt_record(result: HeadResult) -> PromptRecord:
        """What is stored with a prediction: the prompts, the prompt mask, SAM's mask after
        each refinement step and the method's info, as numpy."""
        record = PromptRecord(**(result.prompts.to_numpy() if result.prompts is not None
                                 else {}))
        if result.prompt_mask is not None:
            record.mask = result.prompt_mask.detach().cpu().numpy().astype(bool)
        if result.refinement is not None:
            record.step_masks = [m.detach().cpu().numpy() for m in result.refinement.step_masks]
        for key, value in result.info.items():
            if isinstance(value, (list, tuple)) and value and isinstance(value[0], Tensor):
                value = [v.detach().cpu().numpy() for v in value]
            elif isinstance(value, Tensor):
                value = value.detach().cpu().numpy()
            record.info[key] = value
        return record


__all__ = ['OneShotSAMSegmentor', 'ReferenceSet', 'NO_CLASS_LOGIT']
