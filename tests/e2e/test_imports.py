"""Importing the plugin in a fresh process leaves the user's settings alone."""
import os.path as osp
import subprocess
import sys

from conftest import REPO_ROOT


def test_importing_the_plugin_leaves_the_users_matplotlib_backend_alone():
    import subprocess
    import sys
    code = ('import matplotlib; matplotlib.use("svg"); import mmseg_medpersam; '
            'import mmseg_medpersam.visualization.panels; '
            'assert matplotlib.get_backend() == "svg", matplotlib.get_backend()')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-500:]


def test_backend_imports_no_method():
    """``mmseg_medpersam.sam`` is a leaf: importing it loads no prompt, head, method module."""
    code = (
        'import sys, types\n'
        f'pkg = types.ModuleType("mmseg_medpersam"); pkg.__path__ = '
        f'[{osp.join(REPO_ROOT, "mmseg_medpersam")!r}]\n'
        'sys.modules["mmseg_medpersam"] = pkg\n'
        'import mmseg_medpersam.sam\n'
        'print(" ".join(sorted(m for m in sys.modules if m.startswith("mmseg_medpersam."))))\n')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         cwd=REPO_ROOT, check=True).stdout.split()
    assert 'mmseg_medpersam.sam.backend' in out
    layers = {name.split('.')[1] for name in out}
    assert layers <= {'sam', 'utils', 'structures'}, sorted(layers)
