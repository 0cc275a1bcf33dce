"""Check constructor arguments when a module is built, with one line naming the fix."""
from __future__ import annotations

import numbers
from typing import Optional


def check_number(owner: str, name: str, value: object, minimum: Optional[float] = None,
                 maximum: Optional[float] = None, integer: bool = False,
                 open_interval: bool = False) -> None:
    """Raise ``ValueError('Owner: name must be ..., got value')`` unless ``value`` fits."""
    kind = 'an integer' if integer else 'a number'
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok and integer:
        ok = float(value).is_integer()
    if ok and minimum is not None:
        ok = value > minimum if open_interval else value >= minimum
    if ok and maximum is not None:
        ok = value < maximum if open_interval else value <= maximum
    if not ok:
        lo = '' if minimum is None else f'{">" if open_interval else ">="} {minimum}'
        hi = '' if maximum is None else f'{"<" if open_interval else "<="} {maximum}'
        bounds = ' and '.join(b for b in (lo, hi) if b)
        raise ValueError(f'{owner}: {name} must be {kind}' + (f' {bounds}' if bounds else '')
                         + f', got {value!r}')


__all__ = ['check_number']
