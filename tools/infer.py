"""Segment your own images from one labelled reference; write masks, panels and volumes.

    python tools/infer.py CONFIG --reference ref.png --reference-mask ref_mask.png \
        --images scans/ [more.png vol.nii.gz vol2.nii.gz#42 ...] --out-dir out/ \
        [--checkpoint FILE] [--resume]

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
* ``summary.json``: every target, its outputs and foreground pixels, and what was skipped.

Output names are unique: inputs of the same file name get their folder's name in front.
``--resume`` keeps the targets already written and segments only the others, ending with the
same files and summary as one uninterrupted run.

Exit codes: 0 done; 2 checkpoint problem; 3 input problem (some inputs unreadable: the others
are written; no input at all; a bad reference); 4 a setting cannot be used.
"""
import argparse
import json
import os
import os.path as osp
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import cv2
import numpy as np

from mmseg_medpersam.apis import OneShotInferencer, run_tool
from mmseg_medpersam.datasets.io import OneShotDataError, is_nifti, volume_shape
from mmseg_medpersam.utils.cli import EXIT_INPUT, ConfigOptionsAction
from mmseg_medpersam.utils.naming import IMAGE_SUFFIXES, file_stem
from mmseg_medpersam.visualization import target_panel


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


def unique_names(paths: List[str]) -> Dict[str, str]:
    """A distinct output name per input path: the file stem, with as many parent folders in
    front (joined by '_') as it takes to tell inputs of the same file name apart."""
    names: Dict[str, str] = {}
    depth = {p: 0 for p in paths}
    while True:
        for p in paths:
            parts = osp.normpath(osp.abspath(p)).split(os.sep)
            parents = [q for q in parts[-1 - depth[p]:-1] if q]
            names[p] = '_'.join(parents + [file_stem(p)])
        clash = {n for n in names.values() if list(names.values()).count(n) > 1}
        if not clash:
            return names
        grown = False
        for p in paths:
            if names[p] in clash and depth[p] < len(osp.abspath(p).split(os.sep)) - 2:
                depth[p] += 1
                grown = True
        if not grown:  # identical paths cannot clash here: inputs are de-duplicated
            return names


def plan_targets(items: List[str], axis: int, reference: Tuple[str, Optional[int]]) -> Plan:
    """Expand folders and volumes into targets; unreadable inputs are listed, not fatal."""
    plan = Plan()
    entries: List[Tuple[str, Optional[int]]] = []
    for item in items:
        try:
            path, index = split_slice(item)
        except OneShotDataError as e:
            plan.failed.append(str(e))
            continue
        if osp.isdir(path):
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
    names = unique_names(sorted({p for p, _ in unique}))
    ref_real = (osp.realpath(reference[0]), reference[1])
    for path, index in unique:
        if is_nifti(path) and index is None:
            try:
                shape = volume_shape(path)
            except OneShotDataError as e:
                plan.failed.append(str(e))
                continue
            if len(shape) == 3:
                plan.volumes[path] = shape
                for z in range(shape[axis]):
                    if (osp.realpath(path), z) != ref_real:
                        plan.targets.append(Target(path, z, f'{names[path]}_{z:04d}', path))
                continue
        name = names[path] if index is None else f'{names[path]}_{index:04d}'
        plan.targets.append(Target(path, index, name))
    return plan


def write_volume(out_dir: str, path: str, shape: Tuple[int, ...], axis: int,
                 targets: List[Target], reference: Tuple[str, Optional[int]],
                 ref_labels: Optional[np.ndarray]) -> str:
    """Assemble a volume's slice masks into one label volume with the input's affine."""
    import nibabel as nib
    img = nib.load(path)
    labels = np.zeros(shape[:3], np.uint8)
    for t in targets:
        if t.volume != path:
            continue
        mask = cv2.imread(osp.join(out_dir, 'masks', t.name + '.png'), cv2.IMREAD_UNCHANGED)
        if mask is None:
            continue
        index = [slice(None)] * 3
        index[axis] = t.slice_index
        labels[tuple(index)] = np.flipud(mask).T  # the inverse of the display orientation
    if ref_labels is not None and osp.realpath(reference[0]) == osp.realpath(path):
        index = [slice(None)] * 3
        index[axis] = reference[1]
        labels[tuple(index)] = np.flipud(ref_labels).T
    out = osp.join(out_dir, 'volumes', file_stem(path) + '_seg.nii.gz')
    os.makedirs(osp.dirname(out), exist_ok=True)
    header = img.header.copy()
    header.set_data_dtype(np.uint8)
    nib.save(nib.Nifti1Image(labels, img.affine, header), out)
    return out


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config')
    parser.add_argument('--reference', required=True, help='reference image (file or vol#slice)')
    parser.add_argument('--reference-mask', required=True,
                        help='its label map (file, or the label volume: lab.nii.gz#slice)')
    parser.add_argument('--images', nargs='+', required=True,
                        help='images, folders, volume slices (vol.nii.gz#42) or volumes')
    parser.add_argument('--out-dir', required=True)
    parser.add_argument('--num-classes', type=int, default=2, help='including background')
    parser.add_argument('--axis', type=int, default=2, choices=(0, 1, 2),
                        help='slicing axis of NIfTI volumes (2: axial for RAS volumes)')
    parser.add_argument('--checkpoint', help='SAM weights: a local file or an http(s) URL')
    parser.add_argument('--device', help="e.g. 'cpu' or 'cuda:0' (default: cuda if there is one)")
    parser.add_argument('--binary-255', action='store_true', help='write one class as 0/255')
    parser.add_argument('--resume', action='store_true',
                        help='keep the targets already in --out-dir, segment the others')
    parser.add_argument('--cfg-options', nargs='+', action=ConfigOptionsAction)
    return parser.parse_args(argv)


def write_target(args: argparse.Namespace, inferencer: OneShotInferencer, target, t: Target,
                 reference) -> np.ndarray:
    """Segment one target; write its mask and panel. Returns its label map."""
    pred = inferencer(target)
    out = pred.labels * 255 if args.binary_255 and args.num_classes == 2 else pred.labels
    cv2.imwrite(osp.join(args.out_dir, 'masks', t.name + '.png'), out)
    target_panel(osp.join(args.out_dir, 'panels', t.name + '.png'), target.image, pred.labels,
                 prompts=pred.prompts, reference=reference,
                 title=f'{inferencer.method_name} | {t.name}')
    print(f'{t.name}: {int((pred.labels > 0).sum())} foreground pixels', flush=True)
    return pred.labels


def run(args: argparse.Namespace) -> int:
    reference = split_slice(args.reference)
    ref_mask = split_slice(args.reference_mask)
    ref_key = (reference[0], reference[1] if reference[1] is not None else ref_mask[1])
    inferencer = OneShotInferencer(args.config, args.checkpoint, args.device, args.cfg_options,
                                   args.num_classes)
    # A bad reference stops here, before any target.
    ref = inferencer.set_reference(reference[0], ref_mask[0], ref_key[1], args.axis)
    plan = plan_targets(args.images, args.axis, ref_key)
    if not plan.targets:
        listing = ''.join(f'\n  {m}' for m in plan.failed)
        raise OneShotDataError(f'no image to segment among the inputs.{listing}')
    for sub in ('masks', 'panels'):
        os.makedirs(osp.join(args.out_dir, sub), exist_ok=True)
    loaded, usable = [], []
    for t in plan.targets:
        try:
            loaded.append(inferencer.load(t.path, t.slice_index, args.axis))
            usable.append(t)
        except OneShotDataError as e:
            plan.failed.append(str(e))
            print(f'skipped: {e}', file=sys.stderr)

    def done(t: Target) -> bool:
        return args.resume and all(osp.isfile(osp.join(args.out_dir, sub, t.name + '.png'))
                                   for sub in ('masks', 'panels'))

    if inferencer.model.transductive and any(not done(t) for t in usable):
        inferencer.fit(loaded)
    ref_view = (ref.image.permute(1, 2, 0).cpu().numpy().astype(np.uint8), ref.labels)
    summary = []
    for target, t in zip(loaded, usable):
        if done(t):
            labels = cv2.imread(osp.join(args.out_dir, 'masks', t.name + '.png'),
                                cv2.IMREAD_UNCHANGED)
            labels = (labels > 0).astype(np.uint8) if args.binary_255 else labels
        else:
            labels = write_target(args, inferencer, target, t, ref_view)
        summary.append(dict(input=t.path, slice=t.slice_index, name=t.name,
                            mask=osp.join('masks', t.name + '.png'),
                            panel=osp.join('panels', t.name + '.png'),
                            foreground_pixels=int((labels > 0).sum())))
    volumes = []
    for path, shape in plan.volumes.items():
        out = write_volume(args.out_dir, path, shape, args.axis, usable, ref_key, ref.labels)
        volumes.append(dict(input=path, labels=osp.relpath(out, args.out_dir)))
        print(f'{path}: label volume {out}')
    with open(osp.join(args.out_dir, 'summary.json'), 'w') as f:
        json.dump(dict(config=args.config, method=inferencer.method_name, targets=summary,
                       volumes=volumes, skipped=sorted(plan.failed)), f, indent=2)
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
