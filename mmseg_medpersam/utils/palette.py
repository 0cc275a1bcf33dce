"""Colours that stand out on a medical image, for mmseg's ``SegLocalVisualizer``.

The one-shot datasets colour background black and the structure white (a label map viewed as
an image). mmseg's visualizer blends every class's colour over the image and writes the class
name in white on a box of that colour: on a grey scan that is a white structure on grey and a
blank label box. ``drawing_palette`` keeps the background's colour and gives every other class
that is grey (or repeats an earlier colour) a saturated one of its own.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

#: Saturated, mutually distinct colours (RGB) on which white text is readable.
DISTINCT_COLOURS = ((230, 25, 75), (0, 130, 200), (60, 160, 60), (245, 130, 48),
                    (145, 30, 180), (0, 150, 150), (240, 50, 230), (128, 0, 0),
                    (0, 0, 128), (128, 128, 0))
#: Largest channel spread of a colour counted as grey (black and white included).
GREY_SPREAD = 40


def is_grey(colour: Sequence[int]) -> bool:
    """Whether ``colour`` (RGB) has (almost) no hue: black, greys, white."""
    return max(colour) - min(colour) <= GREY_SPREAD


def drawing_palette(classes: Sequence[str],
                    palette: Optional[Sequence[Sequence[int]]] = None) -> List[List[int]]:
    """One colour per class: class 0 (background) as given (black by default); every other
    class its own colour unless it is grey or already taken, then the next distinct one."""
    given = [list(map(int, c)) for c in (palette or [])]
    out = [given[0] if given else [0, 0, 0]]
    spare = iter([list(c) for c in DISTINCT_COLOURS if list(c) not in given])
    for index in range(1, len(classes)):
        colour = given[index] if index < len(given) else None
        if colour is None or is_grey(colour) or colour in out:
            colour = next(spare, None) or [(37 * index) % 256, (91 * index) % 256, 200]
        out.append(colour)
    return out


__all__ = ['DISTINCT_COLOURS', 'drawing_palette', 'is_grey']
