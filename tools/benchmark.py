"""Time configs end to end: ms per image, fit time, peak GPU memory.

    python tools/benchmark.py CONFIG [CONFIG ...] [--checkpoint PATH_OR_URL | --random-weights]
                              [--device cuda] [--cfg-options k=v ...] [--json out.json]

``--random-weights`` saves a randomly initialised SAM of each config's arch to a temporary
file and loads it through the normal checkpoint path (for machines without real weights: the
speed is real, the Dice is not). Numbers are what was measured on this machine; nothing is
compared against a threshold here.
"""
import argparse
import json
import os
import os.path as osp
import sys
import tempfile
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import mmseg_medpersam  # noqa: E402,F401
from mmseg_medpersam.sam import build_sam_model  # noqa: E402
from mmseg_medpersam.utils.cli import ConfigOptionsAction  # noqa: E402


def load_test_tool():
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'medpersam_test_tool', osp.join(osp.dirname(osp.abspath(__file__)), 'test.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def random_checkpoint(arch: str, folder: str) -> str:
    path = osp.join(folder, f'random_sam_{arch}.pth')
    if not osp.isfile(path):
        torch.save(build_sam_model(arch, seed=0).state_dict(), path)
    return path


def bench(config: str, args, tool, tmp: str) -> dict:
    argv = [config, '--work-dir', osp.join(tmp, osp.basename(config)),
            '--out-metrics', osp.join(tmp, 'm.json')]
    cfg = tool.build_config(tool.parse_args(argv))
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    sam = cfg.model.get('sam')
    if sam is not None:
        if args.checkpoint:
            sam.checkpoint = args.checkpoint
        elif args.random_weights and sam.arch != 'tiny':
            sam.checkpoint = random_checkpoint(sam.arch, tmp)
    cfg.default_hooks.logger.interval = 1000
    cuda = torch.cuda.is_available() and (args.device or 'cuda').startswith('cuda')
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    runner = Runner.from_cfg(cfg)
    if args.device:
        runner.model.to(args.device)
    built = time.perf_counter()
    metrics = runner.test()
    if cuda:
        torch.cuda.synchronize()
    done = time.perf_counter()
    with open(osp.join(tmp, 'm.json')) as f:
        per_image = [r['seconds'] for r in json.load(f)['per_image'] if r.get('seconds')]
    model = runner.model.module if hasattr(runner.model, 'module') else runner.model
    fit_seconds = sum(log.get('seconds', 0.0) for entry in getattr(model, 'fit_logs', [])
                      for log in entry.values())
    return dict(
        config=config, device=tool.device_name(runner), method=tool.method_name(runner),
        images=len(per_image), mDice=metrics.get('mDice'),
        ms_per_image_median=1000 * float(np.median(per_image)) if per_image else None,
        ms_per_image_mean=1000 * float(np.mean(per_image)) if per_image else None,
        warping_fit_seconds=round(fit_seconds, 2) if fit_seconds else None,
        build_seconds=round(built - start, 2), test_seconds=round(done - built, 2),
        peak_gpu_memory_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda
        else None)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('configs', nargs='+')
    group = parser.add_mutually_exclusive_group()
    group.add_argument('--checkpoint', help='SAM weights for every config')
    group.add_argument('--random-weights', action='store_true',
                       help='save and load a random SAM of each arch (speed only)')
    parser.add_argument('--device', help="e.g. 'cuda:0' (default: what the Runner picks)")
    parser.add_argument('--cfg-options', nargs='+', action=ConfigOptionsAction)
    parser.add_argument('--json', help='write the results here too')
    args = parser.parse_args(argv)
    tool = load_test_tool()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for config in args.configs:
            result = bench(config, args, tool, tmp)
            results.append(result)
            print(json.dumps(result), flush=True)
    if args.json:
        os.makedirs(osp.dirname(args.json) or '.', exist_ok=True)
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
