"""Write the embedded MNI152 white-matter task (from nilearn's wheel) as PNG slices."""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmseg_medpersam.datasets.mni152 import (DEFAULT_SLICES,  # noqa: E402
                                             REFERENCE_SLICE, prepare_mni152,
                                             slice_name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--out-dir', default='data/mni152_wm')
    parser.add_argument('--overwrite', action='store_true')
    args = parser.parse_args()
    out = prepare_mni152(args.out_dir, overwrite=args.overwrite)
    print(f'wrote {len(DEFAULT_SLICES)} axial slices to {out}/images and {out}/masks '
          f'(reference: {slice_name(REFERENCE_SLICE)}; copyright: {out}/COPYRIGHT.txt)')


if __name__ == '__main__':
    main()
