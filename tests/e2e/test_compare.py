"""tools/compare.py tables configs it runs and metrics JSONs it reads."""
import glob
import json

from conftest import TINY_CONFIG, folder_options, load_tool, make_folder_task


def test_compare_runs_a_config_and_reads_a_json(tmp_path, capsys):
    root = make_folder_task(str(tmp_path / 'task'))
    old = tmp_path / 'old.json'
    old.write_text(json.dumps({
        'mDice': 71.5, 'mDice_std': 4.25, 'mIoU': 56.0,
        'per_image': [{'img': 'a.png', 'dice': 0.7, 'iou': 0.55}] * 4,
        'run': {'method': 'Earlier run', 'config': 'x.py', 'device': 'NVIDIA H100',
                'wall_seconds': 8.0}}))
    options = [f'{k}={v}' for k, v in folder_options(root).items()]
    code = load_tool('compare').main([TINY_CONFIG, str(old), '--work-dir',
                                      str(tmp_path / 'work'), '--out', str(tmp_path / 't.md'),
                                      '--cfg-options'] + options)
    assert code == 0
    table = capsys.readouterr().out.strip().splitlines()
    assert table[0].startswith('| method | config | mDice +- std | mIoU |')
    rows = table[2:]
    assert len(rows) == 2
    assert rows[0].startswith('| PerSAM | `persam_sam-tiny_mni152-wm.py` |')
    assert 'CPU' in rows[0]
    assert rows[1] == ('| Earlier run | `x.py` | 71.50 +- 4.25 | 56.00 | 2.00 | NVIDIA H100 |')
    assert (tmp_path / 't.md').read_text().strip().splitlines() == table


def test_compare_reports_a_failing_config(tmp_path, capsys):
    bad = tmp_path / 'bad.py'
    bad.write_text("_base_ = ['does_not_exist.py']\n")
    assert load_tool('compare').main([str(bad), '--work-dir', str(tmp_path / 'w')]) == 1
    assert 'bad failed' in capsys.readouterr().err


def test_compare_draws_a_grid_and_a_dice_plot(tmp_path, capsys):
    """The issue's command, on a small folder task: both figures are written."""
    import cv2
    from conftest import REPO_ROOT
    root = make_folder_task(str(tmp_path / 'task'), stems=('ref', 't1', 't2', 't3'))
    options = [f'{k}={v}' for k, v in folder_options(root).items()]
    warp_only = tmp_path / 'warp-only_fast.py'  # the warp-only config, fitted briefly
    warp_only.write_text(f"_base_ = ['{REPO_ROOT}/configs/medpersam/warp-only_mni152-wm.py']\n"
                         'model = dict(head=dict(warping=dict(\n'
                         '    schedule=dict(iters=30), network=dict(work_long_side=64))))\n')
    grid, plot = tmp_path / 'grid.png', tmp_path / 'dice.png'
    code = load_tool('compare').main([
        TINY_CONFIG, str(warp_only), '--work-dir', str(tmp_path / 'work'), '--figure', str(grid),
        '--plot', str(plot), '--targets', 'worst', '--num-targets', '2',
        '--cfg-options'] + options)
    assert code == 0
    image = cv2.imread(str(grid))
    assert image is not None and image.shape[1] > 2 * 80  # two methods, upscaled cells
    assert cv2.imread(str(plot)) is not None
    rows = capsys.readouterr().out.strip().splitlines()[2:]
    assert [r.split(' | ')[0] for r in rows] == ['| PerSAM', '| Warp only']
    reports = {json.load(open(p))['run']['method']: json.load(open(p))['run']
               for p in glob.glob(str(tmp_path / 'work' / '**' / 'metrics.json'), recursive=True)}
    assert reports['Warp only']['reference_row'] and not reports['PerSAM']['reference_row']


def test_named_targets_must_exist(tmp_path):
    compare = load_tool('compare')
    reports = [{'per_image': [{'name': 't1', 'dice': 0.5}, {'name': 't2', 'dice': 0.9}]}]
    assert compare.choose_targets(reports, 'worst', 1) == ['t1']
    assert compare.choose_targets(reports, 'best', 1) == ['t2']
    assert compare.choose_targets(reports, 't2,t1', 1) == ['t2', 't1']
    # A run the model called a reference (warp only, the oracle) does not rank the targets,
    # whatever its name; the rest do.
    warp = {'run': {'method': 'Med-PerSAM', 'reference_row': True},
            'per_image': [{'name': 't1', 'dice': 1.0}, {'name': 't2', 'dice': 0.0}]}
    assert compare.choose_targets(reports + [warp], 'worst', 1) == ['t1']
    import pytest
    with pytest.raises(SystemExit, match='t9 not among the targets'):
        compare.choose_targets(reports, 't9', 1)


def test_compare_refuses_a_damaged_or_foreign_json_in_one_line(tmp_path, capsys):
    from conftest import load_tool
    damaged = tmp_path / 'damaged.json'
    damaged.write_text('{"mDice": 50, "per_ima')
    foreign = tmp_path / 'foreign.json'
    foreign.write_text('{"name": "not a report"}')
    for path, words in ((damaged, 'not a readable report'), (foreign, 'not a report')):
        code = load_tool('compare').main([str(path)])
        err = capsys.readouterr().err
        assert code == 3 and words in err and str(path) in err
        assert 'Traceback' not in err and len(err.strip().splitlines()) == 1
