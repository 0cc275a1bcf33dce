"""Find, fetch and strictly load SAM checkpoints (local path or http(s) URL)."""
from __future__ import annotations

import os.path as osp
import socket
from typing import Dict, Optional
from urllib.parse import urlparse

import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.runner.checkpoint import CheckpointLoader, load_from_http

from .builder import detect_arch, get_arch


class CheckpointError(RuntimeError):
    """A SAM checkpoint is missing, unreachable, unreadable or of another architecture."""


def checkpoint_cache_dir() -> str:
    """Where downloaded checkpoints are cached (torch hub's checkpoint folder)."""
    return osp.join(torch.hub.get_dir(), 'checkpoints')


def _is_url(path: str) -> bool:
    return path.startswith(('http://', 'https://'))


def _reachable(url: str, timeout: float = 5.0) -> Optional[str]:
    """None when ``url``'s host accepts a TCP connection, else the reason it does not."""
    parts = urlparse(url)
    port = parts.port or (443 if parts.scheme == 'https' else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            return None
    except OSError as e:
        return f'{type(e).__name__}: {e}'


def resolve_checkpoint(arch: str, checkpoint: Optional[str]) -> Optional[str]:
    """The checkpoint to load for ``arch``: the given path/URL, else the arch's official URL.

    Returns None for archs without official weights (``tiny``: random weights by design).
    """
    if checkpoint:
        return checkpoint
    spec = get_arch(arch)
    if spec.checkpoint_url:
        return spec.checkpoint_url
    if spec.checkpoint_file:
        raise CheckpointError(
            f'SAM arch {arch!r} has no public download URL: pass its weights file '
            f'({spec.checkpoint_file}) with --checkpoint /path/to/{spec.checkpoint_file} '
            f"(or model.sam.checkpoint in the config).")
    return None


def _offline_message(url: str, reason: str) -> str:
    name = osp.basename(urlparse(url).path)
    cached = osp.join(checkpoint_cache_dir(), name)
    return (f'Cannot download the SAM checkpoint {name} from {url} ({reason}). '
            f'Fetch {url} on a machine with internet access, then either put it at {cached} '
            f'(the cache checked on every run) or pass --checkpoint /path/to/{name} '
            f'(model.sam.checkpoint in a config).')


def read_checkpoint(checkpoint: str) -> Dict[str, torch.Tensor]:
    """Read a state dict from a local file or an http(s) URL (downloaded once, with a progress bar).

    Accepts plain state dicts and the usual wrappers (``state_dict``/``model``, ``module.``).
    """
    if _is_url(checkpoint):
        name = osp.basename(urlparse(checkpoint).path)
        cached = osp.join(checkpoint_cache_dir(), name)
        if not osp.isfile(cached):
            reason = _reachable(checkpoint)
            if reason is not None:
                raise CheckpointError(_offline_message(checkpoint, reason))
            print_log(f'Downloading {checkpoint} to {cached} (first use)', logger='current')
        try:
            obj = load_from_http(checkpoint, map_location='cpu',
                                 model_dir=checkpoint_cache_dir(), progress=True)
        except Exception as e:  # network errors, HTTP errors, truncated files
            if osp.isfile(cached):
                raise CheckpointError(f'{cached}: cannot read the downloaded SAM checkpoint '
                                      f'({type(e).__name__}: {e}); delete it and retry.') from e
            raise CheckpointError(_offline_message(checkpoint, f'{type(e).__name__}: {e}')) from e
    else:
        path = osp.expanduser(checkpoint)
        if not osp.isfile(path):
            raise CheckpointError(f'{checkpoint}: SAM checkpoint file not found.')
        try:
            obj = CheckpointLoader.load_checkpoint(path, map_location='cpu')
        except Exception as e:
            raise CheckpointError(
                f'{checkpoint}: cannot read as a PyTorch checkpoint ({type(e).__name__}: {e}).'
            ) from e
    for key in ('state_dict', 'model'):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f'{checkpoint}: not a state dict of tensors.')
    return {k[len('module.'):] if k.startswith('module.') else k: v for k, v in obj.items()}


def load_sam_checkpoint(sam: nn.Module, arch: str, checkpoint: str,
                        state: Optional[Dict[str, torch.Tensor]] = None) -> None:
    """Strictly load ``checkpoint`` into ``sam``; a mismatch names the file and the arch it fits.

    ``state`` is the already-read state dict of ``checkpoint``, when the caller has it.
    """
    state = read_checkpoint(checkpoint) if state is None else state
    own = sam.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong_shape = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong_shape:
        fits = detect_arch(state)
        hint = (f'it looks like a SAM {fits} checkpoint: use the {fits} config or sam arch'
                if fits else 'it does not look like a segment_anything SAM checkpoint')
        parts = [f'{checkpoint}: does not match SAM arch {arch!r} ({hint}).']
        for label, keys in (('missing', missing), ('unexpected', unexpected),
                            ('shape mismatch', wrong_shape)):
            if keys:
                shown = ', '.join(keys[:5]) + (f', ... ({len(keys)} in all)' if len(keys) > 5 else '')
                parts.append(f'{label} keys: {shown}')
        raise CheckpointError(' '.join(parts))
    sam.load_state_dict(state, strict=True)
    print_log(f'Loaded SAM {arch} weights from {checkpoint}', logger='current')


def is_offline_error(err: BaseException) -> bool:
    """Whether ``err`` is the clear 'cannot download' error (for CLIs that exit early)."""
    return isinstance(err, CheckpointError) and 'Cannot download' in str(err)


__all__ = ['CheckpointError', 'checkpoint_cache_dir', 'resolve_checkpoint', 'read_checkpoint',
           'load_sam_checkpoint', 'is_offline_error']
