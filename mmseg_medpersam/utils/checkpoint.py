"""Read weight files and load them strictly, with errors that name the file and the problem.

One copy of the rules every model of the plugin follows (SAM-family backends, DINOv2):

* files are read with mmengine's ``CheckpointLoader`` (local paths) or ``load_from_http``
  (URLs, cached once under torch hub's checkpoint folder), always as plain tensors;
* the usual wrappers (``state_dict``, ``model``, ``module.`` prefixes) are unwrapped;
* loading is strict: a file with missing, unexpected or differently shaped keys is refused
  with a short listing, and nothing is half-loaded.
"""
from __future__ import annotations

import hashlib
import os.path as osp
import socket
from typing import Dict, Mapping, Optional, Sequence
from urllib.parse import urlparse

import torch
import torch.nn as nn

StateDict = Dict[str, torch.Tensor]
WRAPPER_KEYS = ('state_dict', 'model')


from ..structures.errors import CheckpointError  # noqa: E402


def checkpoint_cache_dir() -> str:
    """Where downloaded checkpoints are cached (torch hub's checkpoint folder)."""
    return osp.join(torch.hub.get_dir(), 'checkpoints')


def is_url(path: str) -> bool:
    return str(path).startswith(('http://', 'https://'))


def unreachable_reason(url: str, timeout: float = 5.0) -> Optional[str]:
    """None when ``url``'s host accepts a TCP connection, else why it does not."""
    parts = urlparse(url)
    port = parts.port or (443 if parts.scheme == 'https' else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            return None
    except OSError as e:
        return f'{type(e).__name__}: {e}'


def _looks_like_torch_file(path: str) -> bool:
    """Whether a file starts as ``torch.save`` writes (a zip archive, or a legacy pickle)."""
    try:
        with open(path, 'rb') as f:
            head = f.read(2)
    except OSError:
        return False
    return head == b'PK' or head[:1] == b'\x80'


def _reason(err: BaseException, path: Optional[str] = None) -> str:
    """A one-line reason for a failed ``torch.load``, without PyTorch's advice to unpickle
    arbitrary objects (never follow it for a file of unknown origin)."""
    text = str(err)
    if path is not None and not _looks_like_torch_file(path):
        return 'it is not a PyTorch checkpoint: the file is damaged or of another kind'
    if 'weights_only' in text or 'Weights only load failed' in text:
        return ('it is not a plain file of tensors (it holds Python objects that are not '
                'loaded, for safety)')
    return f'{type(err).__name__}: {text.splitlines()[0] if text else ""}'.rstrip(': ')


def read_file(path: str, what: str) -> object:
    """``torch.load`` a local file through mmengine; errors name ``path``."""
    from mmengine.runner.checkpoint import CheckpointLoader

    local = osp.expanduser(path)
    if not osp.isfile(local):
        raise CheckpointError(f'{path}: {what} file not found.')
    try:
        return CheckpointLoader.load_checkpoint(local, map_location='cpu')
    except Exception as e:
        raise CheckpointError(f'{path}: cannot read as a PyTorch {what} '
                              f'({_reason(e, local)}).') from e


def unwrap_state_dict(obj: object, path: str, what: str,
                      wrappers: Sequence[str] = WRAPPER_KEYS,
                      prefixes: Sequence[str] = ('module.', )) -> StateDict:
    """The flat tensor dict inside a checkpoint object (wrappers and prefixes removed)."""
    while isinstance(obj, Mapping):
        inner = next((obj[k] for k in wrappers if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping) or not obj or not all(
            isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f'{path}: not a {what} (expected a state dict of tensors).')
    out = {}
    for key, value in obj.items():
        for prefix in prefixes:
            if key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def file_digest(path: str) -> str:
    """sha256 of a file, read in 1 MB blocks."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def check_exact_file(path: str, size: Optional[int], sha256: Optional[str], what: str,
                     fix: str) -> None:
    """Refuse a file whose size or sha256 is not the expected one (a damaged copy)."""
    actual = osp.getsize(path)
    if size is not None and actual != size:
        raise CheckpointError(f'{path}: {what} has {actual} bytes, expected {size}: the file is '
                              f'damaged or another one. {fix}')
    if sha256 is not None and file_digest(path) != sha256:
        raise CheckpointError(f'{path}: {what} sha256 differs from the expected {sha256[:12]}...:'
                              f' the file is damaged or another one. {fix}')


def _few(keys: Sequence[str]) -> str:
    return ', '.join(keys[:5]) + (f', ... ({len(keys)} in all)' if len(keys) > 5 else '')


def strict_load(model: nn.Module, state: Mapping[str, torch.Tensor], path: str,
                what: str, hint: str = '') -> None:
    """Load ``state`` into ``model`` only if every key and shape matches; else list them.

    The message starts with ``path``, says which model it does not fit (``what``), adds
    ``hint`` (e.g. which arch the file does fit) and lists up to five keys of each problem.
    """
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        parts = [f'{path}: does not match {what}' + (f' ({hint}).' if hint else '.')]
        if missing:
            parts.append(f'missing keys: {_few(missing)}')
        if unexpected:
            parts.append(f'unexpected keys: {_few(unexpected)}')
        if wrong:
            shapes = [f'{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}' for k in wrong]
            parts.append(f'shape mismatch keys: {_few(shapes)}')
        raise CheckpointError(' '.join(parts))
    model.load_state_dict(dict(state), strict=True)


__all__ = ['CheckpointError', 'StateDict', 'checkpoint_cache_dir', 'is_url',
           'unreachable_reason', 'read_file', 'unwrap_state_dict', 'file_digest',
           'check_exact_file', 'strict_load']
