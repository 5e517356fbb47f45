"""The grain input pipeline over a small built `ntu_rgbd/xview` and a tiny 2D
COCO-17 dataset of another sample shape (`TinyPoses`).

Every batch row is traced back to the record it came from, so the tests check
content (decode, padding, sampling, augmentation, streams) as well as order,
sharding and coverage.
"""

import shutil

import numpy as np
import pytest
import tensorflow_datasets as tfds

from configs import default
from stbln_jax import evaluate
from stbln_jax import input_pipeline
from stbln_jax import models
from stbln_jax import train
from stbln_jax.data import augment
from stbln_jax.data import build
from stbln_jax.data import layouts
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
  """[(name, skeleton (T', M, V, C), label)] as TFDS decodes them, in split order."""
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


# ---- Any dataset shape: a tiny (T, 2, 17, 3) COCO-17 dataset ------------------

POSE_CLASSES = ('wave', 'jump', 'sit')
POSE_LENGTHS = {'xsub_train': (5, 9, 12, 30, 7, 11, 40, 6), 'xsub_val': (8, 25, 3)}


class TinyPoses(tfds.core.GeneratorBasedBuilder):
  """Records with the features and metadata of a 2D COCO-17 annotation dataset."""

  VERSION = tfds.core.Version('1.0.0')

  def __init__(self, **kwargs):
    super().__init__(file_format='array_record', **kwargs)

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict({
            'skeleton': tfds.features.Tensor(
                shape=(None, 2, 17, 3), dtype=np.float32,
                encoding=tfds.features.Encoding.BYTES),
            'label': tfds.features.ClassLabel(names=POSE_CLASSES),
            'name': tfds.features.Text(),
            'num_frames': np.int32,
        }),
        metadata=tfds.core.MetadataDict(layout='coco17', channels='xys'))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {split: self._generate_examples(split) for split in POSE_LENGTHS}

  def _generate_examples(self, split):
    for i, length in enumerate(POSE_LENGTHS[split]):
      rng = np.random.default_rng([len(split), i])
      skeleton = rng.uniform(-1, 1, (length, 2, 17, 3)).astype(np.float32)
      skeleton[..., 2] = rng.uniform(0, 1, (length, 2, 17))  # detector scores
      name = f'{split}_video_{i:03d}_' + 'x' * 40  # longer than 32 bytes
      yield name, {'skeleton': skeleton, 'label': i % 3, 'name': name,
                   'num_frames': length}


@pytest.fixture(scope='module')
def pose_data_dir(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp('poses')
  TinyPoses(data_dir=data_dir).download_and_prepare()
  return str(data_dir)


def pose_config(data_dir, **overrides):
  config = default.get_config()
  config.dataset = 'tiny_poses'
  config.data_dir = data_dir
  config.train_split, config.eval_split = 'xsub_train', 'xsub_val'
  config.model.update(layout='coco17', num_joints=17, in_channels=3, num_classes=3)
  config.num_frames = 10
  config.batch_size = config.eval_batch_size = 4
  config.update(overrides)
  return config


def test_a_dataset_says_its_sample_shape_layout_and_channels(pose_data_dir, config):
  dataset = input_pipeline.open_dataset(pose_config(pose_data_dir))
  assert (dataset.sample_shape, dataset.layout, dataset.channels) == (
      (2, 17, 3), layouts.COCO17, 'xys')
  assert dataset.class_names == POSE_CLASSES and dataset.preprocessing is None
  ntu = input_pipeline.open_dataset(config)
  assert (ntu.sample_shape, ntu.layout, ntu.channels, ntu.preprocessing) == (
      (2, 25, 3), layouts.NTU25, 'xyz', '2s-agcn')


def test_pipeline_reads_a_coco17_dataset(pose_data_dir):
  config = pose_config(pose_data_dir, stream='bone_motion')
  records = _records(config, 'xsub_train')
  batches = _train(config, epoch=0)
  assert len(batches) == 2
  expected = np.stack([
      preprocess.select_stream(preprocess.pad_or_crop(s, 10), 'bone_motion', 'coco17',
                               'xys') for _, s, _ in records])
  rows = []
  for batch in batches:
    assert batch['skeleton'].shape == (4, 10, 2, 17, 3)
    rows.extend(_rows_to_records(batch['skeleton'], expected))
    np.testing.assert_array_equal(batch['label'], [records[r][2] for r in rows[-4:]])
  assert sorted(rows) == list(range(8))
  evaluation = list(input_pipeline.eval_batches(pose_config(pose_data_dir),
                                                process_index=0, process_count=1))
  names = input_pipeline.decode_names(np.concatenate([b['name'] for b in evaluation]))
  assert names == [n for n, _, _ in _records(config, 'xsub_val')] + ['']
  assert len(names[0]) > 32


def test_a_config_that_contradicts_the_dataset_is_one_line_naming_every_mismatch(
    pose_data_dir):
  dataset = input_pipeline.open_dataset(pose_config(pose_data_dir))
  with pytest.raises(models.ConfigError) as error:
    train.fit_to_dataset(default.get_config(), dataset)
  message = str(error.value)
  assert '\n' not in message and message.startswith('the config does not fit dataset '
                                                     'tiny_poses: ')
  for fragment in ('model.num_classes=60, but it has 3 classes',
                   "model.layout='ntu25', but its skeletons are 'coco17'",
                   'model.num_joints=25, but its skeletons have 17 joints',
                   "train_split='train' is not one of its splits ['xsub_train', 'xsub_val']",
                   "eval_split='test' is not one of its splits"):
    assert fragment in message, fragment
  config = pose_config(pose_data_dir, batch_size=12)
  config.model.layout = 'openpose18'
  with pytest.raises(models.ConfigError, match=r"model.layout='openpose18', but its "
                     r"skeletons are 'coco17'; batch_size=12 is larger than the 8 examples"):
    train.fit_to_dataset(config, dataset)


def test_unset_model_fields_are_the_datasets(pose_data_dir):
  config = default.dataset_decides(pose_config(pose_data_dir))
  dataset = input_pipeline.open_dataset(config)
  fitted, steps = train.fit_to_dataset(config, dataset)
  assert steps == 2 and config.model.num_classes is None  # a copy
  assert (fitted.model.num_classes, fitted.model.layout, fitted.model.num_persons,
          fitted.model.num_joints, fitted.model.in_channels) == (3, 'coco17', 2, 17, 3)
  assert fitted.model.custom_layout is None and fitted.preprocessing is None
  models.create_model(fitted.model)


def test_default_loader_is_the_papers_padding_whatever_the_seed_and_epoch(config):
  """No randomness in the paper's recipe: the same padded records in any epoch."""
  padded = _padded(config, 'train')
  for seed, epoch in ((0, 0), (5, 3)):
    config.seed = seed
    for batch in _train(config, epoch=epoch):
      rows = _rows_to_records(batch['skeleton'], padded)
      np.testing.assert_array_equal(batch['skeleton'], padded[rows])


def test_training_samples_are_the_augment_functions_seeded_by_seed_epoch_index(
    pose_data_dir):
  config = pose_config(pose_data_dir, temporal_sampling='uniform', stream='bone')
  config.augment.update(rotation=0.3, scale=0.1)
  records = _records(config, 'xsub_train')
  order = input_pipeline.epoch_order(len(records), 4, config.seed, 1)
  batches = _train(config, epoch=1)
  for indices, batch in zip(order, batches):
    for index, row in zip(indices, batch['skeleton']):
      rng = augment.sample_rng(config.seed, 1, int(index))
      x = augment.random_scale(records[index][1], rng, 0.1, 'xys')
      x = augment.random_rotate(x, rng, 0.3, 'xys')
      x = preprocess.select_stream(x, 'bone', 'coco17', 'xys')
      np.testing.assert_array_equal(row, x[augment.uniform_indices(len(x), 10, rng)])
  again = _train(config, epoch=1, start_batch=1)
  np.testing.assert_array_equal(again[0]['skeleton'], batches[1]['skeleton'])
  assert not np.array_equal(_train(config, epoch=2)[0]['skeleton'], batches[0]['skeleton'])


def test_eval_batches_hold_the_fixed_test_clips(pose_data_dir):
  config = pose_config(pose_data_dir, temporal_sampling='uniform', num_test_clips=3)
  batches = list(input_pipeline.eval_batches(config, process_index=0, process_count=1))
  records = _records(config, 'xsub_val')
  assert batches[0]['skeleton'].shape == (4, 3, 10, 2, 17, 3)
  for i, (_, x, _) in enumerate(records):
    np.testing.assert_array_equal(
        batches[0]['skeleton'][i], x[augment.eval_clip_indices(len(x), 10, 3)])
  assert not batches[0]['skeleton'][3].any()  # the padding row
  config = pose_config(pose_data_dir, temporal_sampling='crop_resize')
  (batch,) = list(input_pipeline.eval_batches(config, process_index=0, process_count=1))
  np.testing.assert_array_equal(
      batch['skeleton'][1], augment.crop_resize(records[1][1], 10, (0.95,)))


def test_a_modern_recipe_run_on_the_coco17_dataset(pose_data_dir, tmp_path):
  """Uniform sampling, rotation, scaling, warm-up, cosine, label smoothing and two
  test clips together, through `train_and_evaluate` on 17 joints."""
  config = pose_config(pose_data_dir, temporal_sampling='uniform', num_test_clips=2,
                       num_epochs=2, warmup_epochs=1, lr_schedule='cosine',
                       label_smoothing=0.1, log_every_steps=1)
  config.augment.update(rotation=0.3, scale=0.1)
  config.model.update(channels=(8, 8), strides=(1, 1), num_layers=2)
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary['num_examples'] == 3 and summary['split'] == 'xsub_val'
  assert [e['step'] for e in summary['evaluations']] == [2, 4]
  assert 0.0 <= summary['mean_class_accuracy'] <= 1.0
  with np.load(tmp_path / 'scores_xsub_val.npz') as scores:
    # The scores are the log of the clips' mean probabilities.
    total = np.exp(scores['logits'].astype(np.float64)).sum(-1)
    np.testing.assert_allclose(total, 1.0, rtol=1e-5)
    assert list(scores['names']) == [n for n, _, _ in _records(config, 'xsub_val')]


# ---- Per-clip normalisation, sorted sampling, repeat --------------------------

NEW_FIELDS = ('crop_min_frames', 'center_joint', 'normalization', 'repeat')
NEW_AUGMENT_FIELDS = ('rotation_axes', 'whole_degrees', 'isotropic_scale')


@pytest.mark.parametrize('recipe', ['paper', 'modern'])
def test_configs_without_the_newer_fields_give_the_same_batches(pose_data_dir, recipe):
  """A config saved before these fields (a workdir's config.json) reads as the
  defaults, which leave every input as it was."""
  config = pose_config(pose_data_dir, stream='bone')
  if recipe == 'modern':
    config.update(temporal_sampling='crop_resize', crop_interval=(0.2, 0.6))
    config.augment.update(rotation=0.3, scale=0.1)
  old = config.copy_and_resolve_references()
  for field in NEW_FIELDS:
    del old[field]
  for field in NEW_AUGMENT_FIELDS:
    del old.augment[field]
  batches = _train(config, epoch=1) + list(input_pipeline.eval_batches(
      config, process_index=0, process_count=1))
  old_batches = _train(old, epoch=1) + list(input_pipeline.eval_batches(
      old, process_index=0, process_count=1))
  for a, b in zip(batches, old_batches, strict=True):
    np.testing.assert_array_equal(a['skeleton'], b['skeleton'])


def test_the_crop_keeps_at_least_crop_min_frames(pose_data_dir):
  config = pose_config(pose_data_dir, temporal_sampling='crop_resize',
                       crop_interval=(0.1, 0.1), crop_min_frames=4)
  records = _records(config, 'xsub_train')
  order = input_pipeline.epoch_order(len(records), 4, config.seed, 0)
  for indices, batch in zip(order, _train(config, epoch=0)):
    for index, row in zip(indices, batch['skeleton']):
      rng = augment.sample_rng(config.seed, 0, int(index))
      np.testing.assert_array_equal(
          row, augment.crop_resize(records[index][1], 10, (0.1, 0.1), rng, min_length=4))


def test_clips_are_centred_normalised_then_sampled_in_order(pose_data_dir):
  config = pose_config(pose_data_dir, temporal_sampling='random_sorted', stream='bone',
                       center_joint=5, normalization='minmax')
  config.augment.update(rotation=0.3, isotropic_scale=0.5)
  records = _records(config, 'xsub_train')
  order = input_pipeline.epoch_order(len(records), 4, config.seed, 0)
  for indices, batch in zip(order, _train(config, epoch=0)):
    for index, row in zip(indices, batch['skeleton']):
      rng = augment.sample_rng(config.seed, 0, int(index))
      x = preprocess.center_on_first_frame(records[index][1], 5, 'xys')
      x = augment.random_isotropic_scale(x, rng, 0.5, 'xys')
      x = augment.random_rotate(x, rng, 0.3, 'xys')
      x = preprocess.select_stream(preprocess.min_max(x, 'xys'), 'bone', 'coco17', 'xys')
      np.testing.assert_array_equal(row, x[augment.random_sorted_indices(len(x), 10, rng)])
  (batch,) = input_pipeline.eval_batches(config, process_index=0, process_count=1)
  for (_, x, _), row in zip(_records(config, 'xsub_val'), batch['skeleton']):
    x = preprocess.min_max(preprocess.center_on_first_frame(x, 5, 'xys'), 'xys')
    x = preprocess.select_stream(x, 'bone', 'coco17', 'xys')
    np.testing.assert_array_equal(row, x[augment.spread_indices(len(x), 10)])


def test_repeat_reads_every_record_k_times_an_epoch_each_copy_on_its_own(pose_data_dir):
  config = pose_config(pose_data_dir, temporal_sampling='uniform', repeat=3)
  records = _records(config, 'xsub_train')  # 8: 24 positions, 6 batches of 4
  assert input_pipeline.steps_per_epoch(config) == 6
  order = input_pipeline.epoch_order(len(records), 4, config.seed, 2, repeat=3)
  np.testing.assert_array_equal(np.sort(order.ravel() % 8), np.repeat(np.arange(8), 3))
  # repeat 1 is the order of before.
  np.testing.assert_array_equal(
      input_pipeline.epoch_order(8, 4, config.seed, 2, repeat=1),
      input_pipeline.epoch_order(8, 4, config.seed, 2))
  batches = _train(config, epoch=2)
  copies = {}
  for positions, batch in zip(order, batches, strict=True):
    np.testing.assert_array_equal(batch['label'], [records[p % 8][2] for p in positions])
    for position, row in zip(positions, batch['skeleton']):
      x = records[position % 8][1]
      rng = augment.sample_rng(config.seed, 2, int(position))
      np.testing.assert_array_equal(row, x[augment.uniform_indices(len(x), 10, rng)])
      copies.setdefault(position % 8, []).append(row)
  # The three copies of a long record are sampled differently.
  assert len({row.tobytes() for row in copies[6]}) == 3
  # The stream counts the longer epochs: step 6 is the first batch of epoch 1.
  stream = input_pipeline.train_stream(config, start_step=6, process_index=0,
                                       process_count=1)
  np.testing.assert_array_equal(next(stream)['skeleton'],
                                _train(config, epoch=1)[0]['skeleton'])
