"""TFDS builder `nw_ucla`: Northwestern-UCLA Multiview Action 3D skeletons.

1,484 clips of 10 people doing 10 actions, filmed by three Kinect v1 cameras at
once: one person, 20 joints (layout 'kinect20'), x y z in metres. The files are
the json form that CTR-GCN and its successors distribute as `all_sqe/`, one a
clip, `aAA_sSS_eEE_vVV.json` (action, subject, repetition, view):

  {"file_name": "a01_s01_e00_v01", "skeletons": [T][20][3], "label": 1}

Config `xview` (the default, so `nw_ucla` names it too): the cross-view protocol,
training on views 1 and 2 (1,020 clips), testing on view 3 (464).

One record per clip, as recorded: `skeleton` float32 (T, 1, 20, 3), `label`
(the action's place in `ACTIONS`), `name`, `subject`, `view`, `repetition`,
`num_frames` (= T, 1 to 201). The dataset info's metadata holds the layout and
the channels. CTR-GCN's per-clip normalisation is the input pipeline's
(`config.center_joint`, `config.normalization`, configs/ucla.py).

Manual dir: the json files anywhere below it (found recursively). A file that is
not valid JSON, has no frames, another shape or non-finite values, or whose name
or label is not one of the benchmark's, is reported and skipped.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
from typing import Iterable

from absl import logging
import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.core import writer as tfds_writer

from stbln_jax.data import layouts
from stbln_jax.data import ntu_rgbd

TRAIN = 'train'
TEST = 'test'
LAYOUT = 'kinect20'
CHANNELS = 'xyz'
NUM_JOINTS = layouts.KINECT20.num_joints
# The benchmark's actions by NW-UCLA action id; a clip's label is its place here
# (the files' own 'label' is that place + 1). Actions 7 and 10 are not in it.
ACTIONS = {
    1: 'pick up with one hand', 2: 'pick up with two hands', 3: 'drop trash',
    4: 'walk around', 5: 'sit down', 6: 'stand up', 8: 'donning',
    9: 'doffing', 11: 'throw', 12: 'carry',
}
ACTION_NAMES = tuple(ACTIONS.values())
_LABELS = {action: label for label, action in enumerate(ACTIONS)}
_NAME = re.compile(r'^a(\d\d)_s(\d\d)_e(\d\d)_v(\d\d)$')


@dataclasses.dataclass(eq=False)
class NwUclaConfig(tfds.core.BuilderConfig):
  """One protocol: the views it trains on (the others test).

  Attributes:
    train_views: camera views (1-3) of the training split.
  """

  train_views: tuple[int, ...] = (1, 2)
  layout: str = LAYOUT
  channels: str = CHANNELS


BUILDER_CONFIGS = (
    NwUclaConfig(name='xview', train_views=(1, 2),
                 description='Cross-view: train views 1, 2; test view 3.'),)
_CONFIGS_BY_NAME = {c.name: c for c in BUILDER_CONFIGS}


def get_config(name: str) -> NwUclaConfig:
  """The builder config `name` ('xview'; '' is the default, 'xview')."""
  try:
    return _CONFIGS_BY_NAME[name or BUILDER_CONFIGS[0].name]
  except KeyError:
    raise ValueError(f'unknown nw_ucla config {name!r}; expected one of '
                     f'{sorted(_CONFIGS_BY_NAME)}') from None


@dataclasses.dataclass(frozen=True)
class ClipName:
  """The parts of a clip's name, e.g. 'a01_s02_e03_v01'."""

  name: str
  action: int
  subject: int
  repetition: int
  view: int

  @property
  def label(self) -> int:
    return _LABELS[self.action]


def parse_clip_name(filename: str) -> ClipName:
  """The clip of a file name ('a01_s02_e03_v01.json'), or ValueError saying why."""
  name = pathlib.Path(filename).name.removesuffix('.json')
  match = _NAME.match(name)
  if not match:
    raise ValueError(f'{name!r} is not aAA_sSS_eEE_vVV')
  clip = ClipName(name, *map(int, match.groups()))
  if clip.action not in ACTIONS:
    raise ValueError(f'action {clip.action} is not one of the benchmark '
                     f'{sorted(ACTIONS)}')
  if not 1 <= clip.view <= 3:
    raise ValueError(f'view {clip.view} is not 1, 2 or 3')
  return clip


def read_clip(path: os.PathLike[str] | str) -> np.ndarray:
  """The clip of a json file as float32 (T, 1, 20, 3), or ValueError saying why
  it cannot be used (OSError if it cannot be read)."""
  with open(path, encoding='utf-8') as f:
    try:
      data = json.load(f)
    except ValueError as e:  # json.JSONDecodeError, UnicodeDecodeError
      raise ValueError(f'not valid JSON ({e})') from e
  if not isinstance(data, dict) or 'skeletons' not in data:
    raise ValueError("not an object with 'skeletons'")
  clip = parse_clip_name(path)
  label = data.get('label')
  if label != clip.label + 1:
    raise ValueError(f'label {label!r}, but action {clip.action} is label '
                     f'{clip.label + 1}')
  try:
    skeletons = np.asarray(data['skeletons'], np.float64)
  except (TypeError, ValueError) as e:
    raise ValueError(f'skeletons are not a (T, {NUM_JOINTS}, 3) array of '
                     f'numbers ({e})') from e
  if skeletons.size == 0:
    raise ValueError('no frames')
  if skeletons.ndim != 3 or skeletons.shape[1:] != (NUM_JOINTS, 3):
    raise ValueError(f'skeletons of shape {skeletons.shape}, expected '
                     f'(T, {NUM_JOINTS}, 3)')
  if not np.isfinite(skeletons).all():
    raise ValueError('skeletons hold NaN or infinite values')
  return skeletons.astype(np.float32)[:, None]


def find_clip_files(root: os.PathLike[str] | str) -> list[pathlib.Path]:
  """Every `*.json` file below `root` (recursively), sorted by path."""
  return sorted(p for p in pathlib.Path(root).rglob('*.json') if p.is_file())


@dataclasses.dataclass
class BuildReport:
  """Filled in by `NwUcla` while it prepares the dataset."""

  num_files: int = 0  # json files found under the manual dir
  num_parsed: int = 0  # files read (records + failures)
  ignored: int = 0  # always 0: every view belongs to a split
  skipped: list[ntu_rgbd.SkippedFile] = dataclasses.field(default_factory=list)
  excluded: list[str] = dataclasses.field(default_factory=list)  # always empty


def select_files(paths: Iterable[pathlib.Path], config: NwUclaConfig
                 ) -> tuple[dict[str, list[pathlib.Path]],
                            list[ntu_rgbd.SkippedFile]]:
  """The files of each split by their names, and those skipped (bad names,
  duplicates); nothing is read."""
  splits, skipped, seen = {TRAIN: [], TEST: []}, [], {}
  for path in paths:
    try:
      clip = parse_clip_name(path.name)
    except ValueError as e:
      skipped.append(ntu_rgbd.SkippedFile(str(path), f'bad clip name: {e}'))
      continue
    if clip.name in seen:
      skipped.append(ntu_rgbd.SkippedFile(str(path),
                                          f'duplicate of {seen[clip.name]}'))
      continue
    seen[clip.name] = path
    splits[TRAIN if clip.view in config.train_views else TEST].append(path)
  return splits, skipped


_CITATION = r"""
@inproceedings{wang2014cross,
  title={Cross-view Action Modeling, Learning and Recognition},
  author={Wang, Jiang and Nie, Xiaohan and Xia, Yin and Wu, Ying and Zhu,
          Song-Chun},
  booktitle={CVPR},
  year={2014}
}
"""


class NwUcla(tfds.core.GeneratorBasedBuilder):
  """NW-UCLA skeleton clips (Kinect v1, 20 joints, one person)."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = list(BUILDER_CONFIGS)
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Place the 1,484 json files of NW-UCLA's skeletons (`all_sqe/`, as distributed
  with CTR-GCN: data/NW-UCLA/all_sqe/) anywhere below the manual dir.
  """

  def __init__(self, *, file_format=None, **kwargs):
    """Like any TFDS builder; `file_format` defaults to array_record."""
    super().__init__(file_format=file_format or 'array_record', **kwargs)
    self.report = BuildReport()

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=(
            'Northwestern-UCLA Multiview Action 3D: Kinect v1 skeletons of one '
            'person, 20 joints, x y z in metres as recorded.'),
        features=tfds.features.FeaturesDict({
            'skeleton': tfds.features.Tensor(
                shape=(None, 1, NUM_JOINTS, 3), dtype=np.float32,
                encoding=tfds.features.Encoding.BYTES),
            'label': tfds.features.ClassLabel(names=ACTION_NAMES),
            'name': tfds.features.Text(),
            'subject': np.int32,
            'view': np.int32,
            'repetition': np.int32,
            'num_frames': np.int32,
        }),
        supervised_keys=('skeleton', 'label'),
        homepage='https://wangjiangb.github.io/my_data.html',
        citation=_CITATION,
        metadata=tfds.core.MetadataDict(layout=LAYOUT, channels=CHANNELS),
    )

  def _example_writer(self) -> tfds_writer.ExampleWriter:
    if self.info.file_format == tfds.core.FileFormat.ARRAY_RECORD:
      return ntu_rgbd.SnappyArrayRecordWriter()
    return super()._example_writer()

  def _download_and_prepare(self, dl_manager, download_config):
    self.report = BuildReport()
    super()._download_and_prepare(dl_manager, download_config)

  def _skip(self, path: str, reason: str):
    logging.info('Skipping %s: %s', path, reason)
    self.report.skipped.append(ntu_rgbd.SkippedFile(path, reason))

  def _split_generators(self, dl_manager):
    root = dl_manager.manual_dir
    paths = find_clip_files(root)
    if not paths:
      raise FileNotFoundError(f'no .json files under {root}.'
                              + self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    splits, skipped = select_files(paths, self.builder_config)
    self.report.num_files = len(paths)
    for s in skipped:
      self._skip(s.path, s.reason)
    for split, split_paths in splits.items():
      if not split_paths:
        raise ValueError(
            f'no file under {root} belongs to the {split} split of '
            f'nw_ucla/{self.builder_config.name} '
            f'({self.builder_config.description})')
    return {split: self._generate_examples(split, split_paths)
            for split, split_paths in splits.items()}

  def _generate_examples(self, split, paths):
    num_records, reasons = 0, []
    for path in paths:
      self.report.num_parsed += 1
      try:
        skeleton = read_clip(path)
      except (OSError, ValueError) as e:
        reason = f'{type(e).__name__}: {e}'
        self._skip(str(path), reason)
        reasons.append(reason)
        continue
      clip = parse_clip_name(path.name)
      num_records += 1
      yield clip.name, {
          'skeleton': skeleton,
          'label': clip.label,
          'name': clip.name,
          'subject': clip.subject,
          'view': clip.view,
          'repetition': clip.repetition,
          'num_frames': len(skeleton),
      }
    if not num_records:
      raise ValueError(
          f'none of the {len(paths)} files of the {split} split could be '
          f'read; first reasons: {reasons[:3]}')
