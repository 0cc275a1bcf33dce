"""``compat``: mmseg imports under mmcv-lite; a no-op with a (simulated) compiled mmcv."""
import importlib.util
import os
import subprocess
import sys
import textwrap
import types

import pytest
import torch
import torch.nn.functional as F
from conftest import REPO_ROOT

from mmseg_medpersam import compat

MMCV_LITE = importlib.util.find_spec('mmcv._ext') is None
lite_only = pytest.mark.skipif(not MMCV_LITE, reason='a compiled mmcv is installed')


def _run_python(code: str, tmp_path) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (state-mutating checks stay out of this process)."""
    script = tmp_path / 'check.py'
    script.write_text(textwrap.dedent(code))
    proc = subprocess.run([sys.executable, str(script)], cwd=str(tmp_path), capture_output=True,
                          text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=REPO_ROOT))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@lite_only
def test_stand_in_ops_in_use_under_mmcv_lite():
    import mmcv
    ops = sys.modules['mmcv.ops']
    assert compat.USING_STAND_IN_OPS is True
    assert getattr(ops, compat.STAND_IN_ATTR, False) is True
    assert mmcv.ops is ops
    assert compat.has_compiled_mmcv_ops() is False
    assert compat.ensure_mmcv_ops() is True  # idempotent: still the same stand-in
    assert sys.modules['mmcv.ops'] is ops


def test_mmseg_models_and_datasets_import():
    import mmseg.datasets
    import mmseg.models
    from mmseg.models.segmentors import BaseSegmentor  # noqa: F401
    assert hasattr(mmseg.models, 'EncoderDecoder')
    assert hasattr(mmseg.datasets, 'BaseSegDataset')


def test_point_sample_matches_grid_sample():
    from mmcv.ops import point_sample
    torch.manual_seed(0)
    feats = torch.randn(2, 5, 9, 13)
    points = torch.rand(2, 7, 2)  # normalised [0, 1] xy
    out = point_sample(feats, points, align_corners=False)
    expected = F.grid_sample(feats, (2 * points - 1).unsqueeze(2),
                             align_corners=False).squeeze(3)
    assert out.shape == (2, 5, 7)
    torch.testing.assert_close(out, expected)
    # A point at a pixel centre reads that pixel.
    px = torch.tensor([[(3 + 0.5) / 13, (4 + 0.5) / 9]]).expand(2, 1, 2)
    torch.testing.assert_close(point_sample(feats, px)[..., 0], feats[:, :, 4, 3])


@lite_only
def test_other_ops_raise_clear_error():
    import mmcv.ops
    from mmcv.ops import nms  # importing a name works; using it fails loudly
    with pytest.raises(RuntimeError, match=r'mmcv\.ops\.nms needs the compiled mmcv'):
        nms(torch.zeros(1, 4), torch.zeros(1), 0.5)
    with pytest.raises(RuntimeError, match='mmcv-lite'):
        mmcv.ops.roi_align(torch.zeros(1))
    with pytest.raises(AttributeError):
        mmcv.ops.__wrapped__  # dunder look-ups are not turned into stubs


def test_fake_compiled_ops_already_imported_is_left_alone(monkeypatch):
    import mmcv
    fake = types.ModuleType('mmcv.ops')
    fake.nms = lambda *a: 'real nms'
    monkeypatch.setitem(sys.modules, 'mmcv.ops', fake)
    monkeypatch.setattr(mmcv, 'ops', fake)
    assert compat.has_compiled_mmcv_ops() is True
    assert compat.ensure_mmcv_ops() is False
    assert sys.modules['mmcv.ops'] is fake
    assert mmcv.ops is fake
    assert not hasattr(fake, compat.STAND_IN_ATTR)
    assert fake.nms() == 'real nms'


def test_fresh_process_with_fake_compiled_mmcv_is_noop(tmp_path):
    """A compiled ``mmcv.ops`` importable from disk: compat neither replaces nor wraps it."""
    fake_pkg = tmp_path / 'fake_mmcv' / 'ops'
    fake_pkg.mkdir(parents=True)
    (fake_pkg / '__init__.py').write_text(textwrap.dedent('''
        import os.path as osp
        import mmcv
        COMPILED = True
        # like the compiled package: its own folder plus mmcv's python ops modules
        __path__.append(osp.join(osp.dirname(mmcv.__file__), 'ops'))
        from .point_sample import point_sample
        def nms(*a):
            return 'real'
        def __getattr__(name):  # every other compiled op mmseg imports by name
            if name.startswith('__'):
                raise AttributeError(name)
            return type(name, (), {})
    '''))
    proc = _run_python(f"""
        import sys
        import mmcv
        mmcv.__path__.insert(0, {str(tmp_path / 'fake_mmcv')!r})  # 'mmcv.ops' resolves there
        from mmseg_medpersam import compat
        ops = sys.modules['mmcv.ops']
        assert compat.USING_STAND_IN_OPS is False, 'stand-in installed over compiled ops'
        assert getattr(ops, 'COMPILED', False), ops
        assert not hasattr(ops, compat.STAND_IN_ATTR)
        assert compat.ensure_mmcv_ops() is False
        assert sys.modules['mmcv.ops'] is ops and ops.nms() == 'real'
        print('OK')
    """, tmp_path)
    assert 'OK' in proc.stdout


def test_fresh_process_installs_stand_in_before_mmseg(tmp_path):
    """In a clean interpreter plain mmcv-lite cannot import ``mmcv.ops`` (the premise); importing
    the plugin afterwards still makes ``mmseg.models`` importable."""
    proc = _run_python("""
        import sys
        try:
            import mmcv.ops  # noqa: F401
        except (ImportError, OSError) as e:
            print('PLAIN FAILS', type(e).__name__)
        import mmseg_medpersam
        from mmseg_medpersam import compat
        import mmseg.models, mmseg.datasets
        ops = sys.modules['mmcv.ops']
        assert compat.USING_STAND_IN_OPS is True
        assert getattr(ops, compat.STAND_IN_ATTR)
        from mmcv.ops import point_sample  # noqa: F401
        print('OK')
    """, tmp_path)
    if 'PLAIN FAILS' not in proc.stdout:
        pytest.skip('a compiled mmcv is installed: the stand-in is not needed here')
    assert 'OK' in proc.stdout
