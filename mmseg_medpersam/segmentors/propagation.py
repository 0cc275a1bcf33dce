"""Volume propagation: labelled slices of a volume carried outward, slice by slice.

Each unlabelled slice is segmented from its neighbour on the side of its nearest labelled
slice, with that neighbour's result as the one labelled reference (warp between neighbours,
then the method's SAM step). A gap between two labelled slices is filled from both ends and
meets in the middle. Errors must not run away: a result whose foreground area changes by more
than ``max_area_change`` (relative to its source slice's), or is empty, stops that chain: the
slice and every slice beyond it on that side are left unlabelled and reported.
"""
from __future__ import annotations

import os.path as osp
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from ..methods.base import FitState, HeadResult
from ..structures.errors import OneShotDataError
from ..structures.references import OneShotReferences, ReferenceFile
from ..utils.naming import sample_key
from ..utils.progress import track

#: The default bound: between neighbouring slices a structure's area rarely changes by half.
DEFAULT_MAX_AREA_CHANGE = 0.5


@dataclass
class SliceResult:
    """One slice of a propagation.

    Attributes:
        slice_index: the slice.
        source: the slice whose result was its reference (None for a labelled slice).
        anchor: the labelled slice its chain started from.
        results: the method's per-class results ({} when not segmented).
        labels: (H, W) label map (zeros when stopped or not reached).
        seconds: the method's time for this slice (its fit, encoding and SAM step).
        status: 'labelled', 'segmented', 'stopped' (this slice's result broke the bound) or
            'not reached' (a slice before it on its chain stopped).
        area_change: relative foreground-area change against the source, when segmented.
    """

    slice_index: int
    source: Optional[int]
    anchor: int
    results: Dict[int, HeadResult] = field(default_factory=dict)
    labels: Optional[np.ndarray] = None
    seconds: float = 0.0
    status: str = 'segmented'
    area_change: Optional[float] = None


def propagation_plan(slices: Sequence[int], labelled: Sequence[int]
                     ) -> List[Tuple[int, int, int]]:
    """``(slice, source, anchor)`` for every unlabelled slice, in an order where each source
    comes first: each slice takes its nearest labelled slice (the lower one on a tie) as
    anchor and its neighbour towards it (among ``slices``) as source."""
    if not labelled:
        raise ValueError('propagation needs at least one labelled slice')
    order = sorted(set(slices) | set(labelled))
    position = {z: i for i, z in enumerate(order)}
    anchors = sorted(labelled)
    plan = []
    for z in order:
        if z in labelled:
            continue
        anchor = min(anchors, key=lambda a: (abs(z - a), a))
        step = -1 if z > anchor else 1
        plan.append((abs(z - anchor), z, order[position[z] + step], anchor))
    return [(z, src, anchor) for _, z, src, anchor in sorted(plan)]


def area_change(labels: np.ndarray, source: np.ndarray) -> float:
    """Relative change of the foreground area from ``source`` to ``labels``."""
    before = int((source > 0).sum())
    return abs(int((labels > 0).sum()) - before) / max(before, 1)


def propagate(segment: Callable[..., Tuple[Dict[int, HeadResult], Optional[FitState]]],
              merge: Callable[[Dict[int, HeadResult], tuple], Tensor],
              images: Dict[int, Tensor], metas: Dict[int, dict],
              labelled: Dict[int, Tuple[np.ndarray, np.ndarray]],
              max_area_change: float = DEFAULT_MAX_AREA_CHANGE,
              seg_map_path: str = 'propagated') -> Dict[int, SliceResult]:
    """Propagate the labelled slices of one volume through its other slices.

    Args:
        segment: ``segment(image, target_meta, reference, init) -> (results, fit)``: the
            method on one (3, H, W) target with one reference (loaded ``OneShotReferences``,
            as ``LoadOneShotImage`` makes them), starting from ``init``, the fit of the slice
            before it on its chain
            (``OneShotSAMSegmentor.segment_from``).
        merge: per-class results -> (H, W) label map (``OneShotSAMSegmentor.merge_classes``).
        images, metas: the unlabelled slices (by slice index): (3, H, W) float RGB and their
            metainfo (``img_path``, ``slice_index``, ...).
        labelled: slice index -> (H x W x 3 uint8 image, H x W label map) of each labelled
            slice.
        max_area_change: the collapse bound (relative area change against the source).
        seg_map_path: names the propagated references (their labels are results, no file).

    Returns:
        every slice's ``SliceResult`` (labelled slices included), by slice index.
    """
    if not max_area_change > 0:
        raise ValueError(f'max_area_change must be > 0, got {max_area_change}')
    out: Dict[int, SliceResult] = {
        z: SliceResult(z, None, z, labels=np.asarray(lab), status='labelled')
        for z, (_, lab) in labelled.items()}
    pixels = {z: np.asarray(img) for z, (img, _) in labelled.items()}
    fits: Dict[int, Optional[FitState]] = {}  # each segmented slice's fit, for the next
    plan = propagation_plan(list(images), list(labelled))
    for z, src, anchor in track(plan, 'propagating through the volume'):
        size = tuple(images[z].shape[-2:])
        before = out.get(src)
        if before is None or before.status in ('stopped', 'not reached'):
            out[z] = SliceResult(z, src, anchor, labels=np.zeros(size, np.uint8),
                                 status='not reached')
            continue
        meta = metas[z]
        reference = OneShotReferences.from_files(
            [ReferenceFile(meta.get('img_path'), seg_map_path, src)], [pixels[src]],
            [before.labels])
        start = time.perf_counter()
        with torch.no_grad():
            results, fit = segment(images[z], meta, reference, fits.pop(src, None))
        seconds = time.perf_counter() - start
        labels = merge(results, size).numpy().astype(np.uint8)
        change = area_change(labels, before.labels)
        if not labels.any() or change > max_area_change:
            out[z] = SliceResult(z, src, anchor, labels=np.zeros(size, np.uint8),
                                 seconds=seconds, status='stopped', area_change=change)
            continue
        out[z] = SliceResult(z, src, anchor, results, labels, seconds, 'segmented', change)
        fits[z] = fit
        pixels[z] = images[z].permute(1, 2, 0).cpu().numpy().round().clip(0, 255).astype(
            np.uint8)
    return dict(sorted(out.items()))


def propagate_targets(model, images: Sequence[Tensor], metas: Sequence[dict],
                      max_area_change: float = DEFAULT_MAX_AREA_CHANGE
                      ) -> Tuple[Dict[str, SliceResult], Dict[str, dict]]:
    """Propagate through every volume among the targets from its labelled slices (the
    samples' references in that volume) with a one-shot segmentor.

    Returns each target's ``SliceResult`` by its sample key, and per volume a log: its
    labelled slices, how many slices were segmented, stopped chains, slices not reached.
    """
    volumes: Dict[str, List[int]] = {}
    for i, meta in enumerate(metas):
        if meta.get('slice_index') is None:
            raise OneShotDataError(f'{meta.get("img_path")}: not a slice of a volume: only '
                                   'volumes can be propagated')
        volumes.setdefault(osp.realpath(meta['img_path']), []).append(i)
    out: Dict[str, SliceResult] = {}
    log: Dict[str, dict] = {}
    for path, idx in volumes.items():
        meta0 = metas[idx[0]]
        refs = OneShotReferences.of(meta0)
        labelled = {} if not (refs and refs.loaded) else {
            int(r.slice_index): (img, seg)
            for r, img, seg in zip(refs, refs.images, refs.label_maps)
            if osp.realpath(r.img_path) == path and r.slice_index is not None}
        if not labelled:
            raise OneShotDataError(f'{meta0["img_path"]}: no labelled slice of this volume '
                                   'among the references: nothing to propagate from')
        by_slice = {int(metas[i]['slice_index']): i for i in idx}
        results = propagate(model.segment_from, model.merge_classes,
                            {z: images[i] for z, i in by_slice.items()},
                            {z: metas[i] for z, i in by_slice.items()}, labelled,
                            max_area_change)
        for z, i in by_slice.items():
            out[sample_key(metas[i])] = results[z]
        log[meta0['img_path']] = dict(
            labelled=sorted(labelled), max_area_change=max_area_change,
            segmented=sum(r.status == 'segmented' for r in results.values()),
            not_reached=sum(r.status == 'not reached' for r in results.values()),
            stopped=stops(results))
    return out, log


def stops(results: Dict[int, SliceResult]) -> List[str]:
    """One line per stopped chain: where, against which slice and by how much."""
    return [f'slice {r.slice_index}: foreground area changed by {r.area_change:.0%} against '
            f'slice {r.source} (chain from labelled slice {r.anchor} stopped here)'
            if r.area_change is not None and r.labels is not None
            else f'slice {r.slice_index}: stopped' for r in results.values()
            if r.status == 'stopped']


__all__ = ['DEFAULT_MAX_AREA_CHANGE', 'SliceResult', 'area_change', 'propagate',
           'propagate_targets', 'propagation_plan', 'stops']
