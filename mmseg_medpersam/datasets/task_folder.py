"""The one rule an embedded task's writer follows: write only among its own files."""
from __future__ import annotations

import os
import os.path as osp
from typing import Dict, List, Sequence


def foreign_entries(out_dir: str, own_files: Sequence[str], expected: Dict[str, set]) -> List[str]:
    """What ``out_dir`` holds that the task would not write: entries other than ``own_files``
    and the sub-folders of ``expected``, and files of those sub-folders not in their set."""
    if not osp.isdir(out_dir):
        return []
    foreign = [e for e in os.listdir(out_dir) if e not in set(own_files) | set(expected)]
    for sub, names in expected.items():
        folder = osp.join(out_dir, sub)
        if osp.isdir(folder):
            foreign += [osp.join(sub, f) for f in os.listdir(folder) if f not in names]
    return foreign


def shown(entries: Sequence[str]) -> str:
    """The first few entries of a refusal, for its one line."""
    return ', '.join(sorted(entries)[:5]) + (' ...' if len(entries) > 5 else '')


__all__ = ['foreign_entries', 'shown']
