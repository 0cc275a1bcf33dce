"""The labelled references a target is segmented from, as one typed value of its metainfo.

A one-shot dataset attaches the references' files to every target; ``LoadOneShotImage`` reads
them once and hands the pixels over in the same value (the model reads no file). Every layer
reads them through ``OneShotReferences.of(metainfo)``: the metainfo key is written here only.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterator, Mapping, Optional, Sequence, Tuple

import numpy as np

#: The metainfo key that holds a sample's ``OneShotReferences``.
REFERENCES_KEY = 'references'


@dataclass(frozen=True)
class ReferenceFile:
    """One labelled reference as files: an image (or a slice of a volume) and its labels."""

    img_path: str
    seg_map_path: str
    slice_index: Optional[int] = None


@dataclass(frozen=True)
class OneShotReferences:
    """A sample's references: their files and, once loaded, their pixels.

    Attributes:
        files: one ``ReferenceFile`` per labelled image, in the user's order.
        images: once loaded, one (H, W, 3) uint8 RGB image per file (None before).
        label_maps: once loaded, one (H, W) integer label map per file (None before).
    """

    files: Tuple[ReferenceFile, ...]
    images: Optional[Tuple[np.ndarray, ...]] = None
    label_maps: Optional[Tuple[np.ndarray, ...]] = None

    def __post_init__(self) -> None:
        for name in ('images', 'label_maps'):
            value = getattr(self, name)
            if value is not None and len(value) != len(self.files):
                raise ValueError(f'{len(value)} {name} for {len(self.files)} reference files')

    @classmethod
    def of(cls, metainfo: Mapping) -> Optional['OneShotReferences']:
        """The references a sample's metainfo (or a dataset's data info) carries, if any."""
        return metainfo.get(REFERENCES_KEY)

    @classmethod
    def from_files(cls, files: Sequence[ReferenceFile], images: Optional[Sequence] = None,
                   label_maps: Optional[Sequence] = None) -> 'OneShotReferences':
        return cls(tuple(files), None if images is None else tuple(images),
                   None if label_maps is None else tuple(label_maps))

    @property
    def loaded(self) -> bool:
        """Whether the pixels are here (``LoadOneShotImage`` has read the files)."""
        return self.images is not None and self.label_maps is not None

    def with_pixels(self, images: Sequence[np.ndarray],
                    label_maps: Sequence[np.ndarray]) -> 'OneShotReferences':
        """The same references with their pixels."""
        return replace(self, images=tuple(images), label_maps=tuple(label_maps))

    def __len__(self) -> int:
        return len(self.files)

    def __iter__(self) -> Iterator[ReferenceFile]:
        return iter(self.files)


__all__ = ['REFERENCES_KEY', 'ReferenceFile', 'OneShotReferences']
