"""Config -> model -> reference -> fit -> predictions: one copy for every tool."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import DATASETS, MODELS
from torch import Tensor

from ..datasets import prepare_embedded_task
from ..datasets.labels import check_same_size, load_label_map, normalize_label_map
from ..datasets.loading import MIN_IMAGE_SIDE, load_image
from ..datasets.transforms import LoadOneShotImage
from ..datasets.windowing import to_uint8_rgb
from ..engine.targets import preprocess_targets
from ..methods.base import HeadResult
from ..sam.checkpoint import CheckpointError
from ..segmentors.mmseg_api import array_name
from ..segmentors.one_shot_sam import OneShotSAMSegmentor, ReferenceSet
from ..segmentors.propagation import DEFAULT_MAX_AREA_CHANGE, propagate_targets
from ..structures.errors import OneShotDataError
from ..structures.prompt_record import PromptRecord
from ..structures.references import REFERENCES_KEY, OneShotReferences, ReferenceFile
from ..utils.cli import ConfigError, config_error_message, parse_cfg_options
from ..utils.naming import sample_key

#: An image or label map: a file path, or an array ((H, W) or (H, W, 3), any dtype).
ImageLike = Union[str, np.ndarray]


def load_config(config, cfg_options=None) -> Config:
    """A config file (or ``Config``) with ``--cfg-options`` merged (a dict, or ``KEY=VALUE``
    strings); mmseg's scope set."""
    try:
        cfg = Config.fromfile(config) if not isinstance(config, Config) else config
    except (FileNotFoundError, SyntaxError, ImportError) as e:
        raise ConfigError(f'{config}: cannot be read as a config ({type(e).__name__}: {e})'
                          ) from e
    cfg_options = parse_cfg_options(cfg_options)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    return cfg


def apply_checkpoint(cfg: Config, checkpoint: Optional[str]) -> None:
    """``--checkpoint``: the SAM weights of the config's model (a note if it has no SAM)."""
    if not checkpoint:
        return
    if cfg.model.get('sam') is None:
        print(f'note: {cfg.filename} runs without SAM; --checkpoint is ignored', file=sys.stderr)
    else:
        cfg.model.sam.checkpoint = checkpoint


def check_device(device: Optional[str]) -> None:
    """A device this machine has, or a ``ConfigError`` saying what to use."""
    if not device:
        return
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ConfigError(f"--device {device}: not a device ({e}); use 'cpu' or 'cuda:0'.")
    if dev.type == 'cuda' and not torch.cuda.is_available():
        raise ConfigError(f'--device {device}: no CUDA device on this machine; use --device cpu '
                          '(or leave --device out).')
    if dev.type not in ('cpu', 'cuda'):
        raise ConfigError(f"--device {device}: only 'cpu' and 'cuda' devices are supported.")


def _setting_error(cfg: Config, err: Exception) -> Exception:
    """A build error as what it is: a checkpoint or input error, else a bad setting."""
    if isinstance(err, (CheckpointError, OneShotDataError)):
        return err
    return ConfigError(f'{cfg.filename}: {config_error_message(err)}')


def build_model(cfg: Config) -> torch.nn.Module:
    """``cfg.model`` built; a bad setting is a ``ConfigError`` naming the config."""
    try:
        return MODELS.build(cfg.model)
    except (KeyError, ValueError, TypeError) as e:
        raise _setting_error(cfg, e) from e


def init_one_shot_model(config, checkpoint: Optional[str] = None, device: Optional[str] = None,
                        cfg_options: Optional[dict] = None,
                        num_classes: Optional[int] = None) -> OneShotSAMSegmentor:
    """Build a config's segmentor in eval mode, like ``mmseg.apis.init_model``.

    ``checkpoint`` gives the SAM weights (``model.sam.checkpoint``); ``num_classes`` (with
    background) is needed when no dataset says it (``tools/infer.py``).
    """
    check_device(device)
    cfg = load_config(config, cfg_options)
    apply_checkpoint(cfg, checkpoint)
    if num_classes is not None:
        cfg.model.num_classes = num_classes
    model = build_model(cfg)
    model.cfg = cfg
    return model.to(device or ('cuda' if torch.cuda.is_available() else 'cpu')).eval()


def build_test_runner(cfg: Config, device: Optional[str] = None, verbose: bool = True):
    """mmengine's Runner with its model and test loop built (settings are checked here).

    ``verbose=False`` gives a ``QuietRunner``: the environment, the config and the repeated
    metrics go to the run's log file only (``engine.console``)."""
    from mmengine.runner import Runner

    from ..engine.console import QuietRunner
    check_device(device)
    prepare_embedded_task(cfg.get('test_dataloader', {}).get('dataset'))
    try:
        runner = (Runner if verbose else QuietRunner).from_cfg(cfg)
        # mmengine builds the test loop (dataset, pipeline, evaluator) lazily inside test():
        # build it now, so an unknown type or a bad argument there is a setting error too.
        runner.test_loop  # noqa: B018
    except (KeyError, ValueError, TypeError) as e:
        raise _setting_error(cfg, e) from e
    if device:
        runner.model.to(device)
    return runner


def dataset_targets(cfg: Config, model: torch.nn.Module, count: Optional[int] = None,
                    failures: Optional[List[str]] = None) -> Tuple[List[Tensor], List[dict]]:
    """The config's test targets as the model sees them: (3, H, W) images and metainfo.

    A target that cannot be loaded is listed in ``failures`` (raised if None is given).
    """
    from mmengine.dataset import pseudo_collate
    return preprocess_targets(build_dataset(cfg), model, pseudo_collate, count, failures)


def build_dataset(cfg: Config):
    """The config's test dataset, its embedded task written first if it names one."""
    prepare_embedded_task(cfg.test_dataloader.dataset)
    return DATASETS.build(cfg.test_dataloader.dataset)


@dataclass
class Prediction:
    """One target's prediction: its label map and the method's per-class results."""

    labels: np.ndarray
    results: Dict[int, HeadResult]
    prompts: Dict[int, PromptRecord]
    status: str = 'segmented'  # a propagation's: also 'stopped' or 'not reached'


class OneShotInferencer:
    """Config + checkpoint + labelled reference(s) -> fit on the targets -> predictions.

    Images and label maps may be files (any the plugin reads: PNG/TIFF/JPEG/DICOM, a volume
    with a slice index) or arrays ((H, W) or (H, W, 3), any dtype: windowed to 8 bits by the
    plugin's rule, label maps by its label rule). Results are mmseg ``SegDataSample``s
    (``pred_sem_seg``, ``seg_logits``) carrying the typed ``Prediction`` as ``one_shot``.

    Example::

        inferencer = OneShotInferencer('configs/medpersam/medpersam_litemedsam_mni152-wm.py')
        inferencer.set_reference(ref_image, ref_mask)      # arrays or paths
        samples = inferencer([image_a, image_b])           # fitted on both, one sample each
        labels = samples[0].pred_sem_seg.data[0]

    Args:
        config, checkpoint, device, cfg_options, num_classes: as ``init_one_shot_model``.
        window: (low, high) intensity window of non-8-bit images (None: the config's
            ``LoadOneShotImage`` window, else percentiles over each volume or image).
    """

    def __init__(self, config, checkpoint: Optional[str] = None, device: Optional[str] = None,
                 cfg_options: Optional[dict] = None, num_classes: int = 2,
                 window: Optional[Sequence[float]] = None) -> None:
        self.model = init_one_shot_model(config, checkpoint, device, cfg_options, num_classes)
        self.device = self.model.device
        self.num_classes = num_classes
        self.loader = LoadOneShotImage(window=window or pipeline_window(self.model.cfg))
        self.reference: Optional[ReferenceSet] = None
        self._ref_info: dict = {}

    @property
    def method_name(self) -> str:
        return self.model.method_name

    @property
    def model_name(self) -> str:
        """The promptable model's title (e.g. 'LiteMedSAM'), '' for a method without SAM."""
        sam = getattr(self.model, 'sam', None)
        return sam.spec.title if sam is not None else ''

    def set_reference(self, image: ImageLike, mask: ImageLike,
                      slice_index: Optional[int] = None,
                      axis: Optional[int] = None) -> ReferenceSet:
        """Load, encode and prepare the labelled reference (a bad one raises here, before any
        target). Starts a new run: earlier fits are forgotten."""
        return self.set_references([(image, mask, slice_index)], axis)

    def set_references(self, references: Sequence[Tuple[ImageLike, ImageLike, Optional[int]]],
                       axis: Optional[int] = None) -> ReferenceSet:
        """``set_reference`` with k labelled references, ``(image, mask, slice_index)`` each
        (or ``(image, mask)``): every method uses them together (README, "k references")."""
        references = [tuple(r) + (None, ) * (3 - len(r)) for r in references]
        info = dict(axis=axis, num_classes=self.num_classes)
        if all(isinstance(i, str) and isinstance(m, str) for i, m, _ in references):
            info[REFERENCES_KEY] = self.loader.load_references(dict(info, **{
                REFERENCES_KEY: OneShotReferences.from_files(
                    [ReferenceFile(i, m, z) for i, m, z in references])}))
        else:
            loaded = [self._reference(i, m, z, axis) for i, m, z in references]
            info[REFERENCES_KEY] = OneShotReferences.from_files(
                [r for r, _, _ in loaded], [x for _, x, _ in loaded], [y for _, _, y in loaded])
        self.model.begin_run()
        with torch.no_grad():
            self.reference = self.model.get_reference(info)
        self._ref_info = info
        return self.reference

    def _reference(self, image: ImageLike, mask: ImageLike, slice_index: Optional[int],
                   axis: Optional[int]) -> Tuple[ReferenceFile, np.ndarray, np.ndarray]:
        """One reference of which the image or the mask is an array: (its names, image,
        label map), checked as files are (same size, no 255, not empty)."""
        img, img_name = self._image(image, slice_index, axis)
        if isinstance(mask, str):
            labels = load_label_map(mask, self.num_classes, slice_index, axis,
                                    allow_ignore=False,
                                    image_path=image if isinstance(image, str) else None)
            mask_name = mask
        else:
            mask_name = array_name(np.asarray(mask)) + '_mask'
            labels = normalize_label_map(np.asarray(mask), self.num_classes, mask_name,
                                         allow_ignore=False)
        check_same_size(img, labels, img_name, mask_name)
        if not labels.any():
            raise OneShotDataError(f'{mask_name}: the reference mask is empty (no foreground '
                                   'pixel): label at least one structure.')
        return ReferenceFile(img_name, mask_name, slice_index), img, labels

    def _image(self, image: ImageLike, slice_index: Optional[int] = None,
               axis: Optional[int] = None) -> Tuple[np.ndarray, str]:
        """An (H, W, 3) uint8 image and its name, from a file or an array."""
        if isinstance(image, str):
            return load_image(image, slice_index, axis, self.loader.window), image
        array = np.asarray(image)
        name = array_name(array)
        if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (1, 3, 4))):
            raise OneShotDataError(f'{name}: an image array must be (H, W) or (H, W, 3), got '
                                   f'shape {array.shape}.')
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[..., 0]
        if min(array.shape[:2]) < MIN_IMAGE_SIDE:
            raise OneShotDataError(f'{name}: an image of {array.shape[0]}x{array.shape[1]} '
                                   'pixels is too small to segment.')
        try:
            return to_uint8_rgb(array, self.loader.window), name
        except ValueError as e:
            raise OneShotDataError(f'{name}: {e}') from e

    def load(self, image: ImageLike, slice_index: Optional[int] = None,
             axis: Optional[int] = None) -> 'Target':
        """A target image (a file, a volume's slice, or an array) with the reference's
        window."""
        if self.reference is None:
            raise OneShotDataError('no reference: call set_reference(image, mask) first.')
        pixels, name = self._image(image, slice_index, axis)
        return Target(pixels, dict(self._ref_info, img_path=name, slice_index=slice_index),
                      self.device)

    def fit(self, targets: Sequence['Target']) -> dict:
        """Fit a transductive method once on every target (others: nothing to do)."""
        return self.model.fit([t.tensor for t in targets], [t.meta for t in targets])

    def propagate(self, targets: Sequence['Target'],
                  max_area_change: float = DEFAULT_MAX_AREA_CHANGE
                  ) -> Tuple[Dict[Tuple[str, int], Prediction], Dict[str, dict]]:
        """Segment the slices of volumes by propagation from the labelled reference slices in
        each (``segmentors.propagation``). Returns each slice's prediction by (path, slice)
        and per volume the propagation's log (stopped chains, slices not reached)."""
        results, log = propagate_targets(self.model, [t.tensor for t in targets],
                                         [t.meta for t in targets], max_area_change)
        out = {}
        for t in targets:
            r = results[sample_key(t.meta)]
            labels = r.labels if r.labels is not None else np.zeros(t.image.shape[:2], np.uint8)
            out[(t.meta['img_path'], t.meta['slice_index'])] = Prediction(
                labels.astype(np.uint8), r.results,
                {c: self.model.prompt_record(x) for c, x in r.results.items()}, r.status)
        return out, log

    @torch.no_grad()
    def segment(self, target: 'Target') -> Prediction:
        """Segment one loaded target with the fit (a transductive method not fitted on it is
        fitted on the reference and this target alone): the typed result."""
        results = self.model.segment(target.tensor, target.meta)
        labels = self.model.merge_classes(results, tuple(target.image.shape[:2]))
        return Prediction(labels.numpy().astype(np.uint8), results,
                          {c: self.model.prompt_record(r) for c, r in results.items()})

    def __call__(self, inputs):
        """Segment one target or a list (``Target``s, files or arrays); returns one mmseg
        ``SegDataSample`` per target (``pred_sem_seg``, ``seg_logits``, and the typed
        ``Prediction`` as ``one_shot``). A transductive method given a list is fitted on all
        of it first, as ``tools/test.py`` does."""
        single = not isinstance(inputs, (list, tuple))
        targets = [t if isinstance(t, Target) else self.load(t)
                   for t in ([inputs] if single else inputs)]
        if len(targets) > 1 and self.model.transductive:
            self.fit(targets)
        samples = [self._sample(t, self.segment(t)) for t in targets]
        return samples[0] if single else samples

    def _sample(self, target: 'Target', pred: Prediction):
        from mmengine.structures import PixelData
        from mmseg.structures import SegDataSample
        size = tuple(target.image.shape[:2])
        sample = SegDataSample(metainfo=dict(img_path=target.meta['img_path'], ori_shape=size,
                                             img_shape=size,
                                             slice_index=target.meta.get('slice_index')))
        sample.pred_sem_seg = PixelData(data=torch.from_numpy(pred.labels)[None].long())
        sample.seg_logits = PixelData(data=self.model.class_logits(pred.results, size,
                                                                   self.num_classes))
        sample.one_shot = pred
        return sample


@dataclass
class Target:
    """A loaded target: its (H, W, 3) uint8 RGB image and metainfo; ``tensor`` is the model's
    (3, H, W) float view, made when needed (a target is held at a quarter of that size)."""

    image: np.ndarray
    meta: dict
    device: torch.device

    @property
    def tensor(self) -> Tensor:
        return torch.from_numpy(self.image).permute(2, 0, 1).float().to(self.device)


def pipeline_window(cfg: Config):
    """The intensity window of the config's ``LoadOneShotImage`` (None: per-image percentiles)."""
    pipeline = cfg.get('test_dataloader', {}).get('dataset', {}).get('pipeline', [])
    for step in pipeline:
        if step.get('type') == 'LoadOneShotImage':
            return step.get('window')
    return None


__all__ = ['OneShotInferencer', 'Prediction', 'Target', 'apply_checkpoint', 'build_dataset',
           'build_model',
           'build_test_runner', 'check_device', 'dataset_targets', 'init_one_shot_model',
           'load_config', 'pipeline_window']
