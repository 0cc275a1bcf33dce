"""Windowing of medical images of any depth to 8-bit RGB (the one rule, in datasets)."""
import numpy as np
import pytest

from mmseg_medpersam.datasets.windowing import to_uint8_rgb, window_to_uint8


def test_uint8_is_unchanged_and_grayscale_becomes_rgb():
    rng = np.random.RandomState(0)
    rgb = rng.randint(0, 256, (5, 7, 3)).astype(np.uint8)
    assert np.array_equal(to_uint8_rgb(rgb), rgb)
    gray = rng.randint(0, 256, (5, 7)).astype(np.uint8)
    out = to_uint8_rgb(gray)
    assert out.shape == (5, 7, 3) and out.dtype == np.uint8
    assert all(np.array_equal(out[..., c], gray) for c in range(3))
    assert np.array_equal(to_uint8_rgb(gray[..., None]), out)
    rgba = np.dstack([rgb, np.full((5, 7), 9, np.uint8)])
    assert np.array_equal(to_uint8_rgb(rgba), rgb)  # alpha dropped
    with pytest.raises(ValueError, match='shape'):
        to_uint8_rgb(np.zeros((5, 7, 2), np.uint8))


def test_uint16_windowed_by_percentiles():
    img = np.full((10, 10), 1000, np.uint16)
    img[5:] = 3000
    out = to_uint8_rgb(img)
    assert out.dtype == np.uint8 and out.shape == (10, 10, 3)
    assert (out[:5] == 0).all() and (out[5:] == 255).all()
    ramp = np.arange(1000, dtype=np.uint16).reshape(25, 40)
    low, high = np.percentile(ramp.astype(float), (0.5, 99.5))
    expected = np.rint(np.clip((ramp - low) / (high - low), 0, 1) * 255).astype(np.uint8)
    assert np.array_equal(to_uint8_rgb(ramp)[..., 0], expected)
    assert window_to_uint8(np.full((3, 3), 7, np.uint16)).max() == 0  # flat image: black


def test_float_with_nan_and_explicit_window():
    img = np.linspace(0.0, 1.0, 100).reshape(10, 10)
    img[0, 0] = np.nan
    out = to_uint8_rgb(img)
    assert out.dtype == np.uint8
    assert out[0, 0, 0] == 0  # NaN -> the window's low end
    assert out[9, 9, 0] == 255 and out[..., 0].max() == 255
    assert np.all(np.diff(out[1:, :, 0].ravel().astype(int)) >= 0)  # monotone ramp
    assert to_uint8_rgb(np.full((4, 4), np.nan)).max() == 0
    ct = np.array([[-1000.0, 0.0, 20.0, 80.0, 1000.0]])
    assert to_uint8_rgb(ct, window=(0, 80))[0, :, 0].tolist() == [0, 0, 64, 255, 255]
    # An explicit window also overrides the percentiles for integer images.
    assert to_uint8_rgb(np.array([[0, 50, 100]], np.uint16),
                        window=(0, 200))[0, :, 0].tolist() == [0, 64, 128]
