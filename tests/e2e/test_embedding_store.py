"""The disk embedding cache: bit-identical reuse across runs, configs and tools; checked
entries; several processes; the size bound; where it lives; what its key covers."""
import json
import multiprocessing
import os
import os.path as osp
import subprocess
import time

import pytest
import torch
from conftest import REPO_ROOT, TINY_CONFIG, folder_options, load_tool

from mmseg_medpersam.sam import FrameGeometry, SAMBackend
from mmseg_medpersam.sam.embedding_store import (
    EmbeddingStore,
    cache_root,
    max_bytes_from_env,
    pack_entry,
)

PERSAM_F_TINY = osp.join(REPO_ROOT, 'configs', 'persam-f', 'persam-f_sam-tiny_mni152-wm.py')


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """A fresh, empty ``MEDPERSAM_CACHE_DIR`` for one test."""
    folder = tmp_path / 'cache'
    monkeypatch.setenv('MEDPERSAM_CACHE_DIR', str(folder))
    return folder


@pytest.fixture
def encoder_calls(monkeypatch):
    """How many images went through any backend's image encoder (a list of batch sizes)."""
    calls = []
    original = SAMBackend._run_encoder

    def counting(self, batch):
        calls.append(int(batch.shape[0]))
        return original(self, batch)

    monkeypatch.setattr(SAMBackend, '_run_encoder', counting)
    return calls


def entries(cache_dir):
    folder = osp.join(str(cache_dir), 'embeddings')
    return sorted(f for f in os.listdir(folder) if f.endswith('.emb')) if osp.isdir(folder) else []


def image(seed=0, h=48, w=64):
    return torch.rand(3, h, w, generator=torch.Generator().manual_seed(seed)) * 255


# --------------------------------------------------------------------------- reuse
def test_a_later_run_reads_the_embedding_bit_for_bit(cache_dir, encoder_calls):
    first = SAMBackend(arch='tiny').encode(image(), key='a')
    assert len(entries(cache_dir)) == 1 and sum(encoder_calls) == 1
    later = SAMBackend(arch='tiny')  # another run: an empty memory cache
    again = later.encode(image(), key='other key')  # the disk key is the pixels, not this key
    assert sum(encoder_calls) == 1 and later.num_encoded == 0 and later.num_loaded == 1
    assert torch.equal(again.features, first.features) and again.geometry == first.geometry
    fresh = SAMBackend(arch='tiny', disk_cache=False).encode(image())
    assert torch.equal(fresh.features, first.features)
    # Batched encoding reads what it has and encodes (and stores) the rest.
    many = later.encode_many([image(1), image(), image(2)], batch_size=2)
    assert later.num_loaded == 2 and later.num_encoded == 2 and encoder_calls[2:] == [2]
    assert torch.equal(many[1].features, first.features)
    assert len(entries(cache_dir)) == 3


@pytest.mark.parametrize('damage', ['flip a byte', 'truncate', 'empty', 'other key'])
def test_a_damaged_entry_is_recomputed_and_replaced(cache_dir, encoder_calls, damage):
    expected = SAMBackend(arch='tiny').encode(image()).features
    (name, ) = entries(cache_dir)
    path = osp.join(str(cache_dir), 'embeddings', name)
    with open(path, 'rb') as f:
        data = bytearray(f.read())
    if damage == 'flip a byte':
        data[len(data) // 2] ^= 0x01
    elif damage == 'truncate':
        data = data[:len(data) - 1000]
    elif damage == 'empty':
        data = bytearray()
    else:  # a whole, valid entry of another key put under this name
        data = bytearray(pack_entry('0' * 64, {}, torch.ones(1, 256, 64, 64)))
    with open(path, 'wb') as f:
        f.write(data)
    later = SAMBackend(arch='tiny')
    emb = later.encode(image())
    assert later.num_encoded == 1 and later.num_loaded == 0 and len(encoder_calls) == 2
    assert torch.equal(emb.features, expected)
    third = SAMBackend(arch='tiny')  # the entry was replaced by a good one
    assert torch.equal(third.encode(image()).features, expected) and third.num_loaded == 1


def _write_many(folder: str, key: str, tensor: torch.Tensor, times: int) -> None:
    store = EmbeddingStore(folder)
    for _ in range(times):
        assert store.save(key, {'test': 1}, tensor)


def test_two_processes_write_the_same_key(tmp_path):
    if 'fork' not in multiprocessing.get_all_start_methods():
        pytest.skip('needs the fork start method')
    folder, key = str(tmp_path / 'store'), 'ab' * 32
    tensor = torch.randn(1, 256, 16, 16)
    ctx = multiprocessing.get_context('fork')
    writers = [ctx.Process(target=_write_many, args=(folder, key, tensor, 15)) for _ in range(2)]
    for w in writers:
        w.start()
    reader = EmbeddingStore(folder)
    while any(w.is_alive() for w in writers):  # every read is the whole entry or nothing
        got = reader.load(key)
        if got is not None:
            assert torch.equal(got, tensor)
    for w in writers:
        w.join()
        assert w.exitcode == 0
    assert torch.equal(reader.load(key), tensor)
    assert os.listdir(folder) == [key + '.emb']  # no temporary file left behind


# --------------------------------------------------------------------------- size bound
def test_the_size_bound_drops_the_least_recently_used(tmp_path, monkeypatch):
    tensor = torch.zeros(1, 256, 16, 16)
    one = len(pack_entry('a' * 64, {}, tensor))
    store = EmbeddingStore(str(tmp_path / 's'), max_bytes=int(2.5 * one))
    a, b, c = 'a' * 64, 'b' * 64, 'c' * 64
    store.save(a, {}, tensor)
    store.save(b, {}, tensor)
    now = time.time()
    os.utime(store.path(a), (now - 100, now - 100))  # a written first ...
    os.utime(store.path(b), (now - 50, now - 50))
    assert store.load(a) is not None  # ... but read since: b is the least recently used
    store.save(c, {}, tensor)
    assert sorted(osp.basename(p)[0] for _, _, p in store.entries()) == ['a', 'c']
    assert store.size() <= store.max_bytes
    nothing = EmbeddingStore(str(tmp_path / 'zero'), max_bytes=0)
    assert not nothing.save(a, {}, tensor) and not osp.exists(nothing.folder)
    monkeypatch.setenv('MEDPERSAM_CACHE_MAX_GIB', '0.5')
    assert max_bytes_from_env() == 1 << 29
    monkeypatch.delenv('MEDPERSAM_CACHE_MAX_GIB')
    assert max_bytes_from_env() == 4 << 30  # the default
    for bad in ('-1', 'lots', 'nan'):
        monkeypatch.setenv('MEDPERSAM_CACHE_MAX_GIB', bad)
        with pytest.raises(ValueError, match='MEDPERSAM_CACHE_MAX_GIB'):
            SAMBackend(arch='tiny')


# --------------------------------------------------------------------------- location, off
def test_location_from_the_environment(cache_dir, tmp_path, monkeypatch):
    SAMBackend(arch='tiny').encode(image())
    assert len(entries(cache_dir)) == 1
    monkeypatch.delenv('MEDPERSAM_CACHE_DIR')
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
    assert cache_root() == str(tmp_path / 'xdg' / 'mmseg-medpersam')
    monkeypatch.delenv('XDG_CACHE_HOME')
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    assert cache_root() == str(tmp_path / 'home' / '.cache' / 'mmseg-medpersam')
    assert SAMBackend(arch='tiny').embedding_store.folder == osp.join(
        str(tmp_path / 'home'), '.cache', 'mmseg-medpersam', 'embeddings')


def test_switched_off_writes_nothing(cache_dir, encoder_calls):
    sam = SAMBackend(arch='tiny', disk_cache=False)
    sam.encode(image())
    sam.clear_cache()
    sam.encode(image())
    assert sam.embedding_store is None and len(encoder_calls) == 2
    later = SAMBackend(arch='tiny')
    later.embedding_store = None  # what infer.py --no-cache does on a built model
    later.encode(image())
    assert not cache_dir.exists()
    with pytest.raises(ValueError, match='disk_cache'):
        SAMBackend(arch='tiny', disk_cache='no')


def test_read_only_folder_costs_only_the_reuse(tmp_path, monkeypatch):
    blocker = tmp_path / 'a_file'
    blocker.write_text('not a folder')
    monkeypatch.setenv('MEDPERSAM_CACHE_DIR', str(blocker))
    sam = SAMBackend(arch='tiny')
    first = sam.encode(image())
    sam.clear_cache()
    assert torch.equal(sam.encode(image()).features, first.features)
    assert not sam.embedding_store.writable and sam.num_encoded == 2


# --------------------------------------------------------------------------- the key
def test_the_key_covers_weights_arch_settings_pixels_and_geometry(tmp_path, cache_dir,
                                                                  litemedsam):
    base = SAMBackend(arch='tiny', seed=0)
    x, geo = base.preprocess(image())

    def key(sam, x=x, geo=geo):
        return sam.embedding_key(x, geo)[0]

    k0 = key(base)
    assert key(SAMBackend(arch='tiny', seed=0)) == k0  # stable across runs
    others = {
        'random weights': key(SAMBackend(arch='tiny', seed=1)),
        'arch': key(litemedsam),
        'dtype': key(SAMBackend(arch='tiny', encoder_dtype='bfloat16')),
        'attention': key(SAMBackend(arch='tiny', encoder_attention='sdpa')),
        'compile': key(SAMBackend(arch='tiny', encoder_compile=dict(backend='eager'))),
        'pixels': key(base, x=x + (torch.arange(x.numel()).reshape(x.shape) == 7)),
        'geometry': key(base, geo=FrameGeometry((49, 64), geo.frame_size)),
    }
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)
        others['threads'] = key(base)
    finally:
        torch.set_num_threads(threads)
    assert k0 not in others.values() and len(set(others.values())) == len(others), others
    # A checkpoint file is known by its sha256 (remembered per file), not by its path.
    state = base.model.state_dict()
    first, second = tmp_path / 'a.pth', tmp_path / 'b.pth'
    torch.save(state, first)
    torch.save({**state, 'image_encoder.neck.0.weight': state['image_encoder.neck.0.weight'] + 1},
               second)
    from_file = SAMBackend(arch='tiny', checkpoint=str(first))
    assert from_file.encoder_identity()['weights'].startswith('sha256:')
    assert key(from_file) != key(SAMBackend(arch='tiny', checkpoint=str(second)))
    assert os.listdir(from_file.embedding_store.checkpoint_digest_dir)
    assert litemedsam.encoder_identity()['weights'] == (
        'sha256:79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76')
    # Weights loaded after the build (mmengine's load_checkpoint) change the key.
    before = key(from_file)
    from_file.load_weights(torch.load(second), 'b.pth')
    assert key(from_file) not in (before, k0)


# --------------------------------------------------------------------------- runs and tools
def _per_image_dice(path):
    with open(path) as f:
        return [(e['img'], e['dice']) for e in json.load(f)['per_image']]


def test_cold_warm_and_no_cache_runs_give_the_same_dice(run_tool, folder_task, cache_dir,
                                                         encoder_calls, tmp_path, monkeypatch):
    options = folder_options(folder_task)
    code, cold = run_tool(cfg_options=options)
    assert code == 0 and sum(encoder_calls) == 3  # the reference and two targets
    assert len(entries(cache_dir)) == 3
    code, warm = run_tool(cfg_options=options)
    assert code == 0 and sum(encoder_calls) == 3  # nothing encoded
    # A head option changes the method, not the embeddings: nothing encoded either.
    code, other_head = run_tool(cfg_options={**options, 'model.head.num_refinements': 1})
    assert code == 0 and sum(encoder_calls) == 3
    off_dir = tmp_path / 'off_cache'
    monkeypatch.setenv('MEDPERSAM_CACHE_DIR', str(off_dir))
    code, off = run_tool(cfg_options=options, extra=['--no-cache'])
    assert code == 0 and sum(encoder_calls) == 6 and not off_dir.exists()
    assert _per_image_dice(cold) == _per_image_dice(warm) == _per_image_dice(off)
    assert len(_per_image_dice(other_head)) == 2


def test_compare_encodes_each_image_once(folder_task, cache_dir, encoder_calls, test_tool,
                                         tmp_path, monkeypatch, capsys):
    """Two methods on one task: the second config's run (its own process normally; in this
    process here, to count) reads every embedding the first one stored."""
    compare = load_tool('compare')
    monkeypatch.setenv('LOCAL_RANK', '0')
    per_run = []

    real_run = subprocess.run

    def run_in_process(cmd, **kwargs):
        if not (isinstance(cmd, list) and cmd[1:2] and cmd[1].endswith('test.py')):
            return real_run(cmd, **kwargs)  # e.g. mmengine asking git or nvcc
        before = sum(encoder_calls)
        code = test_tool.main(cmd[2:])
        per_run.append(sum(encoder_calls) - before)
        return subprocess.CompletedProcess(cmd, code, '', '')

    from mmseg_medpersam.apis import runs
    monkeypatch.setattr(runs.subprocess, 'run', run_in_process)
    options = [f'{k}={v}' for k, v in folder_options(folder_task).items()]
    code = compare.main([TINY_CONFIG, PERSAM_F_TINY, '--isolate', '--work-dir',
                         str(tmp_path / 'work'), '--cfg-options'] + options)
    assert code == 0 and per_run == [3, 0]
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith('| PerSAM')]
    assert [r.split(' | ')[0] for r in rows] == ['| PerSAM', '| PerSAM-F']
    # --no-cache is passed on to every run.
    per_run.clear()
    code = compare.main([TINY_CONFIG, '--no-cache', '--isolate', '--work-dir',
                         str(tmp_path / 'work2'), '--cfg-options'] + options)
    assert code == 0 and per_run == [3]
    # The default: the runs one after the other in this process, each image encoded once.
    before = sum(encoder_calls)
    code = compare.main([TINY_CONFIG, PERSAM_F_TINY, '--work-dir', str(tmp_path / 'work3'),
                         '--no-cache', '--cfg-options'] + options)
    assert code == 0 and sum(encoder_calls) - before == 6  # no cache: each run encodes
    before = sum(encoder_calls)
    code = compare.main([TINY_CONFIG, PERSAM_F_TINY, '--work-dir', str(tmp_path / 'work4'),
                         '--cfg-options'] + options)
    assert code == 0 and sum(encoder_calls) - before == 0  # cached by the first runs
