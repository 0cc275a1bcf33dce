r"""Segment your own images from labelled references; write masks, panels and volumes.

    python tools/infer.py CONFIG --reference ref.png --reference-mask ref_mask.png \
        --images scans/ [more.png vol.nii.gz vol2.nii.gz#42 ct_series/ ...] --out-dir out/

    # a CT series, the reference mask drawn on slice 40's pixel array (as DICOM viewers show it):
    python tools/infer.py CONFIG --reference ct_series#40 --reference-mask slice40.png \
        --images ct_series --out-dir out/
    # or a label volume that carries its geometry (NIfTI, DICOM SEG, Slicer .seg.nrrd):
    python tools/infer.py CONFIG --reference ct_series#40 --reference-mask liver.seg.nrrd ...

    # one labelled slice of a volume carried through all of it, slice by slice:
    python tools/infer.py CONFIG --reference vol.nii.gz#60 --reference-mask lab.nii.gz \
        --images vol.nii.gz --out-dir out/ --propagate

Slice layout (one rule for every 2D image of a volume slice, read or written): a DICOM
series' own slices are their stored pixel arrays, as DICOM viewers show them; any other slice
(NIfTI) is shown as 3D Slicer and ITK-SNAP show it: the patient's right on the image's left,
anterior (axial) or superior at the top. A 2D reference mask of a volume slice is read in that
layout; a label volume (NIfTI, DICOM SEG, NRRD) is matched to its image by geometry.

Inputs: 2D files (PNG/TIFF/JPEG of any depth, DICOM), folders of them, a DICOM series (a
folder of one series' slices, or a multi-frame file), a NIfTI volume (every slice along
--axis), or one slice (``vol.nii.gz#42``, ``series#42``). ``--reference`` may be repeated (k
references, used together). Only the config's model is used. Transductive methods (Med-PerSAM)
fit on all targets first.

Written to --out-dir, each target as soon as it is segmented: masks/<name>.png (class indices;
0/255 with --binary-255), panels/<name>.png, volumes/<volume>_seg.nii.gz (the input's grid and
affine, an ITK-SNAP label description beside it) and _seg.dcm (a DICOM SEG, for a DICOM
series), summary.json, manifest.json (the settings), progress.jsonl (what each finished target
was made from). A folder holding another run's outputs is refused unless --resume (same
settings: keeps each target whose input pixels, references and files are unchanged, redoes the
rest) or --overwrite (removes that run's files first); a second run into a folder in use is
refused.

Exit codes: 0 done; 2 checkpoint problem; 3 input problem (some inputs unreadable: the others
are written; a bad reference); 4 a setting cannot be used; 5 an output cannot be written;
130 interrupted (finished targets are kept).
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    # A usage error is a setting that cannot be used: exit 4 (2 means a checkpoint problem).
    parser.error = lambda message: parser.exit(4, f'{parser.format_usage()}error: {message}\n')
    parser.add_argument('config', help='the method: a config file of configs/')
    parser.add_argument('--reference', required=True, action='append',
                        help='reference image (a file, vol.nii.gz#k, series#k, or the DICOM '
                        'file of a slice); repeat it for k references')
    parser.add_argument('--reference-mask', required=True, action='append',
                        help='its labels: a 2D mask in the slice layout above, or a label '
                        'volume (NIfTI, DICOM SEG, .seg.nrrd/.nrrd) matched by geometry; one '
                        'per --reference, in order')
    parser.add_argument('--images', nargs='+', required=True,
                        help='images, folders, DICOM series, volumes or slices (vol.nii.gz#42)')
    parser.add_argument('--out-dir', required=True,
                        help='masks/, panels/, volumes/, summary.json, manifest.json go here')
    parser.add_argument('--num-classes', type=int,
                        help='classes including background (default: from the reference '
                        "masks' values: 0/1 or 0/255 is one class, else the largest + 1)")
    parser.add_argument('--class-names', metavar='A,B',
                        help='names of the foreground classes, in label order (default: the '
                        "reference label file's own, else 'foreground' / 'class k'); they "
                        'name the DICOM SEG segments and the label description')
    parser.add_argument('--class-codes', metavar='JSON',
                        help='DICOM SEG codes per class name: {"liver": {"category": '
                        '["123037004", "SCT", "Anatomical Structure"], "type": ["10200004", '
                        '"SCT", "Liver"]}} (default: SCT 85756007 Tissue, a placeholder)')
    parser.add_argument('--axis', type=int, choices=(0, 1, 2),
                        help='slicing axis of volumes in RAS (0 sagittal, 1 coronal, 2 axial; '
                        "default: a DICOM series' own slice axis, else 2)")
    parser.add_argument('--window', metavar='LOW,HIGH',
                        help='intensity window for non-8-bit images, e.g. -160,240 for a CT '
                        "abdomen (default: the config's, else a DICOM's own, else percentiles "
                        'over each volume or image)')
    parser.add_argument('--checkpoint', help='SAM weights: a local file or an http(s) URL')
    parser.add_argument('--device', help="e.g. 'cpu' or 'cuda:0' (default: cuda if there is one)")
    parser.add_argument('--binary-255', action='store_true', help='write one class as 0/255')
    group = parser.add_mutually_exclusive_group()
    group.add_argument('--resume', action='store_true',
                       help="complete the run that wrote --out-dir (same settings): keep its "
                       'unchanged targets, redo the others')
    group.add_argument('--overwrite', action='store_true',
                       help="replace the run that wrote --out-dir (its files are removed)")
    parser.add_argument('--propagate', action='store_true',
                        help='segment each volume slice by slice outward from its labelled '
                        "slice(s), each result the next slice's reference")
    parser.add_argument('--max-area-change', type=float, default=0.5, metavar='FRACTION',
                        help='--propagate: a slice whose foreground area changes by more than '
                        'this against its neighbour stops that chain (default 0.5)')
    parser.add_argument('--no-cache', action='store_true',
                        help='do not read or write the disk embedding cache '
                        '(MEDPERSAM_CACHE_DIR); the outputs are the same')
    parser.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                        help="override the config's entries, e.g. model.head.num_iters=1")
    return parser.parse_args(argv)


def settings(args: argparse.Namespace):
    """The command line as the API's ``InferenceSettings``."""
    from mmseg_medpersam.apis import InferenceSettings
    from mmseg_medpersam.utils.cli import ConfigError, parse_window
    if len(args.reference) != len(args.reference_mask):
        raise ConfigError(f'{len(args.reference)} --reference for {len(args.reference_mask)} '
                          '--reference-mask: give one label map per reference, in order.')
    names = [n.strip() for n in args.class_names.split(',')] if args.class_names else None
    return InferenceSettings(
        config=args.config, references=list(zip(args.reference, args.reference_mask)),
        images=args.images, out_dir=args.out_dir, num_classes=args.num_classes,
        class_names=names, class_codes=args.class_codes, axis=args.axis,
        window=parse_window(args.window, '--window'), checkpoint=args.checkpoint,
        device=args.device, binary_255=args.binary_255, resume=args.resume,
        overwrite=args.overwrite, propagate=args.propagate,
        max_area_change=args.max_area_change, cfg_options=args.cfg_options,
        no_cache=args.no_cache)


def main(argv=None) -> int:
    args = parse_args(argv)
    from mmseg_medpersam.apis import run_inference, run_tool
    return run_tool(lambda: run_inference(settings(args)))


if __name__ == '__main__':
    sys.exit(main())
