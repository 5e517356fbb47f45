"""NW-UCLA: the `nw_ucla` builder on fifteen real clips (tests/data/nw_ucla) and bad
files, the evaluation input against a step-by-step reference (nw_ucla_reference), and
one person (M = 1) through training, export and streaming.

The clips are built once, through `python -m data_prep.build`.
"""

import dataclasses
import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

import nw_ucla_reference as reference
from configs import ucla
from stbln_jax import export
from stbln_jax import input_pipeline
from stbln_jax import serving
from stbln_jax import stream
from stbln_jax import train
from stbln_jax.data import nw_ucla

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
CLIPS = REPO_ROOT / 'tests' / 'data' / 'nw_ucla'
NAMES = sorted(p.stem for p in CLIPS.glob('*.json'))
TEST_NAMES = [n for n in NAMES if n.endswith('_v03')]
TRAIN_NAMES = [n for n in NAMES if n not in TEST_NAMES]
SINGLE_FRAME = ('a02_s09_e04_v02', 'a02_s09_e04_v03')


def _skeletons(name):
  return json.loads((CLIPS / f'{name}.json').read_text())['skeletons']


def _write_bad_files(bad: pathlib.Path) -> dict[str, str]:
  """Files that give no record, under clip names no good file has: path -> reason."""
  bad.mkdir()
  real = json.loads((CLIPS / 'a01_s01_e00_v01.json').read_text())
  contents = {
      'a01_s01_e01_v01': ('{"file_name": "a01_s01_e01_v01", "skeletons": [[',
                          'not valid JSON'),
      'a01_s01_e02_v01': (json.dumps(dict(real, skeletons=[f[:19] for f in
                                                           real['skeletons']])),
                          'shape (44, 19, 3), expected (T, 20, 3)'),
      'a01_s01_e03_v01': (json.dumps(dict(real, skeletons=[[[0.1, float('nan'), 2.0]] * 20])),
                          'NaN or infinite'),
      'a01_s01_e04_v01': (json.dumps(dict(real, skeletons=[])), 'no frames'),
      'a01_s01_e05_v01': (json.dumps(dict(real, label=3)),
                          'label 3, but action 1 is label 1'),
      'a07_s01_e00_v01': (json.dumps(real), 'action 7 is not one of the benchmark'),
      'notes': ('{}', 'bad clip name'),
  }
  reasons = {}
  for name, (text, reason) in contents.items():
    (bad / f'{name}.json').write_text(text)
    reasons[str(bad / f'{name}.json')] = reason
  return reasons


@pytest.fixture(scope='module')
def built(tmp_path_factory):
  """(data_dir, stdout of the build command, {bad path: reason})."""
  root = tmp_path_factory.mktemp('nw_ucla_raw')
  shutil.copytree(CLIPS, root / 'all_sqe', ignore=shutil.ignore_patterns('*.md'))
  bad = _write_bad_files(root / 'bad')
  data_dir = tmp_path_factory.mktemp('nw_ucla_tfds')
  result = subprocess.run(
      [sys.executable, '-m', 'data_prep.build', 'nw_ucla', f'--manual_dir={root}',
       f'--data_dir={data_dir}', '--quiet'],
      cwd=REPO_ROOT, env={**os.environ, 'PYTHONPATH': str(REPO_ROOT)},
      capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  return str(data_dir), result.stdout, bad


def ucla_config(data_dir, arg='cpu'):
  config = ucla.get_config(arg)
  config.data_dir = data_dir
  return config


# ---- The builder ------------------------------------------------------------------

def test_the_build_reports_its_splits_and_every_bad_file_by_name(built):
  _, out, bad = built
  assert 'nw_ucla/xview ->' in out
  assert f'examples: test {len(TEST_NAMES)}, train {len(TRAIN_NAMES)}' in out
  assert f'{len(NAMES) + len(bad)} .json files found' in out
  assert f'{len(bad)} skipped' in out
  for path, reason in bad.items():
    (line,) = [line for line in out.splitlines() if line.strip().startswith(path)]
    assert reason in line, line


def test_records_hold_each_clip_as_recorded_with_one_person(built):
  data_dir, _, _ = built
  seen = []
  for split, names in (('train', TRAIN_NAMES), ('test', TEST_NAMES)):
    source = tfds.data_source('nw_ucla', split=split, data_dir=data_dir, download=False)
    records = {r['name'].decode(): r for r in (source[i] for i in range(len(source)))}
    assert sorted(records) == names
    for name, record in records.items():
      data = json.loads((CLIPS / f'{name}.json').read_text())
      skeleton = np.asarray(data['skeletons'], np.float32)[:, None]
      np.testing.assert_array_equal(record['skeleton'], skeleton)
      action, subject, repetition, view = (int(part[1:]) for part in name.split('_'))
      assert record['label'] == data['label'] - 1
      assert nw_ucla.ACTION_NAMES[record['label']] == nw_ucla.ACTIONS[action]
      assert (record['subject'], record['repetition'], record['view']) == (
          subject, repetition, view)
      assert record['num_frames'] == len(skeleton)
      assert (view == 3) == (split == 'test')
      seen.append(name)
  assert set(SINGLE_FRAME) <= set(seen)
  info = tfds.builder('nw_ucla', data_dir=data_dir).info
  assert dict(info.metadata) == {'layout': 'kinect20', 'channels': 'xyz'}
  assert info.features['label'].names[6] == 'donning'


def test_the_dataset_handle_says_one_person_of_twenty_kinect_joints(built):
  dataset = input_pipeline.open_dataset(ucla_config(built[0]))
  assert (dataset.sample_shape, dataset.layout.name, dataset.channels) == (
      (1, 20, 3), 'kinect20', 'xyz')
  assert dataset.class_names == nw_ucla.ACTION_NAMES


def test_clip_names_and_the_cross_view_split():
  clip = nw_ucla.parse_clip_name('a12_s03_e01_v03.json')
  assert (clip.action, clip.subject, clip.repetition, clip.view, clip.label) == (
      12, 3, 1, 3, 9)
  paths = [pathlib.Path(f'/raw/{i}/{n}.json') for i, n in enumerate(
      ('a01_s01_e00_v01', 'a01_s01_e00_v02', 'a01_s01_e00_v03', 'a10_s01_e00_v01',
       'a01_s01_e00_v04', 'a01_s01_e00_v01'))]
  splits, skipped = nw_ucla.select_files(paths, nw_ucla.get_config('xview'))
  assert splits == {'train': paths[:2], 'test': [paths[2]]}
  assert [s.path for s in skipped] == [str(p) for p in paths[3:]]
  assert 'duplicate' in skipped[2].reason
  assert nw_ucla.get_config('') is nw_ucla.get_config('xview')


# ---- CTR-GCN's evaluation input ---------------------------------------------------

@pytest.mark.parametrize('stream_name', ['joint', 'bone'])
def test_eval_input_of_every_view_3_clip_is_the_reference(built, stream_name):
  config = ucla_config(built[0], f'cpu,{stream_name}')
  rows = {}
  for batch in input_pipeline.eval_batches(config, process_index=0, process_count=1):
    assert batch['skeleton'].shape[1:] == (52, 1, 20, 3)
    names = input_pipeline.decode_names(batch['name'])
    rows.update((n, x) for n, x, m in zip(names, batch['skeleton'], batch['mask']) if m)
  assert sorted(rows) == TEST_NAMES
  for name, x in rows.items():
    np.testing.assert_allclose(x[:, 0], reference.eval_input(_skeletons(name), stream_name),
                               atol=1e-5, err_msg=name)


def test_training_inputs_are_rotated_then_normalised_and_repeat_lengthens_epochs(built):
  config = ucla_config(built[0])
  transform = input_pipeline.Transform.from_config(config, layout='kinect20',
                                                   channels='xyz')
  record = np.asarray(_skeletons('a01_s01_e00_v01'), np.float32)[:, None]
  x = transform.train(record, np.random.default_rng(0))
  assert x.shape == (52, 1, 20, 3)
  # Min-max after the rotation: the sampled frames lie within [-1, 1], but are not
  # those of evaluation.
  assert np.abs(x).max() <= 1 + 1e-6
  assert not np.allclose(x, transform.eval(record), atol=0.05)
  config.batch_size = 4
  dataset = input_pipeline.open_dataset(config)
  for repeat, steps in ((1, 2), (3, 6)):
    config.repeat = repeat
    batches = list(input_pipeline.train_batches(config, epoch=0, process_index=0,
                                                process_count=1, dataset=dataset))
    assert len(batches) == input_pipeline.steps_per_epoch(config) == steps
    assert batches[0]['skeleton'].shape == (4, 52, 1, 20, 3)


# ---- One person end to end ----------------------------------------------------------

@pytest.fixture(scope='module')
def trained(built, tmp_path_factory):
  """A tiny lean ST-BLN (λ = 2) trained 2 epochs of 2 × the 8 training clips."""
  workdir = tmp_path_factory.mktemp('nw_ucla_run')
  config = ucla_config(built[0], 'cpu,bone')
  config.model.update(channels=(8, 8), strides=(1, 2), num_layers=2, aggregate_at=2)
  config.update(batch_size=4, eval_batch_size=4, repeat=2, num_epochs=2, warmup_epochs=1,
                lr_decay_epochs=(1,), eval_every_epochs=1, log_every_steps=1)
  summary = train.train_and_evaluate(config, str(workdir))
  return config, str(workdir), summary


def test_a_one_person_network_trains_on_the_recipe(trained):
  _, _, summary = trained
  # repeat 2: 16 examples a training epoch, 4 steps of 4.
  assert [e['step'] for e in summary['evaluations']] == [4, 8]
  assert summary['num_examples'] == len(TEST_NAMES)


def test_a_one_person_export_prepares_and_streams_inputs_as_evaluation_does(
    trained, tmp_path):
  config, workdir, _ = trained
  output = str(tmp_path / 'ucla.stablehlo')
  meta = export.export_run(workdir, output)
  assert meta['input_shape'] == ['N', 'T', 1, 20, 3]
  assert (meta['layout'], meta['channels'], meta['stream']) == ('kinect20', 'xyz', 'bone')
  assert (meta['center_joint'], meta['normalization']) == (1, 'minmax')
  model = serving.load(output)
  # `prepare` makes a record (86 frames) the input evaluation makes of it.
  record = np.asarray(_skeletons('a08_s03_e00_v03'), np.float32)[:, None]
  evaluation = input_pipeline.Transform.from_config(config, layout='kinect20',
                                                    channels='xyz')
  np.testing.assert_allclose(model.prepare(record), evaluation.eval(record)[None],
                             atol=1e-6)
  window, hop = 20, 30
  recognizer = stream.Recognizer(model, window=window, hop=hop, top_k=3)
  predictions = [p for p in map(recognizer.push, record) if p]
  assert [p.frame for p in predictions] == [19, 49, 79]
  # Evaluation of a clip of the window's frames, sampled to the window's length.
  transform = dataclasses.replace(evaluation, num_frames=window)
  for p in predictions:
    frames = record[p.frame + 1 - window:p.frame + 1]
    expected = model(transform.motion(transform.eval(frames)[None]))[0]
    np.testing.assert_allclose(p.logits, expected, rtol=1e-5, atol=1e-5)
    assert [name for name, _ in p.actions][0] == nw_ucla.ACTION_NAMES[
        int(np.argmax(expected))]
