"""TFDS builder `ntu_rgbd`: NTU RGB+D 60/120 skeletons stored as array_record.

This module owns what turns a folder of raw `.skeleton` files into records:
the benchmark configs and their split rules (the facts come from `ntu`), and
the parallel parse of the raw files. It needs no TensorFlow: records are
written by TFDS's own writer as array_record and read back with
`tfds.data_source` (see `stbln_jax.input_pipeline`).

Configs (`ntu_rgbd/<config>`):

  xview     NTU-60 cross-view: train cameras 2 and 3, test camera 1.
  xsub      NTU-60 cross-subject: the 20 training subjects of Shahroudy et al.
  xsub120   NTU-120 cross-subject: those plus the 33 NTU-120 training subjects.
  xset120   NTU-120 cross-setup: even setup ids train, odd ones test.

These are preprocessed exactly as 2s-AGCN does ('2s-agcn', the papers'
setting); `<config>_tracked` (e.g. `xview_tracked`) holds the same samples with
bodies followed by their tracking ID ('tracked'; see `preprocess`).

NTU-60 configs read actions A001-A060, NTU-120 configs A001-A120; files of
other actions are ignored. Samples on the official missing-skeleton list (302
for NTU-60, 535 for NTU-120) are excluded.

Manual dir layout: the unzipped skeleton archives anywhere below the manual
dir (`<data_dir>/downloads/manual/` unless `--manual_dir` says otherwise).
Files are found recursively by their `.skeleton` suffix, e.g.

  <manual_dir>/nturgb+d_skeletons/S001C001P001R001A001.skeleton   (s001-s017)
  <manual_dir>/nturgb+d_skeletons120/S018C001P008R001A061.skeleton (s018-s032)

One record per sample: `skeleton` float32 (T, 2, 25, 3) from
`preprocess_skeleton` (repeated to the training length at read time: for
'2s-agcn' T is a whole period of 2s-AGCN's 300-frame sample, the clip's length
unless its two persons have different lengths; for 'tracked' the clip's
length), `label` (action - 1), `name`, `setup`, `camera`, `subject`,
`replication`, `num_frames` (= T).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import itertools
import multiprocessing
import os
import pathlib
from typing import Iterable, Iterator, Sequence

from absl import logging
from array_record.python import array_record_module
import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.core import shuffle as tfds_shuffle
from tensorflow_datasets.core import writer as tfds_writer

from stbln_jax.data import ntu
from stbln_jax.data import preprocess
from stbln_jax.data import skeleton as skeleton_lib

TRAIN = 'train'
TEST = 'test'

@dataclasses.dataclass(eq=False)
class NtuRgbdConfig(tfds.core.BuilderConfig):
  """One NTU benchmark: which actions it reads and how it splits them.

  Attributes:
    num_classes: 60 (NTU RGB+D) or 120 (NTU RGB+D 120); actions above it are
      ignored and the matching official missing-skeleton list is excluded.
    split_rule: 'camera', 'subject' or 'setup' (see `split_of`).
    preprocessing: one of `preprocess.PREPROCESSINGS`: '2s-agcn' (2s-AGCN's
      body slots and per-person repetition) or 'tracked' (bodies followed by
      tracking ID).
  """

  num_classes: int = 60
  split_rule: str = 'camera'
  preprocessing: str = '2s-agcn'


_BENCHMARKS = (
    ('xview', 60, 'camera',
     'NTU RGB+D 60 cross-view: train cameras 2, 3; test 1.'),
    ('xsub', 60, 'subject',
     'NTU RGB+D 60 cross-subject (20 training subjects).'),
    ('xsub120', 120, 'subject',
     'NTU RGB+D 120 cross-subject (53 training subjects).'),
    ('xset120', 120, 'setup',
     'NTU RGB+D 120 cross-setup: even setup ids train.'),
)
# Each benchmark as 2s-AGCN preprocesses it (`xview`, ...) and with bodies
# followed by tracking ID (`xview_tracked`, ...).
BUILDER_CONFIGS = tuple(
    NtuRgbdConfig(name=name + suffix, num_classes=num_classes,
                  split_rule=rule, preprocessing=preprocessing,
                  description=f'{description} Preprocessing: {preprocessing}.')
    for preprocessing, suffix in (('2s-agcn', ''), ('tracked', '_tracked'))
    for name, num_classes, rule, description in _BENCHMARKS)
_CONFIGS_BY_NAME = {c.name: c for c in BUILDER_CONFIGS}


def get_config(name: str) -> NtuRgbdConfig:
  """The builder config `name`: 'xview', 'xsub', 'xsub120' or 'xset120',
  each also with '_tracked'."""
  try:
    return _CONFIGS_BY_NAME[name]
  except KeyError:
    raise ValueError(
        f'unknown ntu_rgbd config {name!r}; expected one of '
        f'{sorted(_CONFIGS_BY_NAME)}') from None


def split_of(sample: ntu.SampleName, config: NtuRgbdConfig) -> str:
  """'train' or 'test' for `sample` under `config`'s benchmark protocol."""
  if config.split_rule == 'camera':
    is_train = sample.camera in ntu.XVIEW_TRAIN_CAMERAS
  elif config.split_rule == 'subject':
    subjects = (ntu.XSUB_TRAIN_SUBJECTS if config.num_classes == 60
                else ntu.XSUB120_TRAIN_SUBJECTS)
    is_train = sample.subject in subjects
  elif config.split_rule == 'setup':
    is_train = ntu.is_xset_train_setup(sample.setup)
  else:
    raise ValueError(f'unknown split rule {config.split_rule!r}')
  return TRAIN if is_train else TEST


def find_skeleton_files(root: os.PathLike[str] | str) -> list[pathlib.Path]:
  """Every `*.skeleton` file below `root` (recursively), sorted by path."""
  return sorted(p for p in pathlib.Path(root).rglob('*.skeleton')
                if p.is_file())


# ---- What a build did with each file -----------------------------------------


@dataclasses.dataclass(frozen=True)
class SkippedFile:
  """A file that produced no record, and why (a parse error, a bad name...)."""

  path: str
  reason: str


@dataclasses.dataclass
class FileSelection:
  """The files of a manual dir sorted into splits for one config.

  Attributes:
    splits: split name -> paths whose records go there.
    excluded: sample names on the official missing-skeleton list.
    ignored: number of files whose action is outside the config's range.
    skipped: files whose name is not an NTU sample name, or duplicates.
  """

  splits: dict[str, list[pathlib.Path]]
  excluded: list[str]
  ignored: int
  skipped: list[SkippedFile]


def select_files(paths: Iterable[os.PathLike[str] | str],
                 config: NtuRgbdConfig) -> FileSelection:
  """Sorts `paths` into train/test by `config`'s rules; nothing is parsed."""
  missing = ntu.missing_samples(config.num_classes)
  splits = {TRAIN: [], TEST: []}
  excluded, skipped, ignored = [], [], 0
  seen = {}
  for path in paths:
    path = pathlib.Path(path)
    try:
      sample = ntu.parse_sample_name(path.name)
    except ValueError as e:
      skipped.append(SkippedFile(str(path), f'bad sample name: {e}'))
      continue
    if not 1 <= sample.action <= config.num_classes:
      ignored += 1
      continue
    if sample.name in missing:
      excluded.append(sample.name)
      continue
    if sample.name in seen:
      # Two copies of one sample would give one key twice; keep the first.
      skipped.append(
          SkippedFile(str(path), f'duplicate of {seen[sample.name]}'))
      continue
    seen[sample.name] = path
    splits[split_of(sample, config)].append(path)
  return FileSelection(splits=splits, excluded=sorted(excluded),
                       ignored=ignored, skipped=skipped)


@dataclasses.dataclass
class BuildReport:
  """Filled in by `NtuRgbd` while it prepares the dataset."""

  num_files: int = 0  # `.skeleton` files found under the manual dir
  num_parsed: int = 0  # files handed to the parser (records + parse failures)
  excluded: list[str] = dataclasses.field(default_factory=list)
  ignored: int = 0
  skipped: list[SkippedFile] = dataclasses.field(default_factory=list)


# ---- Parsing, in worker processes --------------------------------------------


def skip_reason(error: Exception) -> str:
  """How a summary reports a file that failed to parse."""
  if isinstance(error, skeleton_lib.SkeletonFormatError):
    where = f'line {error.line}: ' if error.line is not None else ''
    return f'{type(error).__name__}: {where}{error.reason}'
  return f'{type(error).__name__}: {error}'


def parse_files(paths: Sequence[str], pool=None, chunk_size: int = 32,
                window: int = 4, preprocessing: str = '2s-agcn',
                ) -> Iterator[tuple[str, np.ndarray | None, str | None]]:
  """Yields (path, skeleton, None) or (path, None, reason), in path order.

  `skeleton` is `preprocess_skeleton(path, preprocessing)`: float32 (T, 2,
  25, 3). With a `pool`, files go to it in chunks of `chunk_size`, `window`
  chunks ahead. Any error becomes a reason, so one bad file never stops a
  build.
  """
  parse = functools.partial(preprocess.preprocess_skeleton,
                            preprocessing=preprocessing)
  if pool is None:
    for path in paths:
      try:
        yield path, parse(path), None
      except Exception as e:  # pylint: disable=broad-except
        yield path, None, skip_reason(e)
    return
  # Tasks call `preprocess_skeleton` itself, so workers import only the numpy
  # parser. A chunk is one message each way (per-file messages cost the main
  # process ~0.5 ms more a file, in thread wake-ups); a chunk with a bad file
  # fails as a whole and is parsed again file by file to tell which one.
  chunks = (paths[i:i + chunk_size] for i in range(0, len(paths), chunk_size))
  submit = lambda chunk: (chunk, pool.map_async(
      parse, chunk, chunksize=len(chunk)))
  pending = collections.deque(map(submit, itertools.islice(chunks, window)))
  while pending:
    chunk, result = pending.popleft()
    pending.extend(map(submit, itertools.islice(chunks, 1)))
    try:
      skeletons = result.get()
    except Exception:  # pylint: disable=broad-except
      singles = [(path, pool.apply_async(parse, (path,))) for path in chunk]
      for path, single in singles:
        try:
          yield path, single.get(), None
        except Exception as e:  # pylint: disable=broad-except
          yield path, None, skip_reason(e)
      continue
    yield from ((path, x, None) for path, x in zip(chunk, skeletons))


def worker_pool(num_workers: int):
  """A process pool for `parse_files`, with the parser imported once.

  A forkserver keeps workers safe when the parent already runs threads (JAX,
  progress bars); preloading the parser makes each worker cheap to start.
  """
  if 'forkserver' in multiprocessing.get_all_start_methods():
    context = multiprocessing.get_context('forkserver')
    context.set_forkserver_preload([preprocess.__name__])
  else:
    context = multiprocessing.get_context('spawn')
  return context.Pool(num_workers)


@contextlib.contextmanager
def shuffle_buffer_in_memory():
  """Keeps TFDS's shuffle buffer in memory for the whole split.

  Above 1 GiB TFDS spills the buffer to temporary files through `tf.io.gfile`,
  which needs TensorFlow. NTU training splits are 1.5-3 GiB of records, so
  the build holds one split in memory instead (a few GiB of RAM).
  """
  limit = tfds_shuffle.MAX_MEM_BUFFER_SIZE
  tfds_shuffle.MAX_MEM_BUFFER_SIZE = 1 << 62
  try:
    yield
  finally:
    tfds_shuffle.MAX_MEM_BUFFER_SIZE = limit


class SnappyArrayRecordWriter(tfds_writer.ExampleWriter):
  """Writes array_record shards compressed with snappy.

  TFDS's default (zstd:3) takes ~10x longer to write a record (~0.8 ms of the
  build's main process) and ~1.7x longer to read it (the input pipeline) for
  files ~10% smaller. Readers take the compression from the file header.
  """

  def __init__(self):
    super().__init__(file_format=tfds.core.FileFormat.ARRAY_RECORD)

  def write(self, path, examples):
    # Random access (tfds.data_source) needs one record per group.
    writer = array_record_module.ArrayRecordWriter(
        os.fspath(path), 'group_size:1,snappy')
    for _, serialized in examples:
      writer.write(serialized)
    writer.close()


# ---- The builder -------------------------------------------------------------

_CITATION = r"""
@inproceedings{shahroudy2016ntu,
  title={{NTU RGB+D}: A Large Scale Dataset for {3D} Human Activity Analysis},
  author={Shahroudy, Amir and Liu, Jun and Ng, Tian-Tsong and Wang, Gang},
  booktitle={CVPR},
  year={2016}
}
@article{liu2020ntu,
  title={{NTU RGB+D 120}: A Large-Scale Benchmark for {3D} Human Activity
         Understanding},
  author={Liu, Jun and Shahroudy, Amir and Perez, Mauricio and Wang, Gang and
          Duan, Ling-Yu and Kot, Alex C.},
  journal={IEEE TPAMI},
  year={2020}
}
"""


class NtuRgbd(tfds.core.GeneratorBasedBuilder):
  """NTU RGB+D 60/120 skeleton sequences (Kinect v2, 25 joints, 2 persons)."""

  VERSION = tfds.core.Version('2.0.0')
  RELEASE_NOTES = {
      '1.0.0': 'Initial release.',
      '2.0.0': ('The benchmark configs are preprocessed exactly as 2s-AGCN '
                'does (bodies in slots by their place in each frame, each '
                'person repeated on its own to 300 frames; records hold a '
                'whole period of that sample); the 1.0.0 records, bodies '
                'followed by tracking ID, are the `*_tracked` configs.'),
  }
  BUILDER_CONFIGS = list(BUILDER_CONFIGS)
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Request the skeleton archives at
  https://rose1.ntu.edu.sg/dataset/actionRecognition/
  (nturgbd_skeletons_s001_to_s017.zip; for the NTU-120 configs also
  nturgbd_skeletons_s018_to_s032.zip) and unzip them anywhere below the manual
  dir: `.skeleton` files are found recursively.
  """

  def __init__(self, *, num_workers: int | None = None, file_format=None,
               **kwargs):
    """Like any TFDS builder, plus the number of parsing processes.

    Args:
      num_workers: processes parsing `.skeleton` files (None: all cores; 1:
        parse in this process).
      file_format: defaults to array_record, which the input pipeline reads.
      **kwargs: forwarded to `tfds.core.GeneratorBasedBuilder`.
    """
    super().__init__(file_format=file_format or 'array_record', **kwargs)
    self.num_workers = num_workers or os.cpu_count() or 1
    self.report = BuildReport()
    self._pool = None

  def _info(self) -> tfds.core.DatasetInfo:
    num_classes = self.builder_config.num_classes
    return tfds.core.DatasetInfo(
        builder=self,
        description=(
            'Skeleton sequences of NTU RGB+D (60 actions) and NTU RGB+D 120, '
            'normalised as in 2s-AGCN (centred on the spine, rotated to a '
            'canonical view), two persons, 25 Kinect v2 joints; repeated to '
            'the training length when read.'),
        features=tfds.features.FeaturesDict({
            # Raw bytes: a float list would cost more to write and to read.
            'skeleton': tfds.features.Tensor(
                shape=(None, 2, 25, 3), dtype=np.float32,
                encoding=tfds.features.Encoding.BYTES),
            'label': tfds.features.ClassLabel(
                names=ntu.ACTION_NAMES[:num_classes]),
            'name': tfds.features.Text(),
            'setup': np.int32,
            'camera': np.int32,
            'subject': np.int32,
            'replication': np.int32,
            'num_frames': np.int32,
        }),
        supervised_keys=('skeleton', 'label'),
        homepage='https://rose1.ntu.edu.sg/dataset/actionRecognition/',
        citation=_CITATION,
    )

  def _example_writer(self) -> tfds_writer.ExampleWriter:
    if self.info.file_format == tfds.core.FileFormat.ARRAY_RECORD:
      return SnappyArrayRecordWriter()
    return super()._example_writer()

  def _download_and_prepare(self, dl_manager, download_config):
    self.report = BuildReport()
    with contextlib.ExitStack() as stack:
      stack.enter_context(shuffle_buffer_in_memory())
      if self.num_workers > 1:
        self._pool = stack.enter_context(worker_pool(self.num_workers))
      try:
        super()._download_and_prepare(dl_manager, download_config)
      finally:
        self._pool = None

  def _split_generators(self, dl_manager):
    root = dl_manager.manual_dir
    paths = find_skeleton_files(root)
    if not paths:
      raise FileNotFoundError(
          f'no .skeleton files under {root}.'
          + self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    selection = select_files(paths, self.builder_config)
    self.report.num_files = len(paths)
    self.report.excluded = selection.excluded
    self.report.ignored = selection.ignored
    self.report.skipped.extend(selection.skipped)
    for skipped in selection.skipped:
      logging.info('Skipping %s: %s', skipped.path, skipped.reason)
    for split, split_paths in selection.splits.items():
      if not split_paths:
        raise ValueError(
            f'no file under {root} belongs to the {split} split of '
            f'ntu_rgbd/{self.builder_config.name} '
            f'({self.builder_config.description})')
    return {
        split: self._generate_examples(split, [str(p) for p in split_paths])
        for split, split_paths in selection.splits.items()}

  def _generate_examples(self, split, paths):
    num_records, reasons = 0, []
    for path, skeleton, reason in parse_files(
        paths, self._pool, window=2 * self.num_workers,
        preprocessing=self.builder_config.preprocessing):
      self.report.num_parsed += 1
      if reason is not None:
        logging.info('Skipping %s: %s', path, reason)
        self.report.skipped.append(SkippedFile(path, reason))
        reasons.append(reason)
        continue
      sample = ntu.parse_sample_name(path)
      num_records += 1
      yield sample.name, {
          'skeleton': skeleton,
          'label': sample.action - 1,
          'name': sample.name,
          'setup': sample.setup,
          'camera': sample.camera,
          'subject': sample.subject,
          'replication': sample.replication,
          'num_frames': skeleton.shape[0],
      }
    if not num_records:
      raise ValueError(
          f'none of the {len(paths)} files of the {split} split could be '
          f'parsed; first reasons: {reasons[:3]}')
