"""PYSKL/MMAction2 skeleton annotations: reading a pickle, checking one sample.

An annotation file is a pickled dict with two keys (the format of MMAction2's
`PoseDataset` and PYSKL):

  split        {split name: [frame_dir, ...]}; splits may share samples.
  annotations  [annotation, ...], each a dict with
                 frame_dir       str, the sample's name
                 total_frames    int, T
                 label           int, the class (0-based)
                 keypoint        float (M, T, V, C): C = 2 (x, y in pixels) or
                                 3 (x, y, z)
                 keypoint_score  float (M, T, V), 2D only (optional here
                                 except for kind '2d')
                 img_shape       (h, w) of the frames, 2D only (optional;
                                 default (1080, 1920))
               and whatever else (original_shape, ...), which is not read.

`to_sample` turns one annotation into a record's float32 (T, M, V, C) for one
layout (`layouts`: a registered one or a layout file's) and one kind (`KINDS`):

  '3d'     C = 3: x, y, z as given, or normalised (`Normalization`).
  '2d'     C = 3: x, y normalised to [-1, 1] by img_shape, then the score.
  '2d_xy'  C = 2: x, y normalised as for '2d'.

2D normalisation is PYSKL's `PreNormalize2D` ('fix' mode): x -> (x - w/2) /
(w/2), y -> (y - h/2) / (h/2), and a keypoint whose score is at most
`SCORE_THRESHOLD` (undetected) gets x = y = 0. 3D keypoints are kept as given
unless a `Normalization` centres them on a joint (in the first frame or in
every frame) and optionally turns them to 2s-AGCN's view. Persons: the
`num_persons` of highest total score (2D with scores) or of most motion
(`preprocess.motion_energy`: 3D, or 2D without scores) are kept, in that order;
fewer are padded with zeros.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import re
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from stbln_jax.data import layouts
from stbln_jax.data import preprocess

KINDS = ('3d', '2d', '2d_xy')
# The record's channels (`preprocess.CHANNELS`) of each kind.
CHANNELS = {'3d': 'xyz', '2d': 'xys', '2d_xy': 'xy'}
# Coordinates each kind reads from `keypoint`.
INPUT_CHANNELS = {'3d': 3, '2d': 2, '2d_xy': 2}
DEFAULT_IMG_SHAPE = (1080, 1920)
# PYSKL's `PreNormalize2D` threshold: keypoints scored at most this are unseen.
SCORE_THRESHOLD = 0.01
# Sample names are stored as up to this many ASCII bytes (an eval batch's
# 'name' field).
MAX_NAME_BYTES = 64
REQUIRED_KEYS = ('frame_dir', 'total_frames', 'label', 'keypoint')
# Split names usable by TFDS (its split strings also carry slices: 'a[:10%]').
_SPLIT_NAME = re.compile(r'^[A-Za-z0-9_]+$')


class AnnotationError(ValueError):
  """An annotation file or one annotation that cannot be used, and why."""


# ---- 3D normalisation -------------------------------------------------------

CENTRINGS = ('first_frame', 'every_frame')
_SPEC_SEPARATORS = ',:='


@dataclasses.dataclass(frozen=True)
class Normalization:
  """How '3d' keypoints are normalised when they become a record. The default
  keeps them as given.

  Attributes:
    centre: None, or 'first_frame' / 'every_frame': the keypoints lose joint
      `joint` of the first person (the best ranked) in the first frame, or in
      the same frame (2s-AGCN, PYSKL's `PreNormalize3D`); keypoints exactly at
      zero (unseen) stay zero.
    joint: the joint to centre on, by name (None: the layout's centre).
    align: None, or four joint names (a, b, c, d): 2s-AGCN's view alignment,
      after the centring: the first person's vector a -> b in the first frame
      is turned to +z, then c -> d to +x (`preprocess.view_rotation`); for
      ntu25, 2s-AGCN's own: SpineBase, SpineMid, ShoulderLeft, ShoulderRight.
  """

  centre: str | None = None
  joint: str | None = None
  align: tuple[str, ...] | None = None

  def __post_init__(self):
    if self.centre not in (None,) + CENTRINGS:
      raise ValueError(f'centre={self.centre!r} is not one of {CENTRINGS}')
    if self.joint is not None and self.centre is None:
      raise ValueError(f'a centre joint ({self.joint!r}) needs a centre '
                       f'({" or ".join(CENTRINGS)})')
    if self.align is not None and len(self.align) != 4:
      raise ValueError(f'align={self.align!r} must name four joints a, b, c, d '
                       '(a -> b turned to +z, c -> d to +x)')
    for name in (self.joint, *(self.align or ())):
      if name is not None and (not name or set(name) & set(_SPEC_SEPARATORS)):
        raise ValueError(f'joint {name!r} cannot be named in a normalisation '
                         f'(empty, or holds one of {_SPEC_SEPARATORS!r})')

  @property
  def spec(self) -> str | None:
    """The normalisation as the text a dataset, a run and an export record
    (`preprocessing`), e.g. 'centre=every_frame:SpineMid,align=SpineBase:
    SpineMid:ShoulderLeft:ShoulderRight'; None for keypoints as given. The
    builder records it after `for_layout`, which names the centre joint."""
    parts = []
    if self.centre is not None:
      parts.append(f'centre={self.centre}' + (f':{self.joint}' if self.joint else ''))
    if self.align is not None:
      parts.append('align=' + ':'.join(self.align))
    return ','.join(parts) or None

  @classmethod
  def from_spec(cls, spec: str | None) -> Normalization:
    """The normalisation `spec` names (None or '': none)."""
    fields = {}
    for part in (spec or '').split(','):
      if not part:
        continue
      key, _, value = part.partition('=')
      if key == 'centre' and 'centre' not in fields:
        fields['centre'], _, joint = value.partition(':')
        fields['joint'] = joint or None
      elif key == 'align' and 'align' not in fields:
        fields['align'] = tuple(value.split(':'))
      else:
        raise ValueError(f'{spec!r} is not a 3D normalisation (centre=<'
                         f'{"|".join(CENTRINGS)}>[:<joint>][,align=<a>:<b>:<c>:<d>])')
    return cls(**fields)

  def for_layout(self, layout: str | layouts.Layout) -> Normalization:
    """This normalisation with its joints checked against `layout`, and the
    centre joint named (the layout's when not given)."""
    layout = layouts.get_layout(layout)
    names = layout.joint_names
    unknown = [j for j in (self.joint, *(self.align or ())) if j is not None
               and j not in names]
    if unknown:
      raise ValueError(f'joint {unknown[0]!r} of normalisation {self.spec!r} is not a '
                       f'joint of layout {layout.name!r}')
    if self.centre is None or self.joint is not None:
      return self
    return dataclasses.replace(self, joint=names[layout.center])

  def apply(self, sample: np.ndarray, layout: layouts.Layout) -> np.ndarray:
    """The normalised float32 (T, M, V, 3) of a 3D `sample` of `layout`."""
    if self.centre is None and self.align is None:
      return sample
    names = layout.joint_names
    s = np.array(sample, np.float64)
    if self.centre is not None:
      joint = names.index(self.joint) if self.joint else layout.center
      preprocess.centre_on(s, joint, every_frame=self.centre == 'every_frame')
    if self.align is not None:
      a, b, c, d = (names.index(j) for j in self.align)
      s = s @ preprocess.view_rotation(s, (a, b), (c, d)).T
    return s.astype(np.float32)


# ---- The file ---------------------------------------------------------------


def load_annotation_file(path: os.PathLike[str] | str) -> dict:
  """The pickled {'split', 'annotations'} dict at `path`, its shape checked.

  Only the containers are checked here (a dict of splits, a list of dicts);
  each annotation is checked by `to_sample`. Load only files you trust:
  unpickling runs code the file names.
  """
  try:
    with open(path, 'rb') as f:
      data = pickle.load(f)
  except OSError as e:
    raise AnnotationError(f'{path}: cannot read: {e.strerror or e}') from e
  except Exception as e:  # pylint: disable=broad-except
    raise AnnotationError(
        f'{path}: not a pickle file ({type(e).__name__}: {e})') from e
  check_annotation_file(data, path)
  return data


def check_annotation_file(data: Any, path: os.PathLike[str] | str) -> None:
  """Raises AnnotationError naming `path` unless `data` has the file's shape."""
  if not isinstance(data, dict) or not {'split', 'annotations'} <= set(data):
    what = (f'a dict with keys {sorted(map(str, data))[:5]}'
            if isinstance(data, dict) else f'a {type(data).__name__}')
    raise AnnotationError(
        f"{path}: not a PYSKL/MMAction2 annotation file: expected a dict "
        f"with keys 'split' and 'annotations', found {what}")
  splits, annotations = data['split'], data['annotations']
  if not isinstance(splits, dict):
    raise AnnotationError(f"{path}: 'split' is a {type(splits).__name__}, "
                          'not a dict {split name: [frame_dir, ...]}')
  for name, members in splits.items():
    if (not isinstance(name, str) or isinstance(members, (str, bytes))
        or not isinstance(members, Sequence)):
      raise AnnotationError(
          f"{path}: 'split' entry {name!r} is not a split name with a list "
          'of frame_dirs')
  if not isinstance(annotations, (list, tuple)):
    raise AnnotationError(f"{path}: 'annotations' is a "
                          f'{type(annotations).__name__}, not a list')


# ---- One annotation ---------------------------------------------------------


def _frame_dir(annotation: Mapping) -> str:
  """The annotation's name for messages (its frame_dir, or that it has none)."""
  name = annotation.get('frame_dir') if isinstance(annotation, Mapping) else None
  return name if isinstance(name, str) else '<annotation without frame_dir>'


def _is_integer(value) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(
      value, (bool, np.bool_))


def _float_array(value, name: str, where: str) -> np.ndarray:
  try:
    with np.errstate(over='ignore', invalid='ignore'):
      array = np.asarray(value, dtype=np.float32)
  except (TypeError, ValueError, OverflowError) as e:
    raise AnnotationError(f'{where}: {name} is not a numeric array ({e})') from e
  if not np.isfinite(array).all():
    raise AnnotationError(f'{where}: {name} holds NaN or infinite values')
  return array


def check_label(annotation: Mapping, num_classes: int | None = None) -> int:
  """The annotation's label as an int: an integer in [0, num_classes), or
  >= 0 when `num_classes` is None."""
  where = _frame_dir(annotation)
  label = annotation['label']
  if isinstance(label, np.ndarray) and label.shape == ():
    label = label[()]
  if not _is_integer(label):
    raise AnnotationError(f'{where}: label {label!r} is not an integer')
  if label < 0 or (num_classes is not None and label >= num_classes):
    expected = ('>= 0' if num_classes is None
                else f'in [0, {num_classes}) (the classes given)')
    raise AnnotationError(f'{where}: label {label} is not {expected}')
  return int(label)


def _img_shape(annotation: Mapping, where: str) -> tuple[float, float]:
  shape = annotation.get('img_shape', DEFAULT_IMG_SHAPE)
  if isinstance(shape, (str, bytes, Mapping)):
    raise AnnotationError(f'{where}: img_shape {shape!r} is not (height, width)')
  try:
    h, w = (float(v) for v in shape)
  except (TypeError, ValueError) as e:
    raise AnnotationError(
        f'{where}: img_shape {shape!r} is not (height, width)') from e
  if not (np.isfinite(h) and np.isfinite(w) and h > 0 and w > 0):
    raise AnnotationError(
        f'{where}: img_shape {shape!r} is not two positive sizes')
  return h, w


def _ranked_persons(keypoint: np.ndarray, score: np.ndarray | None,
                    num_persons: int) -> np.ndarray:
  """Indices of the `num_persons` persons to keep, best first."""
  if score is not None:
    rank = score.reshape(len(score), -1).sum(-1)
  else:
    # motion_energy reads three coordinates; 2D gets a zero z.
    xyz = np.pad(keypoint, [(0, 0)] * 3 + [(0, 3 - keypoint.shape[-1])])
    rank = np.array([preprocess.motion_energy(person) for person in xyz])
  # A stable sort keeps the file's order among equals.
  return np.argsort(-rank, kind='stable')[:num_persons]


def to_sample(annotation: Mapping, layout: str | layouts.Layout, kind: str,
              num_persons: int | None = preprocess.NUM_PERSONS, *,
              num_classes: int | None = None,
              normalization: Normalization | None = None) -> np.ndarray:
  """One annotation as a record's float32 (T, num_persons, V, C).

  Args:
    annotation: one entry of an annotation file's 'annotations'.
    layout: a `layouts` key or a `layouts.Layout`; it fixes V.
    kind: one of `KINDS`; it fixes C (see the module docstring).
    num_persons: M of the result (None: the annotation's own M).
    num_classes: when given, labels must be below it (see `check_label`).
    normalization: for kind '3d', how to normalise the keypoints (None: as
      given).

  Raises:
    AnnotationError: naming the frame_dir and what is wrong: a missing key, a
      name that is not ASCII or too long, a keypoint shape that disagrees with
      total_frames, the layout's V or the kind's C, NaN/inf values, a bad
      label or img_shape, or no keypoint_score for kind '2d'.
  """
  if kind not in KINDS:
    raise ValueError(f'unknown annotation kind {kind!r}; expected one of {KINDS}')
  layout = layouts.get_layout(layout)
  num_joints = layout.num_joints
  if normalization is not None and kind != '3d':
    raise ValueError(f'a 3D normalisation is for kind \'3d\', not {kind!r}')
  if not isinstance(annotation, Mapping):
    raise AnnotationError(
        f'an annotation is a {type(annotation).__name__}, not a dict')
  where = _frame_dir(annotation)
  missing = [k for k in REQUIRED_KEYS if k not in annotation]
  if kind == '2d' and annotation.get('keypoint_score') is None:
    missing.append('keypoint_score')
  if missing:
    raise AnnotationError(f'{where}: no {", ".join(missing)}')
  name = annotation['frame_dir']
  if not isinstance(name, str) or not name:
    raise AnnotationError(f'{where}: frame_dir {name!r} is not a name')
  if not name.isascii() or len(name) > MAX_NAME_BYTES:
    raise AnnotationError(
        f'{where}: frame_dir is not ASCII of at most {MAX_NAME_BYTES} bytes')
  total_frames = annotation['total_frames']
  if not _is_integer(total_frames) or total_frames < 1:
    raise AnnotationError(
        f'{where}: total_frames {total_frames!r} is not a positive integer')
  check_label(annotation, num_classes)

  keypoint = _float_array(annotation['keypoint'], 'keypoint', where)
  channels = INPUT_CHANNELS[kind]
  expected = f'(M, {total_frames}, {num_joints}, {channels})'
  if (keypoint.ndim != 4 or keypoint.shape[1:] != (total_frames, num_joints,
                                                    channels)
      or not keypoint.shape[0]):
    raise AnnotationError(
        f'{where}: keypoint has shape {keypoint.shape}, expected {expected} '
        f'(total_frames, {layout.name} joints, kind {kind!r})')
  score = annotation.get('keypoint_score') if kind != '3d' else None
  if score is not None:
    score = _float_array(score, 'keypoint_score', where)
    if score.shape != keypoint.shape[:3]:
      raise AnnotationError(
          f'{where}: keypoint_score has shape {score.shape}, expected '
          f'{keypoint.shape[:3]} (keypoint\'s M, T, V)')

  if kind != '3d':
    h, w = _img_shape(annotation, where)
    half = np.array([w / 2, h / 2])
    with np.errstate(over='ignore', invalid='ignore'):
      keypoint = ((keypoint - half) / half).astype(np.float32)
    if not np.isfinite(keypoint).all():
      raise AnnotationError(
          f'{where}: keypoint does not fit float32 once normalised by '
          f'img_shape {(h, w)}')
    if score is not None:
      keypoint[score <= SCORE_THRESHOLD] = 0
    if kind == '2d':
      keypoint = np.concatenate([keypoint, score[..., None]], axis=-1)
  num_persons = len(keypoint) if num_persons is None else num_persons
  keep = _ranked_persons(keypoint[..., :channels], score, num_persons)
  sample = np.zeros((total_frames, num_persons, num_joints,
                     keypoint.shape[-1]), np.float32)
  sample[:, :len(keep)] = keypoint[keep].transpose(1, 0, 2, 3)
  if normalization is not None:
    sample = normalization.apply(sample, layout)
  return sample


# ---- A whole file, sorted into splits --------------------------------------


@dataclasses.dataclass(frozen=True)
class Skipped:
  """A sample (by frame_dir), file or split that gave no record, and why."""

  path: str
  reason: str


@dataclasses.dataclass
class Selection:
  """An annotation file's samples sorted into its splits; nothing converted.

  Attributes:
    splits: split name -> the annotations listed in it, in the split's order.
    ignored: annotations listed in no split.
    skipped: split entries without an annotation, duplicate frame_dirs and
      annotations that are not dicts with a frame_dir.
    splits_left_out: splits TFDS cannot name, and why (`path` is the split).
  """

  splits: dict[str, list[Mapping]]
  ignored: int
  skipped: list[Skipped]
  splits_left_out: list[Skipped]


def select_annotations(data: Mapping) -> Selection:
  """Sorts the annotations of a loaded file into its splits."""
  by_name, skipped = {}, []
  for annotation in data['annotations']:
    name = _frame_dir(annotation)
    if not isinstance(annotation, Mapping) or name != annotation.get(
        'frame_dir'):
      skipped.append(Skipped(name, 'not a dict with a str frame_dir'))
    elif name in by_name:
      skipped.append(Skipped(name, 'duplicate frame_dir; the first is kept'))
    else:
      by_name[name] = annotation
  splits, left_out, listed = {}, [], set()
  for split, members in data['split'].items():
    if not _SPLIT_NAME.match(split):
      left_out.append(Skipped(
          split, 'not a split name TFDS accepts (letters, digits, _)'))
      continue
    splits[split], seen = [], set()
    for name in members:
      if not isinstance(name, str):
        skipped.append(Skipped(repr(name)[:80],
                               f'in split {split!r} but not a frame_dir'))
        continue
      if name in seen:
        skipped.append(Skipped(name, f'listed twice in split {split!r}'))
      elif name not in by_name:
        skipped.append(Skipped(
            name, f'in split {split!r} but has no annotation'))
      else:
        splits[split].append(by_name[name])
        listed.add(name)
      seen.add(name)
  return Selection(splits=splits, ignored=len(set(by_name) - listed),
                   skipped=skipped, splits_left_out=left_out)


def find_annotations(data: Mapping, frame_dirs: Sequence[str] = ()
                     ) -> list[tuple[str, Mapping | None]]:
  """(frame_dir, annotation) of the named annotations of a loaded file (all of
  them when `frame_dirs` is empty); the annotation is None for a name the file
  does not hold."""
  by_name = {str(a.get('frame_dir')): a for a in data['annotations']
             if isinstance(a, Mapping)}
  return [(name, by_name.get(name)) for name in frame_dirs or list(by_name)]


def read_class_names(path: os.PathLike[str] | str) -> list[str]:
  """One class name a line (blank lines at the end ignored), all distinct."""
  try:
    with open(path, encoding='utf-8') as f:
      names = [line.strip() for line in f.read().rstrip('\n').split('\n')]
  except (OSError, UnicodeDecodeError) as e:
    raise AnnotationError(f'{path}: cannot read class names ({e})') from e
  if not names or not all(names):
    raise AnnotationError(f'{path}: a class name is empty')
  duplicates = sorted({n for n in names if names.count(n) > 1})
  if duplicates:
    raise AnnotationError(f'{path}: class names repeated: {duplicates[:3]}')
  return names


def default_class_names(labels: Iterable[int]) -> list[str]:
  """'class_0' ... 'class_<max label>'."""
  top = max(labels, default=-1)
  return [f'class_{i}' for i in range(top + 1)]
