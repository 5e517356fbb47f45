"""TFDS builder `pose_annotations`: PYSKL/MMAction2 pickles and OpenPose JSON.

Configs `<layout>_<kind>` for layout in `LAYOUTS` and kind in
`annotations.KINDS` (e.g. `coco17_2d`): '3d' holds x, y, z as given; '2d' x,
y normalised to [-1, 1] by the frame size and the detector's score; '2d_xy'
x, y only (see `annotations`). Records are written as ntu_rgbd's are
(array_record, snappy, no TensorFlow) and read with `tfds.data_source`.

Manual dir: either one `.pkl` annotation file (`annotations.
load_annotation_file`; splits are the file's `split` names), or an OpenPose
JSON tree `<split>/<class>/<clip>/*_keypoints.json` (`openpose.read_tree`;
2D layouts 'openpose18' and 'coco17' only). An optional `classes.txt` beside
them names the classes, one a line, in label order; without it the names are
'class_<label>' (a pickle) or the sorted class folder names (a tree).

One record per sample: `skeleton` float32 (T, 2, V, C) from `annotations.
to_sample`, `label`, `name` (the frame_dir), `num_frames` (= T). The dataset
info's metadata holds the layout and the channels (`preprocess.CHANNELS`).
Annotations that cannot be used are skipped and reported (`BuildReport`),
never fatal, unless no record at all is left.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import pathlib

from absl import logging
import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.core import writer as tfds_writer

from stbln_jax.data import annotations as annotations_lib
from stbln_jax.data import layouts
from stbln_jax.data import ntu_rgbd
from stbln_jax.data import openpose
from stbln_jax.data import preprocess

AnnotationError = annotations_lib.AnnotationError
Skipped = annotations_lib.Skipped
LAYOUTS = tuple(layouts.LAYOUTS)
CLASSES_FILE = 'classes.txt'


@dataclasses.dataclass(eq=False)
class PoseAnnotationsConfig(tfds.core.BuilderConfig):
  """One layout and kind.

  Attributes:
    layout: a `layouts` key (V).
    kind: one of `annotations.KINDS` (C and what the channels hold).
  """

  layout: str = 'coco17'
  kind: str = '2d'

  @property
  def channels(self) -> str:
    return annotations_lib.CHANNELS[self.kind]


BUILDER_CONFIGS = tuple(
    PoseAnnotationsConfig(
        name=f'{layout}_{kind}', layout=layout, kind=kind,
        description=f'{layout} keypoints, kind {kind!r} (channels '
                    f'{annotations_lib.CHANNELS[kind]}).')
    for layout in LAYOUTS for kind in annotations_lib.KINDS)

_CONFIGS_BY_NAME = {c.name: c for c in BUILDER_CONFIGS}


def get_config(name: str) -> PoseAnnotationsConfig:
  """The builder config `name`, e.g. 'coco17_2d'."""
  try:
    return _CONFIGS_BY_NAME[name]
  except KeyError:
    raise ValueError(f'unknown pose_annotations config {name!r}; expected one of '
                     f'{sorted(_CONFIGS_BY_NAME)}') from None


@dataclasses.dataclass
class BuildReport:
  """Filled in by `PoseAnnotations` while it prepares the dataset."""

  num_files: int = 0  # annotations (or OpenPose clips) found
  num_parsed: int = 0  # distinct annotations converted (good + failed)
  ignored: int = 0  # annotations listed in no split
  skipped: list[Skipped] = dataclasses.field(default_factory=list)
  # Splits that give no records (no good annotation, a bad name), and why.
  splits_left_out: list[Skipped] = dataclasses.field(default_factory=list)
  excluded: list[str] = dataclasses.field(default_factory=list)  # always empty


@dataclasses.dataclass
class Source:
  """What a manual dir holds, read and sorted, before any conversion."""

  data: dict  # {'split', 'annotations'}
  class_names: list[str] | None
  skipped: list[Skipped]  # clips that gave no annotation (OpenPose)


def read_manual_dir(root: pathlib.Path, layout: str) -> Source:
  """The one `.pkl` under `root`, or its OpenPose tree, and classes.txt."""
  classes_path = root / CLASSES_FILE
  class_names = (annotations_lib.read_class_names(classes_path)
                 if classes_path.is_file() else None)
  pickles = sorted(p for p in root.glob('*.pkl') if p.is_file())
  if len(pickles) > 1:
    raise AnnotationError(
        f'{root}: holds {len(pickles)} .pkl files '
        f'({", ".join(p.name for p in pickles[:3])}...); give a folder with one')
  if pickles:
    return Source(annotations_lib.load_annotation_file(pickles[0]),
                  class_names, [])
  if not any(root.glob('*/*/*/*.json')):
    raise FileNotFoundError(
        f'no .pkl annotation file and no OpenPose tree '
        f'(<split>/<class>/<clip>/*.json) in {root}')
  if layout not in openpose.LAYOUTS:
    raise AnnotationError(
        f'{root}: OpenPose keypoints give the layouts {openpose.LAYOUTS}, not '
        f'{layout!r}')
  data, class_names, skipped = openpose.read_tree(root, layout, class_names)
  return Source(data, class_names, skipped)


class PoseAnnotations(tfds.core.GeneratorBasedBuilder):
  """Skeleton sequences from PYSKL/MMAction2 annotation files or OpenPose."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = list(BUILDER_CONFIGS)
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Place one PYSKL/MMAction2 annotation pickle (e.g. ntu60_2d.pkl from
  https://download.openmmlab.com/mmaction/v1.0/skeleton/data/), or an OpenPose
  JSON tree <split>/<class>/<clip>/*_keypoints.json, in the manual dir, with
  an optional classes.txt (one class name a line, in label order).
  """

  def __init__(self, *, file_format=None, **kwargs):
    """Like any TFDS builder; `file_format` defaults to array_record."""
    super().__init__(file_format=file_format or 'array_record', **kwargs)
    self.report = BuildReport()

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    num_joints = layouts.get_layout(config.layout).num_joints
    channels = len(config.channels)
    return tfds.core.DatasetInfo(
        builder=self,
        description=(
            'Skeleton sequences read from a PYSKL/MMAction2 annotation file '
            'or OpenPose JSON: two persons, the joints of one layout; 2D '
            'coordinates normalised to [-1, 1] by the frame size.'),
        features=tfds.features.FeaturesDict({
            'skeleton': tfds.features.Tensor(
                shape=(None, preprocess.NUM_PERSONS, num_joints, channels),
                dtype=np.float32, encoding=tfds.features.Encoding.BYTES),
            # The names come from the manual dir (`_split_generators`); a
            # built dataset reads them back from its own files.
            'label': tfds.features.ClassLabel(),
            'name': tfds.features.Text(),
            'num_frames': np.int32,
        }),
        supervised_keys=('skeleton', 'label'),
        homepage='https://github.com/kennymckormick/pyskl',
        metadata=tfds.core.MetadataDict(layout=config.layout,
                                        channels=config.channels),
    )

  def _example_writer(self) -> tfds_writer.ExampleWriter:
    if self.info.file_format == tfds.core.FileFormat.ARRAY_RECORD:
      return ntu_rgbd.SnappyArrayRecordWriter()
    return super()._example_writer()

  def _download_and_prepare(self, dl_manager, download_config):
    self.report = BuildReport()
    with ntu_rgbd.shuffle_buffer_in_memory():
      super()._download_and_prepare(dl_manager, download_config)

  def _skip(self, skipped: Skipped):
    logging.info('Skipping %s: %s', skipped.path, skipped.reason)
    self.report.skipped.append(skipped)

  def _split_generators(self, dl_manager):
    root = pathlib.Path(dl_manager.manual_dir)
    config = self.builder_config
    source = read_manual_dir(root, config.layout)
    selection = annotations_lib.select_annotations(source.data)
    self.report.num_files = (len(source.data['annotations'])
                             + len(source.skipped))
    self.report.ignored = selection.ignored
    self.report.splits_left_out.extend(selection.splits_left_out)
    for skipped in source.skipped + selection.skipped:
      self._skip(skipped)
    num_classes = (len(source.class_names) if source.class_names is not None
                   else None)
    # Every annotation is checked once here, so that the label names are
    # known before writing and a split left with no record is left out.
    good, labels = {}, []
    for annotation in source.data['annotations']:
      name = (annotation.get('frame_dir')
              if isinstance(annotation, collections.abc.Mapping) else None)
      if not isinstance(name, str) or name in good:
        continue  # already reported by select_annotations
      self.report.num_parsed += 1
      try:
        annotations_lib.to_sample(annotation, config.layout, config.kind,
                                  num_classes=num_classes)
        good[name] = True
        labels.append(annotations_lib.check_label(annotation))
      except AnnotationError as e:
        good[name] = False
        self._skip(Skipped(name, str(e).removeprefix(f'{name}: ')))
    names = source.class_names or annotations_lib.default_class_names(labels)
    self.info.features['label'].names = names
    splits = {}
    for split, members in selection.splits.items():
      members = [a for a in members if good[a['frame_dir']]]
      if members:
        splits[split] = members
      else:
        self.report.splits_left_out.append(
            Skipped(split, 'no annotation of it gave a record'))
    for left_out in self.report.splits_left_out:
      logging.info('Leaving out split %s: %s', left_out.path, left_out.reason)
    if not splits:
      reasons = [f'{s.path}: {s.reason}' for s in self.report.skipped[:3]]
      raise AnnotationError(
          f'no annotation in {root} gives a record for pose_annotations/'
          f'{config.name}; first reasons: {reasons}')
    return {split: self._generate_examples(members)
            for split, members in splits.items()}

  def _generate_examples(self, members):
    config = self.builder_config
    for annotation in members:
      skeleton = annotations_lib.to_sample(annotation, config.layout,
                                           config.kind)
      name = annotation['frame_dir']
      yield name, {
          'skeleton': skeleton,
          'label': annotations_lib.check_label(annotation),
          'name': name,
          'num_frames': skeleton.shape[0],
      }
