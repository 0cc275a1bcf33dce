r"""Segment your own images from labelled references; write masks, panels and volumes.

    python tools/infer.py CONFIG --reference ref.png --reference-mask ref_mask.png \
        --images scans/ [more.png vol.nii.gz vol2.nii.gz#42 ...] --out-dir out/ \
        [--checkpoint FILE] [--resume | --overwrite]

    # one labelled slice of a volume carried through all of it, slice by slice:
    python tools/infer.py CONFIG --reference vol.nii.gz#60 --reference-mask lab.nii.gz#60 \
        --images vol.nii.gz --out-dir out/ --propagate

``--reference`` / ``--reference-mask`` may be repeated: k labelled references, used together by
every method (README, "k references"); with ``--propagate`` several labelled slices of a
volume bound the gaps between them.

Only the config's model is used (its dataset part is ignored). Inputs are 2D files
(PNG/TIFF/JPEG of any depth, DICOM), folders of them, one slice of a NIfTI volume
(``vol.nii.gz#42``), or a whole NIfTI volume (every slice along ``--axis`` is a target; the
reference may be a slice of it, ``vol.nii.gz#42``, or of another volume). Transductive methods
(Med-PerSAM) first fit on all given images, as ``tools/test.py`` does.

Written to ``--out-dir``, each target as soon as it is segmented:

* ``masks/<name>.png``: the label map (class indices; 0/255 for one class with
  ``--binary-255``), ``panels/<name>.png``: the reference with its label beside the target
  with the predicted contour, the prompts SAM got, Med-PerSAM's warped prior and SAM's mask
  after each refinement step;
* ``volumes/<volume>_seg.nii.gz`` for a volume input: one label volume with the input's shape
  and affine (its reference slice holds the reference labels);
* ``summary.json``: every target, its outputs and foreground pixels, and what was skipped;
* ``manifest.json``: the settings that made them (config and its sha256, reference, checkpoint,
  options).

Every file is written to a temporary name and renamed into place; the out-dir is checked to be
writable before any work. Output names are unique: inputs (files or volumes) of the same file
name get their folders' names in front. ``--resume`` keeps the targets already written (each
mask checked: readable, the target's size, with its panel; a damaged one is redone) and
segments the others, ending with the same files and summary as one uninterrupted run; it is
refused (exit 4) when ``manifest.json`` records other settings (``--overwrite`` redoes all).

``--propagate`` segments each volume outward from its labelled slices, each slice's result the
next slice's reference; a slice whose foreground area changes by more than
``--max-area-change`` against its neighbour stops that chain (the slices beyond stay
unlabelled; ``summary.json`` lists where and why). It recomputes every slice (no
``--resume``).

Exit codes: 0 done; 2 checkpoint problem; 3 input problem (some inputs unreadable: the others
are written; no input at all; a bad reference); 4 a setting cannot be used; 5 an output cannot
be written; 130 interrupted (finished targets are kept).
"""
import argparse
import json
import os
import os.path as osp
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='the method: a config file of configs/')
    parser.add_argument('--reference', required=True, action='append',
                        help='reference image (file or vol#slice); repeat it for k references')
    parser.add_argument('--reference-mask', required=True, action='append',
                        help='its label map (file, or the label volume: lab.nii.gz#slice); '
                        'one per --reference, in the same order')
    parser.add_argument('--images', nargs='+', required=True,
                        help='images, folders, volume slices (vol.nii.gz#42) or volumes')
    parser.add_argument('--out-dir', required=True,
                        help='masks/, panels/, volumes/, summary.json and manifest.json go here')
    parser.add_argument('--num-classes', type=int, default=2, help='including background')
    parser.add_argument('--axis', type=int, default=2, choices=(0, 1, 2),
                        help='slicing axis of NIfTI volumes, in their canonical RAS '
                        'orientation (2: axial, whatever the stored orientation)')
    parser.add_argument('--window', metavar='LOW,HIGH',
                        help='intensity window for non-8-bit images, e.g. -160,240 for a CT '
                        "abdomen (default: the config's, else percentiles over each volume or "
                        'image)')
    parser.add_argument('--checkpoint', help='SAM weights: a local file or an http(s) URL')
    parser.add_argument('--device', help="e.g. 'cpu' or 'cuda:0' (default: cuda if there is one)")
    parser.add_argument('--binary-255', action='store_true', help='write one class as 0/255')
    group = parser.add_mutually_exclusive_group()
    group.add_argument('--resume', action='store_true',
                       help='keep the targets already in --out-dir (checked: same settings, '
                       'readable), segment the others')
    group.add_argument('--overwrite', action='store_true',
                       help='segment every target again, replacing what --out-dir holds')
    parser.add_argument('--propagate', action='store_true',
                        help='segment each volume slice by slice outward from its labelled '
                        "slice(s), each result the next slice's reference")
    parser.add_argument('--max-area-change', type=float, default=0.5, metavar='FRACTION',
                        help='--propagate: a slice whose foreground area changes by more than '
                        'this against its neighbour stops that chain (default 0.5)')
    parser.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                        help="override the config's entries, e.g. model.head.num_iters=1")
    return parser.parse_args(argv)


if __name__ == '__main__' and {'-h', '--help'} & set(sys.argv[1:]):
    parse_args()  # prints the help and exits before the heavy imports below

import cv2
import numpy as np

from mmseg_medpersam.apis import OneShotInferencer, run_tool
from mmseg_medpersam.datasets.dicom import read_series, series_image, write_seg
from mmseg_medpersam.datasets.io import (
    OneShotDataError,
    check_volume_data,
    is_dicom_volume_path,
    is_volume,
    to_stored_orientation,
)
from mmseg_medpersam.utils.atomic import (
    atomic_write_bytes,
    atomic_write_png,
    atomic_write_text,
    check_writable_dir,
)
from mmseg_medpersam.utils.cli import EXIT_INPUT, ConfigError
from mmseg_medpersam.utils.naming import IMAGE_SUFFIXES, unique_names
from mmseg_medpersam.utils.progress import track
from mmseg_medpersam.visualization import target_panel

#: The settings of the run that wrote an out-dir (``--resume`` checks them).
MANIFEST = 'manifest.json'


@dataclass
class Target:
    """One image to segment: a 2D file, or one slice of a volume."""

    path: str
    slice_index: Optional[int] = None
    name: str = ''
    volume: Optional[str] = None  # the volume input this slice belongs to

    @property
    def meta(self) -> dict:
        return dict(img_path=self.path, slice_index=self.slice_index)


@dataclass
class Plan:
    """What to segment and where its outputs go."""

    targets: List[Target] = field(default_factory=list)
    volumes: Dict[str, Tuple[int, ...]] = field(default_factory=dict)  # path -> shape
    names: Dict[str, str] = field(default_factory=dict)  # input path -> unique output name
    failed: List[str] = field(default_factory=list)


def split_slice(path: str) -> Tuple[str, Optional[int]]:
    """``vol.nii.gz#42`` -> (``vol.nii.gz``, 42); a negative or non-integer index is an error."""
    if '#' not in path:
        return path, None
    file, index = path.rsplit('#', 1)
    if not index.isdigit():
        raise OneShotDataError(f'{path}: the slice after # must be a whole number >= 0, '
                               f'got {index!r}.')
    return file, int(index)


def plan_targets(items: List[str], axis: int,
                 references: List[Tuple[str, Optional[int]]]) -> Plan:
    """Expand folders and volumes into targets (the references left out); unreadable inputs
    are listed, not fatal."""
    plan = Plan()
    entries: List[Tuple[str, Optional[int]]] = []
    for item in items:
        try:
            path, index = split_slice(item)
        except OneShotDataError as e:
            plan.failed.append(str(e))
            continue
        if osp.isdir(path) and index is None and is_volume(path):  # a DICOM series
            entries.append((path, None))
        elif osp.isdir(path):
            found = sorted(osp.join(path, f) for f in os.listdir(path)
                           if f.lower().endswith(IMAGE_SUFFIXES))
            if not found:
                plan.failed.append(f'{path}: no image files in this folder '
                                   f'({", ".join(IMAGE_SUFFIXES)}).')
            entries += [(f, None) for f in found]
        else:
            entries.append((path, index))
    seen = set()
    unique = []
    for path, index in entries:
        key = (osp.realpath(path), index)
        if key not in seen:
            seen.add(key)
            unique.append((path, index))
    names = plan.names = unique_names(sorted({p for p, _ in unique}))
    ref_real = {(osp.realpath(path), index) for path, index in references}
    for path, index in unique:
        if is_volume(path) and index is None:
            try:
                shape = check_volume_data(path)
            except OneShotDataError as e:
                plan.failed.append(str(e))
                continue
            if len(shape) == 3:
                plan.volumes[path] = shape
                for z in range(shape[axis]):
                    if (osp.realpath(path), z) not in ref_real:
                        plan.targets.append(Target(path, z, f'{names[path]}_{z:04d}', path))
                continue
        if (osp.realpath(path), index) in ref_real:
            continue
        name = names[path] if index is None else f'{names[path]}_{index:04d}'
        plan.targets.append(Target(path, index, name))
    return plan


def write_volume(out_dir: str, path: str, name: str, shape: Tuple[int, ...], axis: int,
                 slices: Dict[int, np.ndarray], method: str = 'one-shot',
                 class_names: Tuple[str, ...] = ('background', 'foreground')) -> List[str]:
    """Assemble a volume's slice label maps (class indices, canonical RAS slices) into one
    label volume on the input's grid: its shape, affine and stored orientation, marked as a
    label map (NIfTI intent 'label', no intensity calibration), written atomically. For a
    DICOM series also a DICOM SEG object referencing its slices. Returns the files written."""
    import gzip

    import nibabel as nib
    img = series_image(path) if is_dicom_volume_path(path) else nib.load(path)
    labels = np.zeros(shape[:3], np.uint8)  # canonical RAS
    for z, mask in slices.items():
        index = [slice(None)] * 3
        index[axis] = z
        labels[tuple(index)] = np.flipud(mask).T  # the inverse of the display orientation
    out = osp.join(out_dir, 'volumes', name + '_seg.nii.gz')
    header = img.header.copy()
    header.set_data_dtype(np.uint8)
    header.set_intent('label')
    header.set_slope_inter(1, 0)
    header['cal_min'], header['cal_max'] = 0, 0
    header['descrip'] = b'mmseg-medpersam label map'
    stored = to_stored_orientation(labels, img)
    data = nib.Nifti1Image(stored, img.affine, header).to_bytes()
    atomic_write_bytes(out, gzip.compress(data, compresslevel=6))
    outputs = [out]
    if is_dicom_volume_path(path) and read_series(path).frames is None:
        seg = osp.join(out_dir, 'volumes', name + '_seg.dcm')
        write_seg(seg, path, stored, class_names, method)
        outputs.append(seg)
    return outputs


def read_written_mask(path: str, shape: Tuple[int, int], binary_255: bool
                      ) -> Optional[np.ndarray]:
    """A mask written earlier, as class indices, or None if it is missing or damaged (wrong
    size, unreadable): such a target is segmented again."""
    if not osp.isfile(path):
        return None
    mask = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if mask is None or mask.ndim != 2 or mask.shape != tuple(shape):
        return None
    return (mask > 0).astype(np.uint8) if binary_255 else mask


def parse_window(text: Optional[str]) -> Optional[Tuple[float, float]]:
    """``--window low,high`` -> (low, high); a bad one is a setting error."""
    if not text:
        return None
    try:
        low, high = (float(v) for v in text.split(','))
    except ValueError:
        raise ConfigError(f'--window {text}: expected LOW,HIGH (two numbers), e.g. -160,240')
    if not high > low:
        raise ConfigError(f'--window {text}: HIGH must be above LOW')
    return low, high


def run_manifest(args: argparse.Namespace) -> dict:
    """What decides the outputs of a run; a resumed run must match it."""
    import hashlib
    with open(args.config, 'rb') as f:
        config_sha = hashlib.sha256(f.read()).hexdigest()
    return dict(config=osp.abspath(args.config), config_sha256=config_sha,
                reference=args.reference, reference_mask=args.reference_mask,
                checkpoint=args.checkpoint, cfg_options=args.cfg_options or {},
                num_classes=args.num_classes, axis=args.axis, binary_255=args.binary_255,
                window=args.window, propagate=args.propagate,
                max_area_change=args.max_area_change if args.propagate else None)


def check_manifest(args: argparse.Namespace, manifest: dict) -> None:
    """``--resume`` only into an out-dir written by the same settings (else exit 4)."""
    path = osp.join(args.out_dir, MANIFEST)
    if not osp.isfile(path):
        if any(osp.isdir(osp.join(args.out_dir, sub)) and os.listdir(osp.join(args.out_dir, sub))
               for sub in ('masks', 'panels')):
            raise ConfigError(f'{args.out_dir}: holds outputs without a {MANIFEST} (written by '
                              'another tool or version): --resume cannot tell how they were '
                              'made; use --overwrite or another --out-dir.')
        return
    try:
        with open(path) as f:
            before = json.load(f)
    except (OSError, ValueError) as e:
        raise ConfigError(f'{path}: unreadable ({e}); use --overwrite') from e
    changed = sorted(k for k in set(before) | set(manifest) if before.get(k) != manifest.get(k))
    if changed:
        raise ConfigError(f'{args.out_dir}: written with other settings ({", ".join(changed)} '
                          'differ): --resume would mix two runs; use --overwrite or another '
                          '--out-dir.')


def write_target(args: argparse.Namespace, inferencer: OneShotInferencer, target, t: Target,
                 reference, pred=None) -> np.ndarray:
    """Segment one target (or take its ``pred``); write its mask and panel. Returns its label
    map."""
    pred = pred if pred is not None else inferencer(target)
    out = pred.labels * 255 if args.binary_255 and args.num_classes == 2 else pred.labels
    atomic_write_png(osp.join(args.out_dir, 'masks', t.name + '.png'), out)
    target_panel(osp.join(args.out_dir, 'panels', t.name + '.png'), target.image, pred.labels,
                 prompts=pred.prompts, reference=reference,
                 title=f'{inferencer.method_name} | {t.name}')
    print(f'{t.name}: {int((pred.labels > 0).sum())} foreground pixels', flush=True)
    return pred.labels


def run(args: argparse.Namespace) -> int:
    if args.num_classes < 2:
        raise ConfigError(f'--num-classes {args.num_classes}: must count the background and at '
                          'least one class (>= 2).')
    check_writable_dir(args.out_dir, 'output folder (--out-dir)')
    manifest = run_manifest(args)
    if args.resume:
        check_manifest(args, manifest)
    if len(args.reference) != len(args.reference_mask):
        raise ConfigError(f'{len(args.reference)} --reference for {len(args.reference_mask)} '
                          '--reference-mask: give one label map per reference, in order.')
    if not args.max_area_change > 0:
        raise ConfigError(f'--max-area-change {args.max_area_change}: must be > 0')
    ref_keys = []  # (image, slice) of each reference; its label map (mask, slice)
    refs = []
    for image, mask in zip(args.reference, args.reference_mask):
        reference, ref_mask = split_slice(image), split_slice(mask)
        index = reference[1] if reference[1] is not None else ref_mask[1]
        ref_keys.append((reference[0], index))
        refs.append((reference[0], ref_mask[0], index))
    inferencer = OneShotInferencer(args.config, args.checkpoint, args.device, args.cfg_options,
                                   args.num_classes, window=parse_window(args.window))
    # A bad reference stops here, before any target.
    ref = inferencer.set_references(refs, args.axis)
    plan = plan_targets(args.images, args.axis, ref_keys)
    if not plan.targets:
        listing = ''.join(f'\n  {m}' for m in plan.failed)
        raise OneShotDataError(f'no image to segment among the inputs.{listing}')
    if args.propagate:
        flat = [t.path for t in plan.targets if t.slice_index is None]
        labelled = {osp.realpath(p) for p, z in ref_keys if z is not None}
        alone = sorted({t.path for t in plan.targets if t.slice_index is not None
                        and osp.realpath(t.path) not in labelled})
        if flat or alone:
            problems = ([f'{p}: not a volume' for p in flat[:3]]
                        + [f'{p}: no --reference slice of it' for p in alone[:3]])
            raise ConfigError('--propagate segments volumes from their labelled slices: '
                              + '; '.join(problems))
    for sub in ('masks', 'panels'):
        check_writable_dir(osp.join(args.out_dir, sub))
    atomic_write_text(osp.join(args.out_dir, MANIFEST), json.dumps(manifest, indent=2))
    def load(t: Target):
        try:
            return inferencer.load(t.path, t.slice_index, args.axis)
        except OneShotDataError as e:
            plan.failed.append(str(e))
            print(f'skipped: {e}', file=sys.stderr)
            return None

    def earlier(target, t: Target) -> Optional[np.ndarray]:
        """The mask a resumed run keeps (None: segment it): readable, of the target's size,
        with its panel."""
        panel = osp.join(args.out_dir, 'panels', t.name + '.png')
        if not args.resume or not osp.isfile(panel) or cv2.imread(panel) is None:
            return None
        return read_written_mask(osp.join(args.out_dir, 'masks', t.name + '.png'),
                                 target.image.shape[:2], args.binary_255)

    # Memory: a transductive method is fitted on every target at once; any other method
    # streams them, one target in memory at a time.
    loaded = {}
    propagated: Dict[Tuple[str, int], object] = {}
    if args.propagate:  # every slice, in chain order: all of a volume in memory
        loaded = {i: target for i, t in track(list(enumerate(plan.targets)), 'loading targets')
                  if (target := load(t)) is not None}
        propagated, propagation_log = inferencer.propagate(list(loaded.values()),
                                                           args.max_area_change)
        for volume, entry in propagation_log.items():
            for line in entry['stopped']:
                print(f'{volume}: {line}', file=sys.stderr)
    elif inferencer.model.transductive:
        loaded = {i: target for i, t in track(list(enumerate(plan.targets)), 'loading targets')
                  if (target := load(t)) is not None}
        if any(earlier(target, plan.targets[i]) is None for i, target in loaded.items()):
            inferencer.fit(list(loaded.values()))
    ref_view = (ref.images[0].permute(1, 2, 0).cpu().numpy().astype(np.uint8), ref.labels[0])
    summary, volume_slices = [], {path: {} for path in plan.volumes}
    for i, t in track(list(enumerate(plan.targets)), 'segmenting targets'):
        in_memory = args.propagate or inferencer.model.transductive
        target = loaded.pop(i, None) if in_memory else load(t)
        if target is None:
            continue
        pred = propagated.get((t.path, t.slice_index)) if args.propagate else None
        labels = earlier(target, t) if not args.propagate else None
        if labels is None:
            labels = write_target(args, inferencer, target, t, ref_view, pred)
        if t.volume is not None:
            volume_slices[t.volume][t.slice_index] = labels
        summary.append(dict(input=t.path, slice=t.slice_index, name=t.name,
                            mask=osp.join('masks', t.name + '.png'),
                            panel=osp.join('panels', t.name + '.png'),
                            foreground_pixels=int((labels > 0).sum()),
                            **({'propagation': pred.status} if pred is not None else {})))
    volumes = []
    for path, shape in plan.volumes.items():
        slices = volume_slices[path]
        for (ref_path, index), labels in zip(ref_keys, ref.labels):
            if osp.realpath(ref_path) == osp.realpath(path):  # a reference slice: its labels
                slices[index] = labels
        outs = write_volume(args.out_dir, path, plan.names[path], shape, args.axis, slices,
                            inferencer.method_name)
        entry = dict(input=path, labels=osp.relpath(outs[0], args.out_dir))
        if len(outs) > 1:
            entry['dicom_seg'] = osp.relpath(outs[1], args.out_dir)
        volumes.append(entry)
        print(f'{path}: label volume {" and ".join(outs)}')
    atomic_write_text(osp.join(args.out_dir, 'summary.json'), json.dumps(
        dict(config=args.config, method=inferencer.method_name, targets=summary,
             volumes=volumes, skipped=sorted(plan.failed),
             **({'propagation': propagation_log} if args.propagate else {})), indent=2))
    print(f'{len(summary)} targets written to {args.out_dir}')
    if plan.failed:
        print(f'{len(plan.failed)} inputs could not be used:\n  ' + '\n  '.join(plan.failed),
              file=sys.stderr)
        return EXIT_INPUT
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_tool(lambda: run(args))


if __name__ == '__main__':
    sys.exit(main())
