"""Input pipeline: built skeleton records -> batches of model inputs.

Owns reading the array_record files written by the TFDS builders (`ntu_rgbd`,
or any dataset with the same features) through `tfds.data_source` (no
TensorFlow), the per-epoch shuffle, per-process sharding, temporal sampling
to `config.num_frames`, training augmentation and the choice of stream. Grain
runs the batch loads ahead of the consumer (threads, or `config.worker_count`
processes).

A dataset says what its samples are: (M, V, C) from its 'skeleton' feature, and
from its metadata the skeleton layout (a registered name, or a layout file's
joints and bones: 'custom_layout'), the channels, M where the feature leaves it
open ('num_persons') and the preprocessing of its records (none: NTU's 'ntu25',
'xyz', the builder config's); `Dataset` holds them and the loader uses them.

A batch is a dict of numpy arrays:
  'skeleton': float32 (B_local, T, M, V, C), T = num_frames; for evaluation
              with several clips per sample (`config.num_test_clips` > 1)
              (B_local, K, T, M, V, C)
  'label':    int32 (B_local,)
and for evaluation also
  'mask':     bool (B_local,), False for padding in the last batch
  'index':    int32 (B_local,), position in the split, -1 for padding
  'name':     uint8 (B_local, NAME_BYTES), the sample name (`decode_names`).
B_local is the global batch size divided by the number of processes; process
p gets rows [p * B_local, (p + 1) * B_local) of every global batch.

From a record to a sample (`Transform`): per-frame operations first, on the
record's own frames (the centring on a joint of the first frame; training:
random scales, then rotation; the per-clip normalisation; then the bone
stream), then the temporal sampling (`config.temporal_sampling`):
  'pad'            repeat-pad or cut to num_frames (the paper's recipe);
  'crop_resize'    a random crop of at least `crop_min_frames` resized to
                   num_frames (training), the centre `test_crop` fraction at
                   evaluation (`augment.crop_resize`);
  'uniform'        one random frame in each of num_frames segments (training),
                   `num_test_clips` fixed clips at evaluation;
  'random_sorted'  random frames, repeats allowed, in time order (training),
                   evenly spread ones at evaluation (CTR-GCN's NW-UCLA);
then the motion streams. Training randomness comes from a generator seeded by
(seed, epoch, position in the epoch's order) (`augment.sample_rng`), so a
batch is the same whichever process or worker loads it and whenever a run
resumes. With `config.repeat` = k an epoch holds every training record k
times (`epoch_order`), each copy augmented on its own; epochs, and so the
schedule, count those longer epochs.

`open_dataset` opens a built dataset once (split sizes, action names, sample
shape, record readers); the iterators take that handle so nothing reopens the
builder.

Config fields read: dataset, data_dir, stream, num_frames, train_split,
eval_split, batch_size, eval_batch_size, seed, worker_count, repeat,
temporal_sampling, crop_interval, crop_min_frames, test_crop, num_test_clips,
center_joint, normalization, augment.rotation, augment.rotation_axes,
augment.whole_degrees, augment.scale, augment.isotropic_scale.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator, Mapping, Sequence

from absl import flags
import grain
import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.proto import tf_example_pb2

from stbln_jax.data import augment
from stbln_jax.data import layouts
from stbln_jax.data import ntu_rgbd  # registers the `ntu_rgbd` builder
from stbln_jax.data import nw_ucla  # registers `nw_ucla`
from stbln_jax.data import pose_annotations  # registers `pose_annotations`
from stbln_jax.data import preprocess

Batch = dict[str, np.ndarray]

# Batches loaded ahead of the consumer, per process.
_PREFETCH_BATCHES = 4
# Records held in memory at once while scanning a split for its names.
_SCAN_CHUNK = 1024
# Width of a sample name in an eval batch ('S001C002P003R002A013' has 20).
NAME_BYTES = 64
SAMPLINGS = ('pad', 'crop_resize', 'uniform', 'random_sorted')
# What a dataset without metadata holds: NTU's Kinect joints, x y z.
DEFAULT_LAYOUT, DEFAULT_CHANNELS = 'ntu25', 'xyz'


# ---- Dataset access ----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Dataset:
  """A built dataset, opened once: split sizes, action names, what a sample
  holds, record readers.

  `open_dataset(config)` makes one; the trainer, evaluation and the reports
  share it instead of reopening the builder.

  Attributes:
    sample_shape: (M, V, C) of every frame of a record.
    layout: the `layouts.Layout` of its V joints.
    channels: what its C channels hold (one of `preprocess.CHANNELS`).
    preprocessing: how its records were made from the raw data: an NTU
      builder's (`preprocess.PREPROCESSINGS`), a 3D annotation normalisation
      (`annotations.Normalization.spec`), or None (keypoints as given).
  """
  name: str
  data_dir: str | None
  split_sizes: Mapping[str, int]
  class_names: tuple[str, ...]
  sample_shape: tuple[int, int, int] = (2, 25, 3)
  layout: layouts.Layout = layouts.NTU25
  channels: str = DEFAULT_CHANNELS
  preprocessing: str | None = None
  _readers: dict = dataclasses.field(default_factory=dict, repr=False,
                                     compare=False)

  def num_examples(self, split: str) -> int:
    if split not in self.split_sizes:
      raise ValueError(f'{self.name} has no split {split!r}; its splits are '
                       f'{sorted(self.split_sizes)}')
    return self.split_sizes[split]

  def steps_per_epoch(self, split: str, batch_size: int, repeat: int = 1) -> int:
    """Full global batches of `batch_size` in `split`, each record `repeat`
    times."""
    return self.num_examples(split) * repeat // batch_size

  def reader(self, split: str) -> _RecordReader:
    if split not in self._readers:
      self.num_examples(split)  # an unknown split fails here, by name
      self._readers[split] = _RecordReader(self.name, self.data_dir, split)
    return self._readers[split]

  def sample_names(self, split: str) -> list[str]:
    """Sample names (e.g. 'S001C002P003R002A013') in the split's order."""
    reader = self.reader(split)
    names = []
    for start in range(0, len(reader), _SCAN_CHUNK):
      indices = range(start, min(start + _SCAN_CHUNK, len(reader)))
      names.extend(_feature(r, 'name').bytes_list.value[0].decode()
                   for r in reader.read(indices))
    return names


def _metadata(info) -> dict:
  """A built dataset's metadata, read from its files (`get` on TFDS's own dict would
  give the builder's defaults)."""
  return dict(info.metadata.items()) if info.metadata else {}


def _sample_description(name: str, info) -> tuple[tuple[int, int, int],
                                                  layouts.Layout, str]:
  """((M, V, C), layout, channels) of a dataset, checked against each other."""
  feature_shape = tuple(info.features['skeleton'].shape)
  metadata = _metadata(info)
  channels = metadata.get('channels') or DEFAULT_CHANNELS
  try:
    layout = layouts.from_fields(metadata.get('layout'), metadata.get('custom_layout'))
  except ValueError as e:
    raise ValueError(f'{name}: its metadata names no usable layout: {e}') from None
  if channels not in preprocess.CHANNELS:
    raise ValueError(f'{name}: its metadata names channels {channels!r}, not '
                     f'one of {preprocess.CHANNELS}')
  if len(feature_shape) != 4:
    raise ValueError(f'{name}: its skeleton feature has shape {feature_shape}, not '
                     f'(T, M, V, C)')
  m, v, c = feature_shape[1:]
  shape = (m or metadata.get('num_persons') or preprocess.NUM_PERSONS,
           v or layout.num_joints, c)
  if shape[1:] != (layout.num_joints, len(channels)):
    raise ValueError(f'{name}: samples of (M, V, C)={shape} do not hold layout '
                     f'{layout.name!r} ({layout.num_joints} joints) with channels '
                     f'{channels!r}')
  return shape, layout, channels


def open_dataset(config) -> Dataset:
  """The built `config.dataset` under `config.data_dir`, or an error saying
  how to build it."""
  builder = tfds.builder(config.dataset, data_dir=config.data_dir)
  if not builder.is_prepared():
    raw = ('the NTU .skeleton files' if config.dataset.startswith('ntu_rgbd')
           else 'the NW-UCLA .json clips' if config.dataset.startswith('nw_ucla')
           else 'the annotation .pkl or OpenPose JSON files')
    command = (f'python -m data_prep.build {config.dataset} '
               f'--manual_dir=<folder with {raw}>')
    if config.data_dir:
      command += f' --data_dir={config.data_dir}'
    raise FileNotFoundError(
        f'dataset {config.dataset} is not built under '
        f'{builder.data_dir_root}; build it first with: {command}')
  info = builder.info
  shape, layout, channels = _sample_description(config.dataset, info)
  preprocessing = _metadata(info).get('preprocessing')
  return Dataset(
      name=config.dataset, data_dir=config.data_dir,
      split_sizes={k: v.num_examples for k, v in info.splits.items()},
      class_names=tuple(info.features['label'].names),
      sample_shape=shape, layout=layout, channels=channels,
      preprocessing=preprocessing or getattr(builder.builder_config, 'preprocessing',
                                             None))


def steps_per_epoch(config) -> int:
  """Full global batches of `config.batch_size` in a training epoch (the
  training split, `config.repeat` times)."""
  return open_dataset(config).steps_per_epoch(
      config.train_split, config.batch_size, config.get('repeat', 1))


class _RecordReader:
  """Raw records of one split; reopened lazily once pickled (grain workers)."""

  def __init__(self, dataset: str, data_dir: str | None, split: str):
    self.dataset, self.data_dir, self.split = dataset, data_dir, split
    self._source = None

  @property
  def source(self):
    if self._source is None:
      self._source = tfds.data_source(
          self.dataset, split=self.split, data_dir=self.data_dir,
          download=False,
          deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)
    return self._source

  def __len__(self) -> int:
    return len(self.source)

  def read(self, indices: Sequence[int]) -> list[bytes]:
    # One record at a time from array_record's own source (the raw bytes we
    # asked TFDS for): its batched read starts a thread pool per call, which
    # costs more CPU than it saves on local disks.
    records = self.source.data_source
    return [records[int(i)] for i in indices]

  def __getstate__(self):
    return {**self.__dict__, '_source': None}


# ---- Decoding ----------------------------------------------------------------


def _feature(record: bytes, key: str):
  return tf_example_pb2.Example.FromString(record).features.feature[key]


def _skeleton_and_label(features, shape: Sequence[int]) -> tuple[np.ndarray, int]:
  # A feature with one unknown dimension is its bytes; with more (the persons of
  # annotation records), the bytes and the shape.
  raw = features['skeleton' if 'skeleton' in features else 'skeleton/value']
  skeleton = np.frombuffer(raw.bytes_list.value[0], np.float32).reshape(-1, *shape)
  return skeleton, features['label'].int64_list.value[0]


def decode_record(record: bytes, shape: Sequence[int] = (2, 25, 3)
                  ) -> tuple[np.ndarray, int]:
  """(skeleton float32 (T, *shape), label) of one serialized record; `shape`
  is the dataset's (M, V, C) (`Dataset.sample_shape`).

  Reads the tf.train.Example proto directly: an order of magnitude cheaper
  than TFDS's generic numpy decoding, which matters at thousands of samples/s.
  """
  return _skeleton_and_label(
      tf_example_pb2.Example.FromString(record).features.feature, shape)


def encode_names(names: Sequence[str]) -> np.ndarray:
  """uint8 (N, NAME_BYTES): ASCII sample names, zero-padded (see `decode_names`)."""
  codes = np.zeros((len(names), NAME_BYTES), np.uint8)
  for row, name in enumerate(names):
    raw = name.encode('ascii')[:NAME_BYTES]
    codes[row, :len(raw)] = np.frombuffer(raw, np.uint8)
  return codes


def decode_names(codes: np.ndarray) -> list[str]:
  """The names `encode_names` (or an eval batch's 'name') holds."""
  return [bytes(row).rstrip(b'\0').decode('ascii') for row in np.asarray(codes)]


@dataclasses.dataclass(frozen=True)
class Transform:
  """Record -> model input, as the config and the dataset choose (module
  docstring). Plain values, so that grain's worker processes can take it."""
  num_frames: int
  stream: str = 'joint'
  layout: str | layouts.Layout = DEFAULT_LAYOUT
  channels: str = DEFAULT_CHANNELS
  sampling: str = 'pad'
  crop_interval: tuple[float, float] = (0.5, 1.0)
  test_crop: float = 0.95
  num_test_clips: int = 1
  crop_min_frames: int = augment.CROP_MIN_FRAMES
  center_joint: int | None = None
  normalization: str = 'none'
  rotation: float = 0.0
  rotation_axes: str = 'xyz'
  whole_degrees: bool = False
  scale: float = 0.0
  isotropic_scale: float = 0.0

  @classmethod
  def from_config(cls, config, *, layout: str | layouts.Layout,
                  channels: str) -> Transform:
    """The transform of `config` for records of `layout` and `channels`."""
    augmentation = config.get('augment') or {}
    return cls(
        num_frames=config.num_frames, stream=config.stream,
        layout=layout, channels=channels,
        sampling=config.get('temporal_sampling', 'pad'),
        crop_interval=tuple(config.get('crop_interval', (0.5, 1.0))),
        test_crop=config.get('test_crop', 0.95),
        num_test_clips=config.get('num_test_clips', 1),
        crop_min_frames=config.get('crop_min_frames', augment.CROP_MIN_FRAMES),
        center_joint=config.get('center_joint'),
        normalization=config.get('normalization', 'none'),
        rotation=augmentation.get('rotation', 0.0),
        rotation_axes=augmentation.get('rotation_axes', 'xyz'),
        whole_degrees=augmentation.get('whole_degrees', False),
        scale=augmentation.get('scale', 0.0),
        isotropic_scale=augmentation.get('isotropic_scale', 0.0))

  def _per_frame(self, x: np.ndarray, rng: np.random.Generator | None
                 ) -> np.ndarray:
    if self.center_joint is not None:
      x = preprocess.center_on_first_frame(x, self.center_joint, self.channels)
    if rng is not None and self.scale:
      x = augment.random_scale(x, rng, self.scale, self.channels)
    if rng is not None and self.isotropic_scale:
      x = augment.random_isotropic_scale(x, rng, self.isotropic_scale,
                                         self.channels)
    if rng is not None and self.rotation:
      x = augment.random_rotate(x, rng, self.rotation, self.channels,
                                self.rotation_axes, self.whole_degrees)
    if self.normalization == 'minmax':
      # Over all the record's frames, before any are sampled (CTR-GCN's NW-UCLA).
      x = preprocess.min_max(x, self.channels)
    if self.stream in ('bone', 'bone_motion'):
      # A bone is a difference within one frame: taken on the record's own
      # frames, it equals the bone of the sampled frames.
      x = preprocess.select_stream(x, 'bone', self.layout, self.channels)
    return x

  def train(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(num_frames, M, V, C) of a record x (T, M, V, C), before motion."""
    x = self._per_frame(x, rng)
    if self.sampling == 'crop_resize':
      return augment.crop_resize(x, self.num_frames, self.crop_interval, rng,
                                 self.crop_min_frames)
    if self.sampling == 'uniform':
      return x[augment.uniform_indices(len(x), self.num_frames, rng)]
    if self.sampling == 'random_sorted':
      return x[augment.random_sorted_indices(len(x), self.num_frames, rng)]
    return preprocess.pad_or_crop(x, self.num_frames)

  def eval(self, x: np.ndarray) -> np.ndarray:
    """(num_frames, M, V, C), or (K, num_frames, M, V, C) with K test clips."""
    return augment.eval_frames(self._per_frame(x, None), self.num_frames,
                               self.sampling, self.test_crop, self.test_clips)

  @property
  def test_clips(self) -> int:
    """Clips per sample at evaluation (K)."""
    return self.num_test_clips if self.sampling == 'uniform' else 1

  def sample_shape(self, shape: Sequence[int], train: bool) -> tuple[int, ...]:
    clips = () if train or self.test_clips == 1 else (self.test_clips,)
    return clips + (self.num_frames, *shape)

  def motion(self, batch: np.ndarray) -> np.ndarray:
    """The motion streams, taken after the temporal sampling."""
    if self.stream.endswith('motion'):
      # Of the joints or, for 'bone_motion', of the bones `_per_frame` took.
      return preprocess.select_stream(batch, 'joint_motion', self.layout,
                                      self.channels)
    return batch


class _BatchLoader:
  """Loads records by index into one batch of the chosen stream."""

  def __init__(self, reader: _RecordReader, transform: Transform,
               shape: Sequence[int], *, seed: int | None = None,
               epoch: int | None = None, with_names: bool = False):
    """`seed` and `epoch`: a training batch (random sampling, augmentation);
    without them, an evaluation batch."""
    if transform.stream not in preprocess.STREAMS:
      raise ValueError(f'unknown stream {transform.stream!r}; expected one of '
                       f'{preprocess.STREAMS}')
    self.reader, self.transform, self.shape = reader, transform, tuple(shape)
    self.seed, self.epoch, self.with_names = seed, epoch, with_names

  def __call__(self, indices: np.ndarray, valid: np.ndarray | None = None
               ) -> Batch:
    """{'skeleton', 'label' (B,)[, 'name']}; rows not `valid` stay zero.

    `indices` are record indices; in training, positions in a repeated epoch
    (`epoch_order`): position i reads record i % len(split) and seeds its own
    augmentation.
    """
    train = self.seed is not None
    rows = np.arange(len(indices)) if valid is None else np.flatnonzero(valid)
    skeleton = np.zeros(
        (len(indices), *self.transform.sample_shape(self.shape, train)),
        np.float32)
    label = np.zeros(len(indices), np.int32)
    names = [''] * len(indices)
    records = self.reader.read(indices[rows] % len(self.reader))
    for row, record in zip(rows, records):
      features = tf_example_pb2.Example.FromString(record).features.feature
      x, label[row] = _skeleton_and_label(features, self.shape)
      if self.with_names:
        names[row] = features['name'].bytes_list.value[0].decode()
      if train:
        rng = augment.sample_rng(self.seed, self.epoch, int(indices[row]))
        skeleton[row] = self.transform.train(x, rng)
      else:
        skeleton[row] = self.transform.eval(x)
    batch = {'skeleton': self.transform.motion(skeleton), 'label': label}
    if self.with_names:
      batch['name'] = encode_names(names)
    return batch


class _TrainBatch:
  """Global batch b -> this process's rows of it (indices from `order`)."""

  def __init__(self, load: _BatchLoader, order: np.ndarray):
    self.load, self.order = load, order  # order: (steps, B_local)

  def __call__(self, b: int) -> Batch:
    return self.load(self.order[b])


class _EvalBatch:
  """Global batch b of the split in order; rows past the end are padding."""

  def __init__(self, load: _BatchLoader, num_examples: int, batch_size: int,
               offset: int, local_batch_size: int):
    self.load, self.num_examples = load, num_examples
    self.batch_size, self.offset = batch_size, offset
    self.local_batch_size = local_batch_size

  def __call__(self, b: int) -> Batch:
    index = (b * self.batch_size + self.offset +
             np.arange(self.local_batch_size))
    mask = index < self.num_examples
    index = np.where(mask, index, -1).astype(np.int32)
    batch = self.load(np.maximum(index, 0), mask)
    batch.update(mask=mask, index=index)
    return batch


def _processes(process_index, process_count) -> tuple[int, int]:
  if process_index is None or process_count is None:
    import jax  # pylint: disable=g-import-not-at-top
    if process_index is None:
      process_index = jax.process_index()
    if process_count is None:
      process_count = jax.process_count()
  if not 0 <= process_index < process_count:
    raise ValueError(f'process_index {process_index} is not in '
                     f'[0, {process_count})')
  return process_index, process_count


def _local_batch_size(batch_size: int, process_count: int) -> int:
  if batch_size <= 0 or batch_size % process_count:
    raise ValueError(f'batch size {batch_size} must be a positive multiple of '
                     f'the process count {process_count}')
  return batch_size // process_count


def _run(dataset: grain.MapDataset, worker_count: int) -> Iterator[Batch]:
  """Iterates `dataset`, loading batches ahead in threads or processes."""
  it = dataset.to_iter_dataset(grain.ReadOptions(
      num_threads=2, prefetch_buffer_size=_PREFETCH_BATCHES))
  if worker_count > 0:
    if not flags.FLAGS.is_parsed():
      # Grain's workers read its absl flags; a program not started by
      # absl.app (a notebook, a test) has not parsed them: use the defaults.
      flags.FLAGS.mark_as_parsed()
    it = it.mp_prefetch(grain.MultiprocessingOptions(
        num_workers=worker_count, per_worker_buffer_size=_PREFETCH_BATCHES))
  return iter(it)


# ---- Public iterators --------------------------------------------------------


def epoch_order(num_examples: int, batch_size: int, seed: int,
                epoch: int, repeat: int = 1) -> np.ndarray:
  """int (steps, batch_size): the positions of each global batch in an epoch
  that holds every record `repeat` times; position i is record
  i % num_examples.

  A permutation seeded by (seed, epoch), so every epoch has its own order and
  every run the same one; the last incomplete batch is dropped.
  """
  total = num_examples * repeat
  steps = total // batch_size
  order = np.random.default_rng([seed, epoch]).permutation(total)
  return order[:steps * batch_size].reshape(steps, batch_size)


def train_batches(config, *, epoch: int, start_batch: int = 0,
                  process_index: int | None = None,
                  process_count: int | None = None,
                  dataset: Dataset | None = None) -> Iterator[Batch]:
  """One shuffled epoch of `config.train_split` (each record `config.repeat`
  times), from batch `start_batch` on.

  Args:
    config: the experiment config (see module docstring for the fields).
    epoch: selects the shuffle, together with `config.seed`.
    start_batch: global batches already consumed this epoch (resuming); they
      are skipped without being read.
    process_index, process_count: this process and how many there are
      (default: from JAX).
    dataset: `open_dataset(config)`, if already open.

  Yields:
    {'skeleton': float32 (B_local, T, M, V, C), 'label': int32 (B_local,)}
    for each remaining global batch of `config.batch_size`.
  """
  process_index, process_count = _processes(process_index, process_count)
  local = _local_batch_size(config.batch_size, process_count)
  dataset = dataset or open_dataset(config)
  reader = dataset.reader(config.train_split)
  repeat = config.get('repeat', 1)
  order = epoch_order(len(reader), config.batch_size, config.seed, epoch,
                      repeat)
  if not len(order):
    raise ValueError(
        f'{config.dataset} {config.train_split} has {len(reader)} examples '
        f'(repeat={repeat}), fewer than one batch of '
        f'batch_size={config.batch_size}')
  if not 0 <= start_batch <= len(order):
    raise ValueError(f'start_batch {start_batch} is not in [0, {len(order)}]')
  order = order[:, process_index * local:(process_index + 1) * local]
  load = _BatchLoader(reader, Transform.from_config(
      config, layout=dataset.layout, channels=dataset.channels),
                      dataset.sample_shape, seed=config.seed, epoch=epoch)
  batches = grain.MapDataset.range(start_batch, len(order)).map(
      _TrainBatch(load, order))
  return _run(batches, config.worker_count)


def train_stream(config, *, start_step: int = 0,
                 dataset: Dataset | None = None,
                 **processes) -> Iterator[Batch]:
  """Training batches from global step `start_step` on, epoch after epoch.

  Step s is batch s % steps_per_epoch of epoch s // steps_per_epoch, so a run
  resumed at step s sees the batches an uninterrupted run would have. Endless:
  the consumer decides when to stop. `processes`: as for `train_batches`.
  """
  dataset = dataset or open_dataset(config)
  steps = dataset.steps_per_epoch(config.train_split, config.batch_size,
                                  config.get('repeat', 1))
  epoch, batch = divmod(start_step, max(steps, 1))
  while True:
    yield from train_batches(config, epoch=epoch, start_batch=batch,
                             dataset=dataset, **processes)
    epoch, batch = epoch + 1, 0


def eval_batches(config, split: str | None = None, *,
                 batch_size: int | None = None,
                 process_index: int | None = None,
                 process_count: int | None = None,
                 dataset: Dataset | None = None) -> Iterator[Batch]:
  """The whole of `split` (default `config.eval_split`) in record order.

  Global batch b holds records [b * batch_size, (b + 1) * batch_size); the
  last one is padded (mask False, index -1) so every batch has the same shape.

  Yields:
    {'skeleton', 'label', 'mask', 'index', 'name'} with leading size B_local =
    batch_size (default `config.eval_batch_size`) // process_count; 'name' is
    uint8 (B_local, NAME_BYTES), see `decode_names`.
  """
  split = split or config.eval_split
  batch_size = batch_size or config.eval_batch_size
  process_index, process_count = _processes(process_index, process_count)
  local = _local_batch_size(batch_size, process_count)
  dataset = dataset or open_dataset(config)
  reader = dataset.reader(split)
  num_examples = len(reader)
  num_batches = -(-num_examples // batch_size)
  load = _BatchLoader(reader, Transform.from_config(
      config, layout=dataset.layout, channels=dataset.channels),
                      dataset.sample_shape, with_names=True)
  batches = grain.MapDataset.range(num_batches).map(_EvalBatch(
      load, num_examples, batch_size, process_index * local, local))
  return _run(batches, config.worker_count)
