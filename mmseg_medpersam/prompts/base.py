"""Base class of prompt generators: context in, ``Prompts`` out."""
from __future__ import annotations

from abc import ABCMeta, abstractmethod
from typing import Optional, Tuple

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


def flat_index_to_xy(idx: int, width: int) -> Tuple[int, int]:
    """(x, y) of the ``idx``-th pixel of a row-major map ``width`` pixels wide."""
    return idx % width, idx // width


def argmax_xy(score: Tensor) -> Tensor:
    """(2,) float xy pixel of the maximum of an (H, W) map."""
    x, y = flat_index_to_xy(int(torch.argmax(score)), score.shape[1])
    return torch.tensor([x, y], dtype=torch.float32, device=score.device)
