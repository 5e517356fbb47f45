"""TFDS builder `pose_annotations`: PYSKL/MMAction2 pickles and OpenPose JSON.

Configs `<layout>_<kind>` for layout in `LAYOUTS` and kind in
`annotations.KINDS` (e.g. `coco17_2d`), and `custom_<kind>` for any other
skeleton, whose `layout.json` (`layouts.read_layout_file`) lies beside the
annotation file: '3d' holds x, y, z as given (or normalised: `Normalization`);
'2d' x, y normalised to [-1, 1] by the frame size and the detector's score;
'2d_xy' x, y only (see `annotations`). Records are written as ntu_rgbd's are
(array_record, snappy, no TensorFlow) and read with `tfds.data_source`.

Manual dir: either one `.pkl` annotation file (`annotations.
load_annotation_file`; splits are the file's `split` names), or an OpenPose
JSON tree `<split>/<class>/<clip>/*_keypoints.json` (`openpose.read_tree`;
2D layouts 'openpose18' and 'coco17' only). An optional `classes.txt` beside
them names the classes, one a line, in label order; without it the names are
'class_<label>' (a pickle) or the sorted class folder names (a tree).

One record per sample: `skeleton` float32 (T, M, V, C) from `annotations.
to_sample`, `label`, `name` (the frame_dir), `num_frames` (= T). M is the most
persons an annotation of the file has (an OpenPose clip: the 2 people seen
most), or `max_persons` if fewer; a sample with fewer is padded with zeros.
The dataset info's metadata holds what the records are: the layout (and a
custom one's joints and bones: `custom_layout`), the channels
(`preprocess.CHANNELS`), M (`num_persons`) and the 3D normalisation
(`preprocessing`, null for keypoints as given).
Annotations that cannot be used are skipped and reported (`BuildReport`),
never fatal, unless no record at all is left.
"""

from __future__ import annotations

import collections
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
Normalization = annotations_lib.Normalization
LAYOUTS = tuple(layouts.LAYOUTS)
CUSTOM = 'custom'  # the configs of a layout file: custom_<kind>
CLASSES_FILE = 'classes.txt'


@dataclasses.dataclass(eq=False)
class PoseAnnotationsConfig(tfds.core.BuilderConfig):
  """One layout and kind.

  Attributes:
    layout: a `layouts` key (V), or None: the manual dir's layout.json.
    kind: one of `annotations.KINDS` (C and what the channels hold).
  """

  layout: str | None = 'coco17'
  kind: str = '2d'

  @property
  def channels(self) -> str:
    return annotations_lib.CHANNELS[self.kind]


BUILDER_CONFIGS = tuple(
    PoseAnnotationsConfig(
        name=f'{layout}_{kind}', layout=layout, kind=kind,
        description=f'{layout} keypoints, kind {kind!r} (channels '
                    f'{annotations_lib.CHANNELS[kind]}).')
    for layout in LAYOUTS for kind in annotations_lib.KINDS) + tuple(
        PoseAnnotationsConfig(
            name=f'{CUSTOM}_{kind}', layout=None, kind=kind,
            description=f'keypoints of the skeleton in {layouts.LAYOUT_FILE}, kind '
                        f'{kind!r} (channels {annotations_lib.CHANNELS[kind]}).')
        for kind in annotations_lib.KINDS)

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
  layout: layouts.Layout
  # Where the layout comes from, for messages: its layout.json's path, or ''.
  layout_source: str = ''


def _check_joint_count(source: Source, where: str) -> None:
  """AnnotationError naming the layout's source unless some annotation has its V."""
  counts = collections.Counter(
      np.shape(a['keypoint'])[2] for a in source.data['annotations']
      if isinstance(a, collections.abc.Mapping) and np.ndim(a.get('keypoint')) == 4)
  v = source.layout.num_joints
  if counts and v not in counts:
    theirs = counts.most_common(1)[0][0]
    if source.layout_source:
      raise AnnotationError(f'{source.layout_source}: {v} joints, but the keypoints of '
                            f'{where} have {theirs}')
    raise AnnotationError(
        f'layout {source.layout.name!r} has {v} joints, but the keypoints of {where} have '
        f'{theirs}; build with the config of their layout, or a {CUSTOM}_* config and a '
        f'{layouts.LAYOUT_FILE} naming their joints')


def read_manual_dir(root: pathlib.Path, layout: str | None,
                    max_persons: int | None = None) -> Source:
  """The one `.pkl` under `root`, or its OpenPose tree, classes.txt and, for
  `layout` None, layout.json."""
  classes_path = root / CLASSES_FILE
  class_names = (annotations_lib.read_class_names(classes_path)
                 if classes_path.is_file() else None)
  if layout is None:
    layout_path = root / layouts.LAYOUT_FILE
    if not layout_path.is_file():
      raise FileNotFoundError(
          f'{layout_path} not found: the {CUSTOM}_* configs read the skeleton from a '
          f'{layouts.LAYOUT_FILE} beside the annotation file')
    skeleton, where = layouts.read_layout_file(layout_path), str(layout_path)
  else:
    skeleton, where = layouts.get_layout(layout), ''
  pickles = sorted(p for p in root.glob('*.pkl') if p.is_file())
  if len(pickles) > 1:
    raise AnnotationError(
        f'{root}: holds {len(pickles)} .pkl files '
        f'({", ".join(p.name for p in pickles[:3])}...); give a folder with one')
  if pickles:
    source = Source(annotations_lib.load_annotation_file(pickles[0]),
                    class_names, [], skeleton, where)
    _check_joint_count(source, str(pickles[0]))
    return source
  if not any(root.glob('*/*/*/*.json')):
    raise FileNotFoundError(
        f'no .pkl annotation file and no OpenPose tree '
        f'(<split>/<class>/<clip>/*.json) in {root}')
  if layout not in openpose.LAYOUTS:
    raise AnnotationError(
        f'{root}: OpenPose keypoints give the layouts {openpose.LAYOUTS}, not '
        f'{skeleton.name!r}')
  data, class_names, skipped = openpose.read_tree(
      root, layout, class_names, max_persons=max_persons or preprocess.NUM_PERSONS)
  return Source(data, class_names, skipped, skeleton, where)


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

  def __init__(self, *, file_format=None, max_persons: int | None = None,
               normalization: Normalization | None = None, **kwargs):
    """Like any TFDS builder; `file_format` defaults to array_record.

    Args:
      max_persons: keep at most this many persons a sample (None: the most
        any annotation has).
      normalization: for the '3d' configs, how to normalise the keypoints
        (None: as given).
    """
    if max_persons is not None and max_persons < 1:
      raise ValueError(f'max_persons={max_persons} must be at least 1')
    self.max_persons, self.normalization = max_persons, normalization
    self._conversion = {}  # to_sample's layout, persons and normalisation
    super().__init__(file_format=file_format or 'array_record', **kwargs)
    if normalization is not None and self.builder_config.kind != '3d':
      raise ValueError(f'a 3D normalisation needs a *_3d config, not '
                       f'{self.builder_config.name!r}')
    self.report = BuildReport()

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    num_joints = (None if config.layout is None
                  else layouts.get_layout(config.layout).num_joints)
    channels = len(config.channels)
    return tfds.core.DatasetInfo(
        builder=self,
        description=(
            'Skeleton sequences read from a PYSKL/MMAction2 annotation file '
            'or OpenPose JSON: the joints of one layout; 2D coordinates '
            'normalised to [-1, 1] by the frame size.'),
        features=tfds.features.FeaturesDict({
            # (T, M, V, C): M (and V of a layout file) are the data's, in the
            # metadata; TFDS stores each record's shape beside its bytes.
            'skeleton': tfds.features.Tensor(
                shape=(None, None, num_joints, channels),
                dtype=np.float32, encoding=tfds.features.Encoding.BYTES),
            # The names come from the manual dir (`_split_generators`); a
            # built dataset reads them back from its own files.
            'label': tfds.features.ClassLabel(),
            'name': tfds.features.Text(),
            'num_frames': np.int32,
        }),
        supervised_keys=('skeleton', 'label'),
        homepage='https://github.com/kennymckormick/pyskl',
        # Filled in from the manual dir (`_split_generators`); a built
        # dataset reads them back from its own files.
        metadata=tfds.core.MetadataDict(
            layout=config.layout, custom_layout=None, channels=config.channels,
            num_persons=None, preprocessing=None),
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
    source = read_manual_dir(root, config.layout, self.max_persons)
    layout = source.layout
    normalization = (self.normalization.for_layout(layout)
                     if self.normalization is not None else None)
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
    good, labels, persons = {}, [], 1
    for annotation in source.data['annotations']:
      name = (annotation.get('frame_dir')
              if isinstance(annotation, collections.abc.Mapping) else None)
      if not isinstance(name, str) or name in good:
        continue  # already reported by select_annotations
      self.report.num_parsed += 1
      try:
        sample = annotations_lib.to_sample(annotation, layout, config.kind, None,
                                           num_classes=num_classes)
        good[name] = True
        labels.append(annotations_lib.check_label(annotation))
        persons = max(persons, sample.shape[1])
      except AnnotationError as e:
        good[name] = False
        self._skip(Skipped(name, str(e).removeprefix(f'{name}: ')))
    names = source.class_names or annotations_lib.default_class_names(labels)
    self.info.features['label'].names = names
    name, custom = layouts.custom_fields(layout)
    self._conversion = dict(
        layout=layout, num_persons=min(persons, self.max_persons or persons),
        normalization=normalization)
    self.info.metadata.update(
        layout=name, custom_layout=custom, num_persons=self._conversion['num_persons'],
        preprocessing=normalization and normalization.spec)
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
      skeleton = annotations_lib.to_sample(annotation, kind=config.kind,
                                           **self._conversion)
      name = annotation['frame_dir']
      yield name, {
          'skeleton': skeleton,
          'label': annotations_lib.check_label(annotation),
          'name': name,
          'num_frames': skeleton.shape[0],
      }
