"""Progress with an ETA on long work, through mmengine's ProgressBar; quiet off a terminal."""
from __future__ import annotations

import sys
from typing import Iterable, Iterator, Optional, TypeVar

T = TypeVar('T')


def track(items: Iterable[T], what: str, total: Optional[int] = None) -> Iterator[T]:
    """Yield ``items``, drawing mmengine's progress bar (done/total, rate, elapsed, ETA) on
    stderr when it is a terminal; logs and pipes get nothing."""
    if not sys.stderr.isatty():
        yield from items
        return
    from mmengine.utils import ProgressBar
    items = list(items) if total is None else items
    print(what, file=sys.stderr)
    bar = ProgressBar(total if total is not None else len(items), file=sys.stderr)
    for item in items:
        yield item
        bar.update()
    print(file=sys.stderr)


__all__ = ['track']
