"""One-shot datasets, loading transforms and the embedded tasks (MNI152, HeLa)."""
from ..structures.errors import OneShotDataError
from .labels import load_label_map
from .loading import load_image
from .one_shot import (
    EmbeddedTaskDataset,
    HeLaNucleiDataset,
    MNI152BrainDataset,
    MNI152Dataset,
    MNI152VariationDataset,
    MNI152VentriclesDataset,
    MNI152WhiteMatterDataset,
    NiftiSliceDataset,
    OneShotFolderDataset,
    prepare_embedded_task,
)
from .transforms import (
    ONE_SHOT_META_KEYS,
    LoadOneShotAnnotations,
    LoadOneShotImage,
    PackOneShotInputs,
)

__all__ = ['OneShotDataError', 'load_image', 'load_label_map', 'OneShotFolderDataset',
           'MNI152Dataset', 'MNI152WhiteMatterDataset', 'MNI152VentriclesDataset',
           'MNI152BrainDataset', 'MNI152VariationDataset', 'NiftiSliceDataset',
           'LoadOneShotImage', 'LoadOneShotAnnotations', 'PackOneShotInputs',
           'ONE_SHOT_META_KEYS', 'EmbeddedTaskDataset', 'HeLaNucleiDataset',
           'prepare_embedded_task']
