"""Base class of prompt generators: context in, ``Prompts`` out."""
from __future__ import annotations

from abc import ABCMeta, abstractmethod
from typing import Optional

import torch
import torch.nn as nn
from torch import Tensor

from ..utils.masks import mask_bbox  # noqa: F401  (re-exported for generators)
from .context import PromptContext
from .structures import Prompts


class BasePromptGenerator(nn.Module, metaclass=ABCMeta):
    """Turns a ``PromptContext`` into SAM prompts. Register subclasses in ``mmseg``'s MODELS.

    A generator returns ``None`` (or empty ``Prompts``) when it has nothing to say, e.g. a box
    prompt for an empty current mask; heads then decide what an empty prompt means.
    """

    @abstractmethod
    def forward(self, ctx: PromptContext) -> Optional[Prompts]:
        """Prompts for the target in ``ctx``."""


def argmax_xy(score: Tensor) -> Tensor:
    """(2,) float xy pixel of the maximum of an (H, W) map."""
    idx = int(torch.argmax(score))
    return torch.tensor([idx % score.shape[1], idx // score.shape[1]], dtype=torch.float32,
                        device=score.device)
