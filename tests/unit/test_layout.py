"""The package's layers point one way, and the engine knows no method."""
import os
import os.path as osp
import re

from conftest import REPO_ROOT

PACKAGE = osp.join(REPO_ROOT, 'mmseg_medpersam')
#: Each folder may import only folders before it (README, "Package layout").
LAYERS = ('structures', 'utils', 'datasets', 'sam', 'prompts', 'methods', 'segmentors',
          'evaluation', 'visualization', 'engine', 'apis')
RELATIVE_IMPORT = re.compile(r'^\s*from (\.+)([\w.]*) import', re.M)


def _imports():
    """(importing folder, imported folder, file) for every relative import across folders."""
    for folder in LAYERS:
        for dirpath, _, files in os.walk(osp.join(PACKAGE, folder)):
            for name in files:
                if not name.endswith('.py'):
                    continue
                path = osp.join(dirpath, name)
                package = osp.relpath(dirpath, REPO_ROOT).split(os.sep)
                for match in RELATIVE_IMPORT.finditer(open(path).read()):
                    dots, module = len(match.group(1)), match.group(2)
                    base = package[:len(package) - dots + 1]
                    target = base + (module.split('.') if module else [])
                    if len(target) > 1 and target[1] != folder:
                        yield folder, target[1], path


def test_layers_point_one_way():
    upward = [(f'{path}: {folder} imports {target}') for folder, target, path in _imports()
              if target in LAYERS and LAYERS.index(target) > LAYERS.index(folder)]
    assert not upward, upward


def test_one_owner_of_the_transductive_procedure():
    """No leftover second procedure, and the engine reads no method's options."""
    for dirpath, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith('.py'):
                assert 'fit_transductive' not in open(osp.join(dirpath, name)).read(), name
    for name in os.listdir(osp.join(PACKAGE, 'engine')):
        if name.endswith('.py'):
            source = open(osp.join(PACKAGE, 'engine', name)).read()
            assert not re.search(r'getattr\([^)]*head', source), name
            assert 'retrain_rounds' not in source and 'sam_used' not in source, name


def test_module_paths_cited_in_configs_and_docs_exist():
    """A config comment or a doc that names a module file names one that exists."""
    cited = re.compile(r'mmseg_medpersam/[\w/]+\.py')
    sources = [osp.join(REPO_ROOT, 'README.md')]
    for top in ('configs', 'docs'):
        for dirpath, _, files in os.walk(osp.join(REPO_ROOT, top)):
            sources += [osp.join(dirpath, f) for f in files if f.endswith(('.py', '.md'))]
    stale = sorted({(osp.relpath(s, REPO_ROOT), p) for s in sources
                    for p in cited.findall(open(s).read())
                    if not osp.isfile(osp.join(REPO_ROOT, p))})
    assert not stale, stale
