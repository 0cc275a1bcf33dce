"""The warping model's settings, typed and grouped as a config names them.

``WarpingModel(network=..., losses=..., schedule=..., augmentation=...)``: what the network is
and the resolution it works at; what the fit minimises; how long and how it optimises; the
deformations of ``L_aug`` (:class:`RandomDeformation`'s arguments). Each group is checked when
the model is built, so a bad setting fails before any work.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Dict, Optional, Tuple, Union

from mmengine.registry import OPTIMIZERS

from ....utils.validate import check_number
from .spatial_transformer import size2

OWNER = 'WarpingModel'

DEFAULT_SIMILARITY = dict(type='ncc', window=9, scales=(1, 2, 4))
DEFAULT_LOSS_WEIGHTS = dict(similarity=1.0, smooth=0.01, aug=0.1, pseudo=1.0, mask_bce=0.0)
DEFAULT_OPTIMIZER = dict(type='Adam', lr=5e-3)
DEFAULT_CONVERGENCE = dict(window=50, tol=0.01, factor=0.5, min_iters=200, max_iters=2000)


def _known(group: str, given: Dict[str, Any], known) -> None:
    unknown = set(given) - set(known)
    if unknown:
        raise ValueError(f'{OWNER}: unknown {group} {sorted(unknown)}; known: {sorted(known)}')


def _work_size(size: Union[int, Tuple[int, int], None]) -> Optional[Tuple[int, int]]:
    if size is None:
        return None
    out = size2(size)
    for name, v in zip(('height', 'width'), out):
        check_number(OWNER, f'network.work_size {name}', v, minimum=16, integer=True)
    return out


@dataclass(frozen=True)
class NetworkSettings:
    """The flow network and the resolution it works at.

    Attributes:
        flow_net: config of the flow network (registry type, default ``'FlowUNet'``).
        work_size: ``(H, W)`` (or an int) the images are resized to; None takes the
            reference's shape with its longest side ``work_long_side`` (aspect kept,
            multiples of 16), so any slice size and orientation works.
        work_long_side: the longest side of the working resolution when ``work_size`` is None.
        infer_batch_size: targets per forward pass at inference.
        amp: 'auto' (bfloat16 autocast of the network where the device has fast bf16
            kernels), 'bf16' or 'none'. Warps and losses are float32 either way.
    """

    flow_net: Dict[str, Any] = field(default_factory=lambda: dict(type='FlowUNet'))
    work_size: Optional[Tuple[int, int]] = None
    work_long_side: int = 192
    infer_batch_size: int = 8
    amp: str = 'auto'

    @classmethod
    def from_cfg(cls, cfg: Optional[Dict[str, Any]]) -> 'NetworkSettings':
        cfg = dict(cfg or {})
        _known('network settings', cfg, [f.name for f in fields(cls)])
        cfg['flow_net'] = dict(dict(type='FlowUNet'), **(cfg.get('flow_net') or {}))
        cfg['work_size'] = _work_size(cfg.get('work_size'))
        out = cls(**cfg)
        check_number(OWNER, 'network.work_long_side', out.work_long_side, minimum=16,
                     integer=True)
        check_number(OWNER, 'network.infer_batch_size', out.infer_batch_size, minimum=1,
                     integer=True)
        if out.amp not in ('auto', 'bf16', 'none'):
            raise ValueError(f"{OWNER}: amp must be 'auto', 'bf16' or 'none', got {out.amp!r}")
        return out


@dataclass(frozen=True)
class LossSettings:
    """What a fit minimises.

    Attributes:
        similarity: ``L_warp``'s image term: ``type`` 'ncc' (local NCC, any intensity scale)
            or 'mse', ``window`` of the local NCC (odd, working pixels), ``scales``: the term
            is averaged over these downsampling factors (coarse scales widen the capture range).
        weights: ``similarity``, ``smooth`` (flow-gradient penalty of ``L_warp``), ``aug``
            (``L_aug``; 0 disables it), ``pseudo`` (pseudo-label mask loss of a refit) and
            ``mask_bce`` (BCE beside soft Dice in both mask losses: BCE on warped binary masks
            has steep gradients at the boundary that can swamp ``L_warp``).
    """

    similarity: Dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_SIMILARITY))
    weights: Dict[str, float] = field(default_factory=lambda: dict(DEFAULT_LOSS_WEIGHTS))

    @classmethod
    def from_cfg(cls, cfg: Optional[Dict[str, Any]]) -> 'LossSettings':
        cfg = dict(cfg or {})
        _known('loss settings', cfg, [f.name for f in fields(cls)])
        similarity = dict(DEFAULT_SIMILARITY, **(cfg.get('similarity') or {}))
        _known('similarity keys', similarity, DEFAULT_SIMILARITY)
        if similarity['type'] not in ('ncc', 'mse'):
            raise ValueError(f"{OWNER}: similarity type must be 'ncc' or 'mse', "
                             f"got {similarity['type']!r}")
        _known('loss_weights', cfg.get('weights') or {}, DEFAULT_LOSS_WEIGHTS)
        weights = dict(DEFAULT_LOSS_WEIGHTS, **(cfg.get('weights') or {}))
        for key, value in weights.items():
            check_number(OWNER, f'losses.weights.{key}', value, minimum=0)
        return cls(similarity, weights)


@dataclass(frozen=True)
class ScheduleSettings:
    """How a fit optimises, and for how long.

    Attributes:
        iters: steps of a first fit (``WarpingModel.fit``).
        retrain_iters: steps of a refit on pseudo-labels (``WarpingModel.refit``).
        warm_start_iters: steps of a fit that continues a fitted network on a new pair
            (``WarpingModel.warm_start``: a volume propagation step starts from its
            neighbour's network, whose deformation is nearly the one it needs).
        batch_size: unlabeled targets per step.
        aug_batch_size: augmented reference copies per step (``L_aug``).
        optimizer: a ``torch.optim`` class name and its arguments (``lr``, ...).
        min_lr_ratio: the learning rate decays by cosine annealing (torch's
            ``CosineAnnealingLR``) to this fraction of ``lr``.
        seed: seeds the initialisation, the target sampling and the augmentations of a fit.
        convergence: None (a first fit runs ``iters`` steps under the cosine schedule), or a
            dict that makes a first fit run until its loss has converged: the mean loss of
            each ``window`` steps is compared with the best so far; a window that does not
            improve it by ``tol`` (relative) multiplies the learning rate by ``factor``
            (a plateau schedule); the fit stops at a non-improving window once the
            rate is at ``min_lr_ratio`` of ``lr``, and at ``max_iters`` steps at the latest
            (never before ``min_iters``). Keys default to ``DEFAULT_CONVERGENCE``.
    """

    iters: int = 700
    retrain_iters: int = 200
    warm_start_iters: int = 60
    batch_size: int = 4
    aug_batch_size: int = 1
    optimizer: Dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_OPTIMIZER))
    min_lr_ratio: float = 0.1
    seed: int = 0
    convergence: Optional[Dict[str, Any]] = None

    @classmethod
    def from_cfg(cls, cfg: Optional[Dict[str, Any]]) -> 'ScheduleSettings':
        cfg = dict(cfg or {})
        _known('schedule settings', cfg, [f.name for f in fields(cls)])
        cfg['optimizer'] = dict(DEFAULT_OPTIMIZER, **(cfg.get('optimizer') or {}))
        if OPTIMIZERS.get(str(cfg['optimizer']['type'])) is None:
            raise ValueError(f"{OWNER}: optimizer type {cfg['optimizer']['type']!r} is not a "
                             "registered optimizer (mmengine's OPTIMIZERS: torch.optim's)")
        cfg['convergence'] = _convergence(cfg.get('convergence'))
        out = cls(**cfg)
        for name, low in (('iters', 0), ('retrain_iters', 0), ('warm_start_iters', 0),
                          ('batch_size', 1), ('aug_batch_size', 1)):
            check_number(OWNER, name, getattr(out, name), minimum=low, integer=True)
        check_number(OWNER, 'min_lr_ratio', out.min_lr_ratio, minimum=0, maximum=1)
        check_number(OWNER, 'seed', out.seed, integer=True)
        return out


def _convergence(convergence: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    if convergence is None:
        return None
    unknown = set(convergence) - set(DEFAULT_CONVERGENCE)
    if unknown:
        raise ValueError(f'{OWNER}: unknown convergence keys {sorted(unknown)}; '
                         f'known: {sorted(DEFAULT_CONVERGENCE)}')
    out = dict(DEFAULT_CONVERGENCE, **convergence)
    for key in ('window', 'min_iters', 'max_iters'):
        check_number(OWNER, f'convergence.{key}', out[key], minimum=1, integer=True)
    check_number(OWNER, 'convergence.tol', out['tol'], minimum=0, maximum=1)
    check_number(OWNER, 'convergence.factor', out['factor'], minimum=0, maximum=1)
    if out['min_iters'] > out['max_iters']:
        raise ValueError(f"{OWNER}: convergence.min_iters {out['min_iters']} > "
                         f"max_iters {out['max_iters']}")
    return out


#: The flat keys of releases before the grouped settings, and the group each belongs to
#: (``loss_weights`` is ``losses.weights``). Still accepted: users' scripts set them with
#: ``--cfg-options model.head.warping.iters=...``.
FLAT_KEYS = {
    'flow_net': ('network', 'flow_net'), 'work_size': ('network', 'work_size'),
    'work_long_side': ('network', 'work_long_side'),
    'infer_batch_size': ('network', 'infer_batch_size'), 'amp': ('network', 'amp'),
    'similarity': ('losses', 'similarity'), 'loss_weights': ('losses', 'weights'),
    **{k: ('schedule', k) for k in ('iters', 'retrain_iters', 'warm_start_iters', 'batch_size',
                                    'aug_batch_size', 'optimizer', 'min_lr_ratio', 'seed',
                                    'convergence')},
}


def group_flat_keys(groups: Dict[str, Optional[Dict[str, Any]]], flat: Dict[str, Any]
                    ) -> Dict[str, Dict[str, Any]]:
    """``groups`` with the flat keys of earlier releases moved into their group; a key no
    group knows is an error naming it.

    A flat key given beside its grouped one wins: it comes from a script or config of an
    earlier release laid over a grouped config (``--cfg-options model.head.warping.iters=30``
    on a config that sets ``schedule.iters``), and that override is what its user meant.
    """
    out = {name: dict(cfg or {}) for name, cfg in groups.items()}
    for key, value in flat.items():
        if key not in FLAT_KEYS:
            raise ValueError(f'{OWNER}: unknown setting {key!r}; the settings are '
                             f'{sorted(groups)} (and the flat keys {sorted(FLAT_KEYS)})')
        group, name = FLAT_KEYS[key]
        out[group][name] = value
    return out


__all__ = ['NetworkSettings', 'LossSettings', 'ScheduleSettings', 'FLAT_KEYS',
           'DEFAULT_CONVERGENCE', 'DEFAULT_LOSS_WEIGHTS', 'DEFAULT_OPTIMIZER',
           'DEFAULT_SIMILARITY', 'group_flat_keys']
