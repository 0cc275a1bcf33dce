"""The metrics report of a run: one JSON file, written once (atomically), by the test loop.

Layout: ``mDice``, ``mDice_std``, ``mIoU`` (percent), ``per_class``, ``per_image`` (Dice and
IoU in [0, 1], seconds: the target's encoder time plus the method's time, the same rule for
every method), ``prompt`` (prompt-quality figures), ``skipped`` (targets that could not be
segmented, with the reason), ``transductive`` (the transductive fit's log: seconds, and per
reference the method's log, e.g. Med-PerSAM's retraining rounds and pseudo-labels), ``run``
(config, method, device, processes, wall seconds).
"""
from __future__ import annotations

import json
from typing import List, Optional

import numpy as np

from ..utils.atomic import atomic_write_text
from .dice_metric import METRIC_PREFIX


def finite(value):
    """JSON has no NaN: undefined scores are written as null; numpy scalars as numbers."""
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if np.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def write_report(path: str, metrics: dict, details: dict, skipped: List[str],
                 transductive: Optional[dict], run: dict,
                 propagation: Optional[dict] = None) -> None:
    """Write the run's report to ``path`` (see module docstring)."""
    out = {}
    for key, value in metrics.items():
        group, _, name = key.rpartition('/')
        if group in ('', METRIC_PREFIX):  # the plugin's own scores: top level
            out[name] = value
        else:  # another metric's figures, e.g. 'prompt/pos_precision'
            out.setdefault(group, {})[name] = value
    out.update(details)
    out['skipped'] = list(skipped)
    if transductive is not None:
        out['transductive'] = transductive
    if propagation is not None:
        out['propagation'] = propagation
    out['run'] = run
    atomic_write_text(path, json.dumps(finite(out), indent=2, allow_nan=False))


__all__ = ['write_report', 'finite']
