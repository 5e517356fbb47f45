"""The grain input pipeline over a small built `ntu_rgbd/xview`.

Every batch row is traced back to the record it came from, so the tests check
content (decode, padding, streams) as well as order, sharding and coverage.
"""

import shutil

import numpy as np
import pytest
import tensorflow_datasets as tfds

from configs import default
from stbln_jax import input_pipeline
from stbln_jax.data import build
from stbln_jax.data import preprocess
from stbln_jax.data import skeleton as skeleton_lib
from stbln_jax.data import synthetic

NUM_FRAMES = 64  # below the real files' lengths (cropped), above synthetic's


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory, ntu_samples_dir):
  raw = tmp_path_factory.mktemp('raw')
  # 4 actions x 2 subjects x 3 cameras: 16 train (cameras 2, 3), 8 test.
  synthetic.write_synthetic_dataset(raw, num_classes=4, subjects=(1, 3),
                                    replications=(1,), frames=(20, 40), seed=1)
  for name in ('S001C001P001R001A011', 'S004C002P003R001A017'):
    shutil.copy(ntu_samples_dir / f'{name}.skeleton', raw)
  data_dir = tmp_path_factory.mktemp('tfds')
  build.build_dataset('ntu_rgbd/xview', manual_dir=raw, data_dir=data_dir,
                      num_workers=1, quiet=True)
  return data_dir


@pytest.fixture
def config(data_dir):
  config = default.get_config()
  config.data_dir = str(data_dir)
  config.num_frames = NUM_FRAMES
  config.batch_size = 4
  config.eval_batch_size = 4
  return config


def _records(config, split):
  """[(name, skeleton (T', 2, 25, 3), label)] as TFDS decodes them."""
  source = tfds.data_source(config.dataset, split=split,
                            data_dir=config.data_dir, download=False)
  return [(r['name'].decode(), r['skeleton'], r['label'])
          for r in (source[i] for i in range(len(source)))]


def _padded(config, split):
  """float32 (N, T, 2, 25, 3): every record padded to the config's length."""
  return np.stack([preprocess.pad_or_crop(s, config.num_frames)
                   for _, s, _ in _records(config, split)])


def _rows_to_records(skeletons, padded):
  """Index of the record each row equals (asserting there is exactly one)."""
  flat = padded.reshape(len(padded), -1)
  indices = []
  for row in skeletons.reshape(len(skeletons), -1):
    (match,) = np.flatnonzero((flat == row).all(axis=1))
    indices.append(match)
  return np.array(indices)


def _train(config, epoch, **kwargs):
  kwargs.setdefault('process_index', 0)
  kwargs.setdefault('process_count', 1)
  return list(input_pipeline.train_batches(config, epoch=epoch, **kwargs))


def test_dataset_handle_sizes_and_names(config):
  records = _records(config, 'train')
  dataset = input_pipeline.open_dataset(config)
  assert dataset.split_sizes == {'train': len(records),
                                 'test': len(_records(config, 'test'))}
  assert dataset.num_examples('train') == len(records)
  assert dataset.steps_per_epoch('train', 4) == len(records) // 4
  assert input_pipeline.steps_per_epoch(config) == len(records) // 4
  assert dataset.sample_names('train') == [name for name, _, _ in records]
  assert len(dataset.class_names) == 60 and dataset.class_names[10] == 'reading'
  with pytest.raises(ValueError, match="no split 'validation'; its splits are"):
    dataset.num_examples('validation')


def test_names_survive_encoding():
  names = ['S001C002P003R002A013', '', 'x' * input_pipeline.NAME_BYTES]
  codes = input_pipeline.encode_names(names)
  assert codes.shape == (3, input_pipeline.NAME_BYTES) and codes.dtype == np.uint8
  assert input_pipeline.decode_names(codes) == names


def test_train_epoch_content_and_order(config):
  batches = _train(config, epoch=0)
  steps = input_pipeline.steps_per_epoch(config)
  assert len(batches) == steps
  padded = _padded(config, 'train')
  labels = np.array([label for _, _, label in _records(config, 'train')])
  seen = []
  for batch in batches:
    assert batch['skeleton'].shape == (4, NUM_FRAMES, 2, 25, 3)
    assert batch['skeleton'].dtype == np.float32
    assert batch['label'].dtype == np.int32
    rows = _rows_to_records(batch['skeleton'], padded)
    np.testing.assert_array_equal(batch['label'], labels[rows])
    seen.extend(rows)
  # Drop remainder: every record at most once, all but len % 4 of them.
  assert len(set(seen)) == len(seen) == steps * 4


def test_shuffle_is_seeded_by_seed_and_epoch(config):
  padded = _padded(config, 'train')
  order = lambda batches: np.concatenate(
      [_rows_to_records(b['skeleton'], padded) for b in batches])
  first = order(_train(config, epoch=0))
  np.testing.assert_array_equal(order(_train(config, epoch=0)), first)
  assert not np.array_equal(order(_train(config, epoch=1)), first)
  config.seed = 1
  assert not np.array_equal(order(_train(config, epoch=0)), first)


def test_processes_get_disjoint_slices_of_each_global_batch(config):
  whole = _train(config, epoch=2)
  halves = [_train(config, epoch=2, process_index=p, process_count=2)
            for p in range(2)]
  for b, batch in enumerate(whole):
    np.testing.assert_array_equal(
        np.concatenate([h[b]['skeleton'] for h in halves]), batch['skeleton'])
    np.testing.assert_array_equal(
        np.concatenate([h[b]['label'] for h in halves]), batch['label'])
    assert halves[0][b]['label'].shape == (2,)


def test_start_batch_resumes_mid_epoch(config):
  whole = _train(config, epoch=3)
  resumed = _train(config, epoch=3, start_batch=2)
  assert len(resumed) == len(whole) - 2
  for a, b in zip(whole[2:], resumed):
    np.testing.assert_array_equal(a['skeleton'], b['skeleton'])


def test_train_stream_is_the_epochs_one_after_another(config):
  steps = input_pipeline.steps_per_epoch(config)
  epochs = _train(config, epoch=0) + _train(config, epoch=1) + _train(config, epoch=2)
  start = steps + 1  # the second batch of epoch 1
  stream = input_pipeline.train_stream(config, start_step=start, process_index=0,
                                       process_count=1)
  for expected in epochs[start:]:
    np.testing.assert_array_equal(next(stream)['skeleton'], expected['skeleton'])


@pytest.mark.parametrize('stream', ['bone', 'joint_motion', 'bone_motion'])
def test_stream_is_taken_after_padding(config, stream):
  joints = _train(config, epoch=0)
  config.stream = stream
  for joint_batch, batch in zip(joints, _train(config, epoch=0)):
    np.testing.assert_array_equal(
        batch['skeleton'],
        preprocess.select_stream(joint_batch['skeleton'], stream))
    np.testing.assert_array_equal(batch['label'], joint_batch['label'])


def test_eval_covers_every_example_once(config):
  records = _records(config, 'test')
  padded = _padded(config, 'test')
  config.eval_batch_size = 6  # 3 per process; a padded last batch
  assert len(records) % 6
  per_process = [
      list(input_pipeline.eval_batches(config, process_index=p,
                                       process_count=2))
      for p in range(2)]
  assert len(per_process[0]) == len(per_process[1]) == -(-len(records) // 6)
  names = input_pipeline.open_dataset(config).sample_names('test')
  index, covered = [], []
  for b in range(len(per_process[0])):
    for p in range(2):
      batch = per_process[p][b]
      assert batch['skeleton'].shape == (3, NUM_FRAMES, 2, 25, 3)
      index.extend(batch['index'])
      mask = batch['mask']
      np.testing.assert_array_equal(mask, batch['index'] >= 0)
      valid = batch['index'][mask]
      covered.extend(valid)
      np.testing.assert_array_equal(batch['skeleton'][mask], padded[valid])
      assert not batch['skeleton'][~mask].any()
      for i, label, name in zip(valid, batch['label'][mask],
                                input_pipeline.decode_names(batch['name'][mask])):
        assert label == records[i][2]
        assert name == names[i] == records[i][0]
        assert label == skeleton_lib.parse_sample_name(names[i]).action - 1
      assert input_pipeline.decode_names(batch['name'][~mask]) == [''] * (~mask).sum()
  # In order, each exactly once, then padding.
  assert covered == list(range(len(records)))
  assert index == covered + [-1] * (len(index) - len(records))


def test_eval_defaults_to_eval_split(config):
  batches = list(input_pipeline.eval_batches(config, process_index=0,
                                             process_count=1))
  assert sum(b['mask'].sum() for b in batches) == len(_records(config, 'test'))


def test_grain_worker_processes_give_the_same_batches(config):
  in_process = _train(config, epoch=4)
  config.worker_count = 1
  with_workers = _train(config, epoch=4)
  assert len(with_workers) == len(in_process)
  for a, b in zip(in_process, with_workers):
    np.testing.assert_array_equal(a['skeleton'], b['skeleton'])


def test_missing_dataset_says_how_to_build_it(config):
  config.dataset = 'ntu_rgbd/xsub'
  with pytest.raises(FileNotFoundError,
                     match='python -m data_prep.build ntu_rgbd/xsub') as error:
    input_pipeline.open_dataset(config)
  assert '\n' not in str(error.value)
  with pytest.raises(FileNotFoundError, match=f'--data_dir={config.data_dir}'):
    next(input_pipeline.train_batches(config, epoch=0, process_index=0,
                                      process_count=1))


def test_batch_must_split_over_processes(config):
  config.batch_size = 5
  with pytest.raises(ValueError, match='multiple of the process count 2'):
    input_pipeline.train_batches(config, epoch=0, process_index=0,
                                 process_count=2)
