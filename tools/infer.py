"""Segment your own images from one labelled reference; write masks and overlays.

    python tools/infer.py CONFIG --reference ref.png --reference-mask ref_mask.png \
        --images scans/ [more.png ...] --out-dir out/ [--checkpoint sam_vit_b_01ec64.pth]

Only the config's model is used (its dataset part is ignored). Images may be PNG/TIFF/JPEG of
any depth, DICOM or NIfTI slices (``file.nii.gz#42`` picks slice 42). Transductive methods
(Med-PerSAM) first fit on all given images, as ``tools/test.py`` does. For every image,
``out/masks/<name>.png`` holds the label map (class indices; 0/255 for one class with
``--binary-255``) and ``out/overlays/<name>.png`` the image with the mask drawn on it.
"""
import argparse
import os
import os.path as osp
import sys
from typing import List, Optional, Tuple

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmseg.registry import MODELS  # noqa: E402

import mmseg_medpersam  # noqa: E402,F401
from mmseg_medpersam.datasets.io import OneShotDataError, load_image  # noqa: E402
from mmseg_medpersam.engine.transductive import fit_transductive  # noqa: E402
from mmseg_medpersam.sam.checkpoint import CheckpointError  # noqa: E402
from mmseg_medpersam.segmentors.one_shot_sam import sample_key  # noqa: E402
from mmseg_medpersam.utils.cli import ConfigOptionsAction  # noqa: E402

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.tif', '.tiff', '.bmp', '.dcm', '.nii', '.nii.gz')
COLOURS = np.array([[0, 0, 0], [255, 64, 64], [64, 255, 64], [64, 128, 255], [255, 200, 0],
                    [255, 0, 255], [0, 255, 255]], np.uint8)


def split_slice(path: str) -> Tuple[str, Optional[int]]:
    """``vol.nii.gz#42`` -> (``vol.nii.gz``, 42)."""
    if '#' in path:
        file, index = path.rsplit('#', 1)
        return file, int(index)
    return path, None


def list_images(items: List[str]) -> List[str]:
    out = []
    for item in items:
        if osp.isdir(item):
            out += sorted(osp.join(item, f) for f in os.listdir(item)
                          if f.lower().endswith(IMAGE_SUFFIXES))
        else:
            out.append(item)
    return out


def overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    colours = COLOURS[np.minimum(labels, len(COLOURS) - 1)]
    mixed = image.astype(np.float32)
    fg = labels > 0
    mixed[fg] = (1 - alpha) * mixed[fg] + alpha * colours[fg]
    return mixed.astype(np.uint8)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config')
    parser.add_argument('--reference', required=True, help='reference image (file or vol#slice)')
    parser.add_argument('--reference-mask', required=True, help='its label map')
    parser.add_argument('--images', nargs='+', required=True, help='images or folders')
    parser.add_argument('--out-dir', required=True)
    parser.add_argument('--num-classes', type=int, default=2, help='including background')
    parser.add_argument('--checkpoint', help='SAM weights: a local file or an http(s) URL')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--binary-255', action='store_true', help='write one class as 0/255')
    parser.add_argument('--cfg-options', nargs='+', action=ConfigOptionsAction)
    args = parser.parse_args(argv)

    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    ref_img, ref_index = split_slice(args.reference)
    ref_mask, ref_mask_index = split_slice(args.reference_mask)
    cfg.model.reference = dict(img_path=ref_img, seg_map_path=ref_mask,
                               slice_index=ref_index if ref_index is not None else ref_mask_index)
    cfg.model.num_classes = args.num_classes
    if args.checkpoint and cfg.model.get('sam') is not None:
        cfg.model.sam.checkpoint = args.checkpoint
    try:
        model = MODELS.build(cfg.model).to(args.device).eval()
        model.begin_run()
        model.get_reference({})  # a bad reference stops here, before any target
    except (CheckpointError, OneShotDataError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2 if isinstance(e, CheckpointError) else 3

    paths, images, metas, failed = list_images(args.images), [], [], []
    window = cfg.model.get('window')
    for item in paths:
        path, index = split_slice(item)
        try:
            img = load_image(path, index, 2, window)
        except OneShotDataError as e:
            failed.append(str(e))
            print(f'skipped: {e}', file=sys.stderr)
            continue
        images.append(img)
        metas.append(dict(img_path=path, slice_index=index, num_classes=args.num_classes))
    tensors = [torch.from_numpy(i).permute(2, 0, 1).float().to(args.device) for i in images]
    os.makedirs(osp.join(args.out_dir, 'masks'), exist_ok=True)
    os.makedirs(osp.join(args.out_dir, 'overlays'), exist_ok=True)
    priors = {}
    with torch.no_grad():
        if getattr(model.head, 'transductive', False) and tensors:
            priors, _ = fit_transductive(model, tensors, metas)
        for img, t, meta in zip(images, tensors, metas):
            results = model.segment(t, meta, priors.get(sample_key(meta)))
            labels = model.merge_classes(results, tuple(t.shape[-2:])).numpy().astype(np.uint8)
            stem = osp.basename(meta['img_path'])
            for suffix in sorted(IMAGE_SUFFIXES, key=len, reverse=True):
                if stem.lower().endswith(suffix):
                    stem = stem[:-len(suffix)]
                    break
            if meta['slice_index'] is not None:
                stem += f'_{meta["slice_index"]:04d}'
            out = labels * 255 if args.binary_255 and args.num_classes == 2 else labels
            cv2.imwrite(osp.join(args.out_dir, 'masks', stem + '.png'), out)
            cv2.imwrite(osp.join(args.out_dir, 'overlays', stem + '.png'),
                        overlay(img, labels)[..., ::-1])
            print(f'{stem}: {int((labels > 0).sum())} foreground pixels')
    print(f'{len(images)} images written to {args.out_dir}')
    if failed:
        print(f'{len(failed)} images could not be read:\n  ' + '\n  '.join(failed),
              file=sys.stderr)
        return 3
    return 0


if __name__ == '__main__':
    sys.exit(main())
