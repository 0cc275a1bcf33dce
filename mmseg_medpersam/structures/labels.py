"""Label values with a meaning of their own."""

#: mmseg's "ignore" label: ground-truth pixels with this value are not scored.
IGNORE_INDEX = 255

__all__ = ['IGNORE_INDEX']
