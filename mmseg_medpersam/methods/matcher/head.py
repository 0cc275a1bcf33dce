"""Matcher: candidates from many sampled prompts, scored by instance-level matching, merged."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence

import numpy as np
import torch
from mmseg.registry import MODELS

from ...prompts.context import PromptContext
from ...prompts.structures import Prompts, decode_prompts
from ...sam.backend import SAMBackend
from ...utils.validate import check_number
from ..base import (
    BaseOneShotHead,
    FitState,
    HeadResult,
    ReferenceClasses,
    TargetImage,
    class_references,
)
from .instance_scoring import ScoreConfig, score_and_merge
from .prompt_sampler import MatcherReference
from .requirements import check_matcher_packages


@dataclass
class MatcherState(FitState):
    """Matcher's fit: per class, the reference's features and foreground patches."""

    references: Dict[int, MatcherReference]

    @property
    def log(self) -> dict:
        return dict(reference_patches={c: int(r.foreground.sum())
                                       for c, r in self.references.items()})


@MODELS.register_module()
class MatcherHead(BaseOneShotHead):
    """Decode every sampled prompt set, score each mask (EMD, purity, coverage), merge the best.

    Args:
        prompt_sampler: ``MatcherPromptSampler`` config.
        multimask_output: ask SAM for 3 masks per prompt set (Matcher's FSS preset: False).
        decode_batch: prompt sets per decoder call.
        score: ``ScoreConfig`` fields (alpha 0.8, beta 0.2, exp 1.0, top 10 merged, 0.7
            relative-score threshold: the one-object preset).
    """

    @property
    def method_name(self) -> str:
        """'Matcher' with DINOv2; with other features, a name no table can take for Matcher."""
        source = getattr(self.prompt_sampler.encoder, 'feature_source', 'DINOv2')
        return 'Matcher' if source == 'DINOv2' else f'Matcher pipeline, {source} features'

    def __init__(self, prompt_sampler: Optional[dict] = None, multimask_output: bool = False,
                 decode_batch: int = 64, score: Optional[dict] = None) -> None:
        super().__init__()
        check_matcher_packages()
        check_number(type(self).__name__, 'decode_batch', decode_batch, minimum=1, integer=True)
        self.prompt_sampler = MODELS.build(prompt_sampler or dict(type='MatcherPromptSampler'))
        self.multimask_output = multimask_output
        self.decode_batch = decode_batch
        self.score_cfg = ScoreConfig(**(score or {}))

    def fit(self, sam: SAMBackend, references: Sequence[ReferenceClasses],
            targets: Sequence[TargetImage] = (), init: Optional[FitState] = None) -> MatcherState:
        """The references' features and each class's foreground patches (k references: all
        their patches matched and scored together)."""
        return MatcherState({c: self.prompt_sampler.reference(refs)
                             for c, refs in class_references(references).items()})

    def predict(self, sam: SAMBackend, ctx: PromptContext,
                state: Optional[MatcherState] = None) -> HeadResult:
        sample = self.prompt_sampler(ctx, state.references[ctx.reference.label])
        geo = ctx.target.geometry
        multimask = 3 if self.multimask_output else 1
        # Candidates in sampling order; each size group decoded in chunks, never padded.
        order, low_res, candidates = [], [], []
        for indices, prompts in sample.groups:
            for start in range(0, prompts.num_sets, self.decode_batch):
                part = torch.arange(start, min(start + self.decode_batch, prompts.num_sets))
                out = decode_prompts(sam, ctx.target, prompts.select(part), multimask=multimask > 1)
                logits = out.low_res_logits.flatten(0, 1)  # (b*C, 256, 256)
                low_res.append(logits)
                # Bring each chunk to the image and threshold it at once: M full-size float
                # maps would not fit in memory for the larger presets.
                candidates.append((geo.frame_to_image(logits) > 0).cpu())
                order.extend(int(i) * multimask + c for i in indices[part.numpy()]
                             for c in range(multimask))
        size = ctx.original_size
        if not low_res:
            raise ValueError('Matcher: no prompt set was sampled (no matched patch)')
        rank = torch.as_tensor(np.argsort(np.asarray(order)))
        low_res = torch.cat(low_res)[rank.to(low_res[0].device)]
        candidates = torch.cat(candidates)[rank].numpy()
        _, scores, kept = score_and_merge(
            candidates, sample.match, None, sample.ref_fg, sample.points,
            sample.grid_size, self.score_cfg, sample.patch_size)
        if kept.size:
            # The union of the kept masks as logits: positive exactly on the union.
            kept_logits = geo.frame_to_image(low_res[torch.from_numpy(kept).to(low_res.device)])
            merged_logits = kept_logits.max(dim=0).values
        else:
            merged_logits = torch.full(size, -1.0, device=low_res.device)
        # What SAM was prompted from: the k-means centres (all positive).
        centres = sample.centres
        record = Prompts(
            point_coords=torch.as_tensor(np.asarray(centres, np.float32)).reshape(1, -1, 2),
            point_labels=torch.ones(1, len(centres), dtype=torch.long))
        info = dict(num_candidates=int(len(candidates)), num_merged=int(kept.size),
                    num_matches=int(len(sample.match)))
        return HeadResult(merged_logits, prompts=record, info=info)
