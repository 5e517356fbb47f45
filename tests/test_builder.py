"""The `ntu_rgbd` TFDS builder, `build_dataset` and `python -m data_prep.build`.

One raw directory mixes real NTU files, synthetic ones, malformed ones, a file
on the official missing-skeleton list and one of an NTU-120 action; it is built
once as `ntu_rgbd/xview` (in two worker processes) and read back.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from stbln_jax import input_pipeline
from stbln_jax.data import build
from stbln_jax.data import ntu
from stbln_jax.data import ntu_rgbd
from stbln_jax.data import preprocess
from stbln_jax.data import skeleton as skeleton_lib
from stbln_jax.data import synthetic

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
REAL_GOOD = ('S001C001P001R001A011', 'S001C003P008R002A058',
             'S002C001P003R001A003', 'S003C001P015R001A034',
             'S004C002P003R001A017')
REAL_EMPTY = 'S001C002P006R001A008'  # no body in any frame; officially missing
A061 = 'S018C002P045R001A061'  # an NTU-120 action, ignored by NTU-60 configs


def _write_bad_files(bad: pathlib.Path, ntu_samples_dir: pathlib.Path):
  """Malformed files under valid names (setup 9, which nothing else uses)."""
  bad.mkdir()
  real = (ntu_samples_dir / f'{REAL_GOOD[2]}.skeleton').read_bytes()
  lines = real.split(b'\r\n')
  # The empty real file under a name that is on no official list.
  shutil.copy(ntu_samples_dir / f'{REAL_EMPTY}.skeleton',
              bad / 'S009C002P006R001A008.skeleton')
  (bad / 'S009C001P001R001A001.skeleton').write_bytes(real[:len(real) // 2])
  (bad / 'S009C002P001R001A002.skeleton').write_text('not a skeleton\n')
  (bad / 'S009C003P001R001A003.skeleton').write_bytes(b'')
  lines[5] = lines[5].replace(b'.', b'x', 1)  # a letter inside a number
  (bad / 'S009C001P002R001A004.skeleton').write_bytes(b'\r\n'.join(lines))
  (bad / 'readme.skeleton').write_text('not an NTU sample name\n')
  return sorted(str(p) for p in bad.iterdir())


@pytest.fixture(scope='module')
def raw(tmp_path_factory, ntu_samples_dir):
  """{'root', 'good': {name: path}, 'bad': [paths]} of a mixed raw folder."""
  root = tmp_path_factory.mktemp('raw')
  real = root / 'real'
  real.mkdir()
  for name in REAL_GOOD + (REAL_EMPTY,):
    shutil.copy(ntu_samples_dir / f'{name}.skeleton', real)
  shutil.copy(ntu_samples_dir / f'{REAL_GOOD[0]}.skeleton',
              real / f'{A061}.skeleton')
  # Two actions x two subjects x three cameras, 12-20 frames each.
  synthetic_paths = synthetic.write_synthetic_dataset(
      root / 'nested' / 'synthetic', num_classes=2, subjects=(1, 3),
      replications=(1,), frames=(12, 20), seed=3)
  good = {name: real / f'{name}.skeleton' for name in REAL_GOOD}
  good.update((ntu.parse_sample_name(p).name, pathlib.Path(p))
              for p in synthetic_paths)
  assert len(good) == len(REAL_GOOD) + len(synthetic_paths) == 17
  assert not set(good) & ntu.missing_samples(60)
  bad = _write_bad_files(root / 'bad', ntu_samples_dir)
  return {'root': root, 'good': good, 'bad': bad}


@pytest.fixture(scope='module')
def built(raw, tmp_path_factory):
  data_dir = tmp_path_factory.mktemp('tfds')
  summary = build.build_dataset('ntu_rgbd/xview', manual_dir=raw['root'],
                                data_dir=data_dir, num_workers=2, quiet=True)
  return summary, data_dir


def _records(data_dir, dataset, split):
  """Records decoded by TFDS itself (independent of the input pipeline)."""
  source = tfds.data_source(dataset, split=split, data_dir=data_dir,
                            download=False)
  return [source[i] for i in range(len(source))]


def test_missing_lists_ship_with_the_package(ntu_samples_dir):
  assert len(ntu.missing_samples(60)) == 302
  assert len(ntu.missing_samples(120)) == 535
  assert REAL_EMPTY in ntu.missing_samples(60)
  for name in ('NTU_RGBD_samples_with_missing_skeletons.txt',
               'NTU_RGBD120_samples_with_missing_skeletons.txt'):
    shipped = REPO_ROOT / 'stbln_jax' / 'data' / 'resources' / name
    assert shipped.read_bytes() == (ntu_samples_dir / name).read_bytes()


def test_action_names():
  assert len(ntu.ACTION_NAMES) == 120
  assert len(set(ntu.ACTION_NAMES)) == 120
  assert ntu.ACTION_NAMES[0] == 'drink water'
  assert ntu.ACTION_NAMES[59] == 'walking apart from each other'
  assert ntu.ACTION_NAMES[119].startswith('finger-guessing game')


@pytest.mark.parametrize('config, train, test', [
    ('xview', 'S005C002P001R001A001', 'S005C001P002R001A001'),
    ('xview', 'S005C003P001R001A001', 'S005C001P001R001A001'),
    ('xsub', 'S001C001P038R001A001', 'S001C001P003R001A001'),
    ('xsub', 'S001C001P001R001A001', 'S001C001P045R001A001'),
    ('xsub120', 'S020C001P045R001A061', 'S020C001P044R001A061'),
    ('xsub120', 'S001C001P038R001A001', 'S020C001P106R001A100'),
    ('xset120', 'S002C001P001R001A001', 'S001C001P001R001A001'),
    ('xset120', 'S032C001P001R001A120', 'S031C001P001R001A120'),
])
def test_split_rules(config, train, test):
  config = ntu_rgbd.get_config(config)
  split = lambda name: ntu_rgbd.split_of(
      ntu.parse_sample_name(name), config)
  assert split(train) == 'train'
  assert split(test) == 'test'


def test_select_files_excludes_ignores_and_rejects_names():
  names = ['S001C001P001R001A001', 'S001C002P005R002A008',  # officially missing
           'S018C001P045R001A061', 'S001C001P002R001A002', 'junk',
           'S001C001P001R001A001']  # the same sample again
  paths = [f'/raw/{i}/{n}.skeleton' for i, n in enumerate(names)]
  xview = ntu_rgbd.select_files(paths, ntu_rgbd.get_config('xview'))
  assert xview.excluded == ['S001C002P005R002A008']
  assert xview.ignored == 1
  assert [s.path for s in xview.skipped] == [paths[4], paths[5]]
  assert 'duplicate' in xview.skipped[1].reason
  assert xview.splits == {'train': [], 'test': [pathlib.Path(paths[0]),
                                                pathlib.Path(paths[3])]}
  # NTU-120 configs read A061 and use the 120 list.
  xset = ntu_rgbd.select_files(paths, ntu_rgbd.get_config('xset120'))
  assert xset.ignored == 0
  assert xset.splits['train'] == [pathlib.Path(paths[2])]


def test_build_reports_every_file(raw, built):
  summary, _ = built
  assert sum(summary.examples.values()) == len(raw['good'])
  assert sorted(s.path for s in summary.skipped) == raw['bad']
  assert all(s.reason for s in summary.skipped)
  reasons = {pathlib.Path(s.path).name: s.reason for s in summary.skipped}
  assert reasons['S009C002P006R001A008.skeleton'].startswith('NoSkeletonError')
  assert reasons['S009C001P001R001A001.skeleton'].startswith(
      'SkeletonFormatError')
  assert 'sample name' in reasons['readme.skeleton']
  # The official missing sample is excluded, not counted as a failure.
  assert summary.excluded == [REAL_EMPTY]
  assert summary.ignored == 1
  assert summary.num_files == len(raw['good']) + len(raw['bad']) + 2
  assert summary.num_parsed == len(raw['good']) + len(raw['bad']) - 1
  assert not summary.reused
  text = summary.format()
  for path in raw['bad']:
    assert path in text
  assert '1 excluded' in text and f'{len(raw["bad"])} skipped' in text


def test_records_round_trip(raw, built):
  summary, data_dir = built
  seen = set()
  for split in ('train', 'test'):
    records = _records(data_dir, 'ntu_rgbd/xview', split)
    assert len(records) == summary.examples[split]
    for record in records:
      name = record['name'].decode()
      sample = ntu.parse_sample_name(name)
      expected = preprocess.preprocess_skeleton(raw['good'][name])
      np.testing.assert_array_equal(record['skeleton'], expected)
      assert record['num_frames'] == len(expected)
      assert record['label'] == sample.action - 1
      assert (record['setup'], record['camera'], record['subject'],
              record['replication']) == (sample.setup, sample.camera,
                                         sample.subject, sample.replication)
      # Cross-view: cameras 2 and 3 train, camera 1 tests.
      assert split == ('train' if sample.camera in (2, 3) else 'test')
      seen.add(name)
  assert seen == set(raw['good'])


def test_fast_decoder_matches_tfds(built):
  _, data_dir = built
  raw_source = tfds.data_source(
      'ntu_rgbd/xview', split='test', data_dir=data_dir, download=False,
      deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)
  for i, record in enumerate(_records(data_dir, 'ntu_rgbd/xview', 'test')):
    skeleton, label = input_pipeline.decode_record(raw_source[i])
    np.testing.assert_array_equal(skeleton, record['skeleton'])
    assert label == record['label']


def test_dataset_info(built):
  _, data_dir = built
  builder = tfds.builder('ntu_rgbd/xview', data_dir=data_dir)
  assert builder.info.file_format == tfds.core.FileFormat.ARRAY_RECORD
  assert builder.info.features['label'].names == list(
      ntu.ACTION_NAMES[:60])
  assert builder.info.features['skeleton'].shape == (None, 2, 25, 3)


def test_existing_dataset_is_reused(raw, built):
  summary, data_dir = built
  again = build.build_dataset('ntu_rgbd/xview', manual_dir=raw['root'],
                              data_dir=data_dir, quiet=True)
  assert again.reused and again.num_parsed == 0
  assert again.examples == summary.examples


def test_configs_and_version():
  names = [c.name for c in ntu_rgbd.BUILDER_CONFIGS]
  assert names == ['xview', 'xsub', 'xsub120', 'xset120', 'xview_tracked',
                   'xsub_tracked', 'xsub120_tracked', 'xset120_tracked']
  for name in ('xview', 'xsub', 'xsub120', 'xset120'):
    config, tracked = (ntu_rgbd.get_config(name),
                       ntu_rgbd.get_config(f'{name}_tracked'))
    assert config.preprocessing == '2s-agcn'
    assert tracked.preprocessing == 'tracked'
    assert (config.num_classes, config.split_rule) == (
        tracked.num_classes, tracked.split_rule)
  assert str(ntu_rgbd.NtuRgbd.VERSION) == '2.0.0'
  assert '2.0.0' in ntu_rgbd.NtuRgbd.RELEASE_NOTES
  with pytest.raises(ValueError, match='unknown ntu_rgbd config'):
    ntu_rgbd.get_config('xview_ids')


def test_tracked_cross_subject_build_in_one_process(raw, tmp_path):
  summary = build.build_dataset('ntu_rgbd/xsub_tracked',
                                manual_dir=raw['root'], data_dir=tmp_path,
                                num_workers=1, quiet=True)
  assert sum(summary.examples.values()) == len(raw['good'])
  for split in ('train', 'test'):
    for record in _records(tmp_path, 'ntu_rgbd/xsub_tracked', split):
      name = record['name'].decode()
      subject = ntu.parse_sample_name(name).subject
      assert split == ('train' if subject in ntu.XSUB_TRAIN_SUBJECTS
                       else 'test')
      np.testing.assert_array_equal(
          record['skeleton'],
          preprocess.preprocess_skeleton(raw['good'][name], 'tracked'))


def test_manual_dir_without_skeletons_is_a_clear_error(tmp_path):
  (tmp_path / 'raw').mkdir()
  (tmp_path / 'raw' / 'nturgbd_skeletons.zip').write_bytes(b'PK')
  with pytest.raises(FileNotFoundError, match='no .skeleton files'):
    build.build_dataset('ntu_rgbd/xview', manual_dir=tmp_path / 'raw',
                        data_dir=tmp_path / 'tfds', quiet=True)


def test_empty_manual_dir_or_other_dataset_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match='is empty'):
    build.build_dataset('ntu_rgbd/xview', manual_dir=tmp_path,
                        data_dir=tmp_path / 'tfds', quiet=True)
  with pytest.raises(ValueError, match='not an ntu_rgbd, pose_annotations or nw_ucla'):
    build.build_dataset('mnist', manual_dir=tmp_path, data_dir=tmp_path / 'tfds')


def _run(args, **kwargs):
  env = {**os.environ, 'PYTHONPATH': str(REPO_ROOT)}
  return subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True,
                        text=True, timeout=300, **kwargs)


def test_command_line_prints_summary(raw, tmp_path):
  result = _run([sys.executable, '-m', 'data_prep.build', 'ntu_rgbd/xview',
                 f'--manual_dir={raw["root"]}', f'--data_dir={tmp_path}',
                 '--num_processes=2', '--quiet'])
  assert result.returncode == 0, result.stderr
  out = result.stdout
  assert 'ntu_rgbd/xview' in out
  train = sum(ntu.parse_sample_name(n).camera in (2, 3)
              for n in raw['good'])
  assert f'test {len(raw["good"]) - train}, train {train}' in out
  assert '1 excluded' in out
  for path in raw['bad']:
    assert path in out


_NO_TENSORFLOW = r'''
import json, sys
from stbln_jax.data import build
from stbln_jax import input_pipeline
from configs import default

manual_dir, data_dir = sys.argv[1:]
build.build_dataset('ntu_rgbd/xview', manual_dir=manual_dir,
                    data_dir=data_dir, quiet=True)
config = default.get_config()
config.data_dir, config.batch_size, config.eval_batch_size = data_dir, 2, 2
config.stream = 'bone'
batches = list(input_pipeline.train_batches(
    config, epoch=0, process_index=0, process_count=1))
batches += list(input_pipeline.eval_batches(
    config, process_index=0, process_count=1))
print(json.dumps({'batches': len(batches),
                  'tensorflow': sorted(m for m in sys.modules
                                       if m.split('.')[0] == 'tensorflow')}))
'''


def test_no_tensorflow_on_build_and_read(ntu_samples_dir, tmp_path):
  manual_dir = tmp_path / 'raw'
  manual_dir.mkdir()
  for name in REAL_GOOD:
    shutil.copy(ntu_samples_dir / f'{name}.skeleton', manual_dir)
  result = _run([sys.executable, '-c', _NO_TENSORFLOW, str(manual_dir),
                 str(tmp_path / 'tfds')])
  assert result.returncode == 0, result.stderr
  report = json.loads(result.stdout.strip().splitlines()[-1])
  assert report['batches'] > 0
  assert report['tensorflow'] == []
