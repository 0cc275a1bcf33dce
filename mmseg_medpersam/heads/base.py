"""What every one-shot head does: prepare a reference once, then segment each target."""
from __future__ import annotations

from abc import ABCMeta, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import torch.nn as nn
from torch import Tensor

from ..prompts.context import PromptContext, ReferenceContext
from ..prompts.structures import Prompts
from ..sam.backend import SAMBackend


@dataclass
class HeadResult:
    """A head's answer for one target and one class.

    Attributes:
        logits: (H, W) float scores on the target image; the mask is ``logits > 0``.
        prompts: the prompts the method generated for its first SAM call (for prompt metrics).
        prompt_mask: (H, W) bool mask that was given to SAM as a mask prompt, if any.
        info: extra numbers worth logging (iterations run, scores, ...).
    """

    logits: Tensor
    prompts: Optional[Prompts] = None
    prompt_mask: Optional[Tensor] = None
    info: Dict[str, Any] = field(default_factory=dict)

    @property
    def mask(self) -> Tensor:
        return self.logits > 0


class BaseOneShotHead(nn.Module, metaclass=ABCMeta):
    """A method (PerSAM, PerSAM-F, Matcher, Med-PerSAM) as a module of the segmentor.

    ``prepare`` runs once per reference and class (fits, prototypes, reference features);
    ``predict`` segments one target. Heads with ``transductive = True`` also get the whole
    unlabeled test set through ``fit_transductive`` before predicting (see ``engine``).
    """

    transductive = False
    method_name = 'one-shot head'  # how tables name the method

    def reset(self) -> None:
        """Forget what earlier runs fitted (called when a run starts)."""

    def prepare(self, sam: SAMBackend, reference: ReferenceContext) -> None:
        """Compute per-reference state into ``reference.cache`` (default: nothing)."""

    @abstractmethod
    def predict(self, sam: Optional[SAMBackend], ctx: PromptContext) -> HeadResult:
        """Segment the target of ``ctx`` for the reference's class."""

    def fit_transductive(self, sam: Optional[SAMBackend],
                         references: Dict[int, ReferenceContext], images: List[Tensor],
                         pseudo_labels: Optional[List[Tensor]] = None
                         ) -> Tuple[List[Dict[int, Tensor]], Dict[str, Any]]:
        """Fit on a reference and the unlabeled targets (transductive heads only).

        Args:
            references: the reference's classes.
            images: (3, H_i, W_i) target images.
            pseudo_labels: (H_i, W_i) label maps predicted earlier, for retraining.

        Returns:
            per target, a prior (H_i, W_i) map per class (``PromptContext.prior``); a fit log.
        """
        raise NotImplementedError(f'{type(self).__name__} is not transductive')
