"""What a method prompted SAM with, stored with each prediction for metrics, panels and the API.

A segmentor writes one :class:`PromptRecord` per class under the sample's ``PROMPTS_KEY``
metainfo field; the prompt-quality metric, the panels and the Python API read them there.
Arrays are numpy, so records survive collation, gathering across processes and pickling.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional

import numpy as np

#: The sample metainfo field holding ``{class value: PromptRecord}``.
PROMPTS_KEY = 'prompts'


@dataclass
class PromptRecord:
    """One class's prompts on one target.

    Attributes:
        point_coords: ``(B, N, 2)`` xy pixel coordinates of the point prompts.
        point_labels: ``(B, N)``: 1 positive, 0 negative.
        boxes: ``(B, 4)`` xyxy pixel boxes.
        mask: ``(H, W)`` bool: the mask the prompts were made from (Med-PerSAM: the warped
            prior), drawn dotted in panels and scored by the prompt-quality metric.
        step_masks: SAM's ``(H, W)`` mask after each refinement step, for the panels.
        info: the method's own scalars (SAM's predicted IoU, the chosen location, ...).
    """

    point_coords: Optional[np.ndarray] = None
    point_labels: Optional[np.ndarray] = None
    boxes: Optional[np.ndarray] = None
    mask: Optional[np.ndarray] = None
    step_masks: List[np.ndarray] = field(default_factory=list)
    info: Dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def of(metainfo: Mapping[str, Any]) -> Dict[int, 'PromptRecord']:
        """The records a sample's metainfo holds, per class (empty if none)."""
        return dict(metainfo.get(PROMPTS_KEY) or {})


__all__ = ['PROMPTS_KEY', 'PromptRecord']
