"""The interface every method implements: fit once, then predict each target with that fit.

A method is a head of ``OneShotSAMSegmentor``. ``fit`` runs once per reference set (one
labelled image, or k of them used together): on the references alone (PerSAM-F's fusion
weights, Matcher's reference features) or, for
``transductive`` methods (Med-PerSAM), on the reference and every unlabeled target. Whatever it
fits comes back as a typed ``FitState`` that the segmentor hands to ``predict`` for each target
and class; a head keeps nothing between calls. No method ever sees a target's label.
"""
from __future__ import annotations

from abc import ABCMeta, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import torch.nn as nn
from torch import Tensor

from ..prompts.context import PromptContext, ReferenceContext
from ..prompts.structures import Prompts
from ..sam.backend import SAMBackend

#: One labelled reference image's classes: label -> its ``ReferenceContext``.
ReferenceClasses = Dict[int, ReferenceContext]


def class_references(references: Sequence[ReferenceClasses]) -> Dict[int, List[ReferenceContext]]:
    """Per class, its ``ReferenceContext`` in every reference that labels it (in order)."""
    out: Dict[int, List[ReferenceContext]] = {}
    for classes in references:
        for c, ref in classes.items():
            out.setdefault(c, []).append(ref)
    return dict(sorted(out.items()))


@dataclass
class TargetImage:
    """One unlabeled target as a method sees it.

    Attributes:
        image: (3, H, W) float RGB 0..255.
        key: identifies the image (its file and slice), e.g. for the backend's embedding cache.
    """

    image: Tensor
    key: str


class FitState:
    """What a method's ``fit`` returns and its ``predict`` takes (subclassed per method).

    ``covers(key)``: whether the fit has seen that target; a transductive method is fitted
    again, on the reference and that target alone, for a target it has not seen.
    """

    log: Dict[str, Any]

    def covers(self, key: str) -> bool:
        return True

    def forget_predictions(self) -> None:
        """Drop predictions the fit made on the way (so each later ``predict`` computes its
        own, e.g. when a benchmark times it); default: the fit keeps none."""


@dataclass
class RefinementRecord:
    """What an iterative SAM refinement did for one target and class (Med-PerSAM's step).

    Attributes:
        iterations: SAM calls made.
        stop: why it stopped ('converged', 'disagrees with warp', 'empty', 'iterations',
            'no prompt'; '' when SAM was not called).
        sam_used: whether a SAM mask replaced the warped one (the per-target choice).
        step_masks: (H, W) bool mask after each SAM call (for figures).
    """

    iterations: int = 0
    stop: str = ''
    sam_used: bool = False
    step_masks: List[Tensor] = field(default_factory=list)

    def summary(self) -> Dict[str, Any]:
        """The record's scalars, as a report lists them."""
        return dict(iterations=self.iterations, stop=self.stop, sam_used=self.sam_used)


@dataclass
class HeadResult:
    """A head's answer for one target and one class.

    Attributes:
        logits: (H, W) float scores on the target image; the mask is ``logits > 0``.
        prompts: the prompts the method generated for its first SAM call (for prompt metrics).
        prompt_mask: (H, W) bool mask that was given to SAM as a mask prompt, if any.
        info: extra numbers worth logging (candidate counts, scores, ...).
        refinement: what an iterative SAM refinement did (Med-PerSAM), if the method ran one.
    """

    logits: Tensor
    prompts: Optional[Prompts] = None
    prompt_mask: Optional[Tensor] = None
    info: Dict[str, Any] = field(default_factory=dict)
    refinement: Optional[RefinementRecord] = None

    @property
    def mask(self) -> Tensor:
        return self.logits > 0


class BaseOneShotHead(nn.Module, metaclass=ABCMeta):
    """A method (PerSAM, PerSAM-F, Matcher, Med-PerSAM) as a module of the segmentor.

    Attributes:
        transductive: ``fit`` needs the unlabeled targets (the segmentor then fits once on all
            of them before predicting any).
        method_name: how tables name the method.
        reference_row: a reference for the methods (an ablation such as the warp alone), not
            a method: comparison tables and plots mark it and rank targets without it.
    """

    transductive = False
    method_name = 'one-shot head'
    reference_row = False

    def fit(self, sam: Optional[SAMBackend], references: Sequence[ReferenceClasses],
            targets: Sequence[TargetImage] = (), init: Optional[FitState] = None
            ) -> Optional[FitState]:
        """Fit on the labelled ``references`` (one ``ReferenceClasses`` per labelled image;
        usually one) and, transductive methods, the unlabeled ``targets``.

        ``init``: a fit of a similar task to start from, which a method may use to fit faster
        (volume propagation hands over the neighbouring slice's fit); a method that cannot
        use it fits from scratch. Default: nothing to fit (None).
        """
        return None

    def needs_target_embedding(self, state: Optional[FitState]) -> bool:
        """Whether ``predict`` with ``state`` reads the target's SAM embedding (the segmentor
        encodes a target only then). Default: it does."""
        return True

    @abstractmethod
    def predict(self, sam: Optional[SAMBackend], ctx: PromptContext,
                state: Optional[FitState] = None) -> HeadResult:
        """Segment the target of ``ctx`` for the reference's class, with ``fit``'s state."""


__all__ = ['BaseOneShotHead', 'FitState', 'HeadResult', 'RefinementRecord', 'ReferenceClasses',
           'TargetImage', 'class_references']
