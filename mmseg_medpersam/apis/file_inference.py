"""Segment the user's own files into an output folder: the procedure behind ``tools/infer.py``
(and reachable from Python): plan the targets, fit, segment each target, write its mask and
panel as it finishes, then the label volumes and the summary.

Written to the output folder (``out_dir.OutputFolder`` owns it for the run):
``masks/<name>.png`` (class indices; 0/255 for one class with ``binary_255``), laid out like the
target's image (``datasets.volume``'s slice rule), ``panels/<name>.png`` (marked with the
patient directions for volume slices), ``volumes/<volume>_seg.nii.gz`` (+ an ITK-SNAP label
description, and ``_seg.dcm`` a DICOM SEG for a DICOM series), ``summary.json``,
``manifest.json``, ``progress.jsonl``.
"""
from __future__ import annotations

import json
import os.path as osp
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..datasets.labels import label_names, raw_label_map
from ..datasets.loading import open_volume, slice_letters
from ..structures.errors import EXIT_INPUT, ConfigError, OneShotDataError
from ..utils.atomic import atomic_write_png, atomic_write_text
from ..utils.progress import track
from ..visualization import target_panel
from .inference import OneShotInferencer
from .out_dir import OutputFolder, array_digest, file_digest
from .planning import Plan, Target, plan_targets, series_slice_of, split_slice
from .volume_outputs import ClassInfo, write_label_volume


@dataclass
class InferenceSettings:
    """What a run on files is asked to do (``tools/infer.py``'s options)."""

    config: str
    references: List[Tuple[str, str]]  # (image, label map) per reference, as given
    images: List[str]
    out_dir: str
    num_classes: Optional[int] = None  # None: from the reference masks' values
    class_names: Optional[List[str]] = None
    class_codes: Optional[str] = None  # a JSON file: {name: {category: [...], type: [...]}}
    axis: Optional[int] = None  # None: a DICOM series' own slice axis, else 2 (axial)
    window: Optional[Tuple[float, float]] = None
    checkpoint: Optional[str] = None
    device: Optional[str] = None
    binary_255: bool = False
    resume: bool = False
    overwrite: bool = False
    propagate: bool = False
    max_area_change: float = 0.5
    cfg_options: List[str] = field(default_factory=list)
    no_cache: bool = False  # the disk embedding cache off (it never changes the outputs)


def _sha256(path: str) -> str:
    digest = file_digest(path)
    if digest is None:
        raise OneShotDataError(f'{path}: cannot read it.')
    return digest


def manifest(s: InferenceSettings, num_classes: int, info: ClassInfo) -> dict:
    """What decides the outputs; a resumed run must match it (input pixels are checked per
    target, in ``progress.jsonl``)."""
    return dict(config=osp.abspath(s.config), config_sha256=_sha256(s.config),
                reference=[r for r, _ in s.references],
                reference_mask=[m for _, m in s.references], images=list(s.images),
                checkpoint=s.checkpoint, cfg_options=list(s.cfg_options or []),
                num_classes=num_classes, class_names=info.names,
                class_codes={str(k): v for k, v in info.codes.items()}, axis=s.axis,
                binary_255=s.binary_255, window=list(s.window) if s.window else None,
                propagate=s.propagate,
                max_area_change=s.max_area_change if s.propagate else None)


def reference_items(s: InferenceSettings) -> List[Tuple[str, str, Optional[int]]]:
    """(image, label map, slice) of each reference: ``vol#k`` on either names the slice."""
    out = []
    for image, mask in s.references:
        (img, k), (lab, k_mask) = split_slice(image), split_slice(mask)
        if k is not None and k_mask is not None and k != k_mask:
            raise ConfigError(f'--reference {image} and --reference-mask {mask} name other '
                              'slices.')
        out.append((img, lab, k if k is not None else k_mask))
    return out


def classes_from_references(refs: Sequence[Tuple[str, str, Optional[int]]],
                            axis: Optional[int]) -> int:
    """The class count the reference masks hold (background included): {0, 1} or {0, 255}
    is one class; else the largest value + 1."""
    top = 1
    for img, mask, k in refs:
        values = set(np.unique(raw_label_map(mask, k, axis, img)).tolist())
        if values <= {0, 255} or values <= {0, 1}:
            continue
        if 255 in values:
            raise OneShotDataError(f'{mask}: holds 255 beside other labels ({sorted(values)[:8]})'
                                   ': 255 is no class (it marks "ignore" in ground truth).')
        top = max(top, int(max(values)))
    return top + 1


def class_info(s: InferenceSettings, num_classes: int,
               refs: Sequence[Tuple[str, str, Optional[int]]]) -> ClassInfo:
    """Class names from ``class_names``, else a reference label file's own (a SEG's segment
    labels, a Slicer segmentation's names); codes from ``class_codes``."""
    names = s.class_names
    if not names:
        for _, mask, _ in refs:
            found = label_names(mask)
            if found and len(found) == num_classes - 1:
                names = found
                break
    codes = None
    if s.class_codes:
        try:
            with open(s.class_codes) as f:
                codes = json.load(f)
        except (OSError, ValueError) as e:
            raise ConfigError(f'--class-codes {s.class_codes}: not a readable JSON file ({e}).'
                              ) from e
    return ClassInfo.build(num_classes, names, codes)


def _check(s: InferenceSettings) -> None:
    if s.num_classes is not None and s.num_classes < 2:
        raise ConfigError(f'--num-classes {s.num_classes}: must count the background and at '
                          'least one class (>= 2).')
    if not s.max_area_change > 0:
        raise ConfigError(f'--max-area-change {s.max_area_change}: must be > 0')
    if s.resume and s.overwrite:
        raise ConfigError('--resume and --overwrite exclude each other.')


def _check_propagation(plan: Plan, refs) -> None:
    flat = [t.path for t in plan.targets if t.slice_index is None]
    labelled = {osp.realpath(p) for p, _, z in refs if z is not None}
    alone = sorted({t.path for t in plan.targets if t.slice_index is not None
                    and osp.realpath(t.path) not in labelled})
    if flat or alone:
        problems = ([f'{p}: not a volume' for p in flat[:3]]
                    + [f'{p}: no --reference slice of it' for p in alone[:3]])
        raise ConfigError('--propagate segments volumes from their labelled slices: '
                          + '; '.join(problems))


def run_inference(s: InferenceSettings) -> int:
    """Segment ``s.images`` from the references into ``s.out_dir``; returns the exit code (3
    when some inputs could not be used: the others are written). Errors that stop the run
    are raised (``structures.errors``), before any target where they can be known."""
    _check(s)
    refs = reference_items(s)
    explicit = s.num_classes is not None
    num_classes = s.num_classes or classes_from_references(refs, s.axis)
    if not explicit:
        print(f'classes: {num_classes} with the background (from the reference masks\' '
              'values; --num-classes sets it)', flush=True)
    if s.binary_255 and num_classes != 2:
        raise ConfigError(f'--binary-255 writes one class as 0/255; this task has '
                          f'{num_classes - 1} classes: leave it out.')
    info = class_info(s, num_classes, refs)
    # The out-dir first: a folder this run may not use stops it before the model is built.
    folder = OutputFolder(s.out_dir, manifest(s, num_classes, info), s.resume,
                          s.overwrite).check()
    try:
        inferencer = OneShotInferencer(s.config, s.checkpoint, s.device, s.cfg_options,
                                       num_classes, window=s.window)
        if s.no_cache and getattr(inferencer.model, 'sam', None) is not None:
            inferencer.model.sam.embedding_store = None  # before anything is encoded
        ref = inferencer.set_references(refs, s.axis)  # a bad reference stops here
        plan = plan_targets(s.images, s.axis, [(p, z) for p, _, z in refs])
        for note in plan.notes:
            print(f'note: {note}', file=sys.stderr)
        if not plan.targets:
            listing = ''.join(f'\n  {m}' for m in plan.failed + plan.notes)
            raise OneShotDataError(f'no image to segment among the inputs.{listing}')
        if s.propagate:
            _check_propagation(plan, refs)
        folder.begin()
        return _segment_all(s, folder, inferencer, ref, refs, plan, info)
    finally:
        folder.close()


def _segment_all(s: InferenceSettings, folder: OutputFolder, inferencer: OneShotInferencer,
                 ref, refs, plan: Plan, info: ClassInfo) -> int:
    ref_images = [im.permute(1, 2, 0).cpu().numpy().astype(np.uint8) for im in ref.images]
    references = array_digest(*ref_images, *ref.labels)
    axis = s.axis

    def load(t: Target):
        try:
            return inferencer.load(t.path, t.slice_index, axis)
        except OneShotDataError as e:
            plan.failed.append(str(e))
            print(f'skipped: {e}', file=sys.stderr)
            return None

    def kept(target, t: Target) -> Optional[dict]:
        return folder.kept(t.name, array_digest(target.image), references) \
            if s.resume and not s.propagate else None

    # Memory: a transductive method is fitted on every target at once, propagation holds
    # every slice of a volume; any other method streams the targets one at a time.
    in_memory = s.propagate or inferencer.model.transductive
    loaded, propagated, propagation_log = {}, {}, None
    if in_memory:
        loaded = {i: target for i, t in track(list(enumerate(plan.targets)), 'loading targets')
                  if (target := load(t)) is not None}
    if s.propagate:
        propagated, propagation_log = inferencer.propagate(list(loaded.values()),
                                                           s.max_area_change)
        for volume, entry in propagation_log.items():
            for line in entry['stopped']:
                print(f'{volume}: {line}', file=sys.stderr)
    elif inferencer.model.transductive and any(
            kept(target, plan.targets[i]) is None for i, target in loaded.items()):
        inferencer.fit(list(loaded.values()))
    ref_view = (ref_images[0], ref.labels[0])
    ref_letters = slice_letters(refs[0][0], refs[0][2], axis)
    summary, slices = [], {path: {} for path in plan.volumes}
    for i, t in track(list(enumerate(plan.targets)), 'segmenting targets'):
        target = loaded.pop(i, None) if in_memory else load(t)
        if target is None:
            continue
        pred = propagated.get((t.path, t.slice_index)) if s.propagate else None
        entry = kept(target, t)
        if entry is None:
            pred = pred if pred is not None else inferencer.segment(target)
            labels = pred.labels
            written = [osp.join('masks', t.name + '.png'), osp.join('panels', t.name + '.png')]
            mask = labels * 255 if s.binary_255 else labels
            atomic_write_png(osp.join(s.out_dir, written[0]), mask)
            target_panel(osp.join(s.out_dir, written[1]), target.image, labels,
                         prompts=pred.prompts, reference=ref_view,
                         title=f'{inferencer.method_name} | {t.name}',
                         letters=slice_letters(t.path, t.slice_index, axis),
                         reference_letters=ref_letters)
            entry = folder.record(t.name, array_digest(target.image), references, written,
                                  foreground_pixels=int((labels > 0).sum()))
            print(f'{t.name}: {entry["foreground_pixels"]} foreground pixels', flush=True)
        else:
            labels = _read_mask(osp.join(s.out_dir, entry['files'][0]), s.binary_255)
        if t.volume is not None:
            slices[t.volume][t.slice_index] = labels
        summary.append(dict(input=t.path, slice=t.slice_index, name=t.name,
                            mask=entry['files'][0], panel=entry['files'][1],
                            foreground_pixels=entry['foreground_pixels'],
                            **({'propagation': pred.status} if pred is not None
                               and s.propagate else {})))
    volumes = _write_volumes(s, inferencer, plan, ref, refs, slices, info)
    atomic_write_text(osp.join(s.out_dir, 'summary.json'), json.dumps(
        dict(config=s.config, method=inferencer.method_name, classes=info.names,
             targets=summary, volumes=volumes, skipped=sorted(plan.failed), notes=plan.notes,
             **({'propagation': propagation_log} if s.propagate else {})), indent=2))
    print(f'{len(summary)} targets written to {s.out_dir}')
    if plan.failed:
        print(f'{len(plan.failed)} inputs could not be used:\n  ' + '\n  '.join(plan.failed),
              file=sys.stderr)
        return EXIT_INPUT
    return 0


def _read_mask(path: str, binary_255: bool) -> np.ndarray:
    import cv2
    mask = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    return (mask > 0).astype(np.uint8) if binary_255 else mask


def _write_volumes(s: InferenceSettings, inferencer: OneShotInferencer, plan: Plan, ref, refs,
                   slices: Dict[str, Dict[int, np.ndarray]], info: ClassInfo) -> List[dict]:
    """One label volume per volume input that has a segmented slice (its references' slices
    hold their labels); a volume none of whose slices could be read is listed as skipped."""
    out = []
    for path in plan.volumes:
        own = slices[path]
        for (ref_path, _, index), labels in zip(refs, ref.labels):
            where = (ref_path, index) if index is not None else series_slice_of(ref_path)
            if where and where[1] is not None and osp.realpath(where[0]) == osp.realpath(path):
                own[where[1]] = labels
        if not slices[path] or not any(t.volume == path for t in plan.targets
                                       if t.slice_index in slices[path]):
            plan.failed.append(f'{path}: no slice could be segmented; no label volume written.')
            continue
        volume = open_volume(path)
        header = None
        if volume.native_axis is None:
            import nibabel as nib
            header = nib.load(path).header
        files = write_label_volume(s.out_dir, plan.names[path], volume, s.axis, own, info,
                                   inferencer.method_name, inferencer.model_name, header)
        entry = dict(input=path, labels=osp.relpath(files[0], s.out_dir),
                     label_description=osp.relpath(files[1], s.out_dir),
                     files=[osp.relpath(f, s.out_dir) for f in files])
        if len(files) > 2:
            entry['dicom_seg'] = osp.relpath(files[2], s.out_dir)
        out.append(entry)
        print(f'{path}: label volume {" and ".join(files)}')
    return out


__all__ = ['InferenceSettings', 'classes_from_references', 'run_inference']
