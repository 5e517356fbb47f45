"""OpenPose's per-frame JSON as annotations (`annotations`' schema).

OpenPose writes one file a frame, `<clip>_<frame:012d>_keypoints.json`, holding
`{"people": [{"pose_keypoints_2d": [x0, y0, c0, x1, y1, c1, ...]}, ...]}` with
K = 25 keypoints (BODY_25) or 18 (COCO-18) a person, in pixels; an undetected
keypoint is (0, 0, 0). Keypoints are taken to the layout's joints by name:
BODY_25 to 'openpose18' (COCO-18 order) drops the mid-hip and the six foot
points; 'coco17' also drops the neck.

OpenPose does not follow people from frame to frame, so `track_people` does:
each frame's people are matched to the known persons nearest first, by the
mean position of their detected keypoints against where each person is
expected (its last position, moved on by its last velocity); a person left
unmatched is a new one. The `max_persons` present in the most frames are kept.

A dataset is a folder tree `<root>/<split>/<class>/<clip>/*.json` (`read_tree`);
the class names are the sorted class folder names, or a given list.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
from typing import Sequence

import numpy as np

from stbln_jax.data import annotations as annotations_lib
from stbln_jax.data import layouts
from stbln_jax.data import preprocess

AnnotationError = annotations_lib.AnnotationError
Skipped = annotations_lib.Skipped

BODY_25 = ('nose', 'neck', 'right_shoulder', 'right_elbow', 'right_wrist',
           'left_shoulder', 'left_elbow', 'left_wrist', 'mid_hip', 'right_hip',
           'right_knee', 'right_ankle', 'left_hip', 'left_knee', 'left_ankle',
           'right_eye', 'left_eye', 'right_ear', 'left_ear', 'left_big_toe',
           'left_small_toe', 'left_heel', 'right_big_toe', 'right_small_toe',
           'right_heel')
COCO_18 = layouts.OPENPOSE18.joint_names
MODELS = {len(BODY_25): BODY_25, len(COCO_18): COCO_18}
LAYOUTS = ('openpose18', 'coco17')  # the layouts OpenPose's keypoints cover
_FRAME_NUMBER = re.compile(r'_(\d+)_keypoints\.json$')


def joint_indices(num_keypoints: int, layout: str) -> list[int]:
  """For each joint of `layout`, its index among OpenPose's K keypoints."""
  if layout not in LAYOUTS:
    raise ValueError(f'OpenPose keypoints give the layouts {LAYOUTS}, not '
                     f'{layout!r}')
  names = MODELS[num_keypoints]
  return [names.index(name) for name in layouts.get_layout(layout).joint_names]


# ---- One frame ----------------------------------------------------------------


def _is_number(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_frame(text: str | bytes, where: str = '<json>') -> list[np.ndarray]:
  """The people of one frame's JSON, each float64 (K, 3): x, y, confidence.

  A person with an empty pose_keypoints_2d (only a face or hands found) is
  left out. Raises AnnotationError naming `where` for anything that is not
  OpenPose's output.
  """
  try:
    frame = json.loads(text)
  except (ValueError, RecursionError) as e:  # JSONDecodeError, bad UTF-8
    raise AnnotationError(f'{where}: not valid JSON ({e})') from e
  if not isinstance(frame, dict) or not isinstance(frame.get('people'), list):
    raise AnnotationError(f"{where}: no 'people' list")
  people = []
  for i, person in enumerate(frame['people']):
    values = person.get('pose_keypoints_2d') if isinstance(person, dict) else None
    if not isinstance(values, list) or not all(map(_is_number, values)):
      raise AnnotationError(
          f'{where}: people[{i}].pose_keypoints_2d is not a list of numbers')
    if not values:
      continue
    if len(values) not in (3 * k for k in MODELS):
      raise AnnotationError(
          f'{where}: people[{i}].pose_keypoints_2d has {len(values)} values, '
          f'not 3 x {" or ".join(map(str, MODELS))} (BODY_25 or COCO-18)')
    try:
      pose = np.array(values, np.float64).reshape(-1, 3)
    except OverflowError:  # an integer beyond float64
      pose = np.full((1, 3), np.inf)
    if not np.isfinite(pose).all():
      raise AnnotationError(
          f'{where}: people[{i}].pose_keypoints_2d holds NaN or infinite values')
    people.append(pose)
  if len({len(p) for p in people}) > 1:
    raise AnnotationError(f'{where}: people of both BODY_25 and COCO-18')
  return people


def read_frame(path: os.PathLike[str] | str) -> list[np.ndarray]:
  """`parse_frame` of the file at `path`."""
  try:
    text = pathlib.Path(path).read_bytes()
  except OSError as e:
    raise AnnotationError(f'{path}: cannot read: {e.strerror or e}') from e
  return parse_frame(text, str(path))


# ---- Following people ----------------------------------------------------------


def _centre(pose: np.ndarray) -> np.ndarray | None:
  """Mean (x, y) of the detected keypoints; None if none is."""
  seen = pose[:, 2] > 0
  return pose[seen, :2].mean(0) if seen.any() else None


class _Track:
  """One person's poses by frame and where it is expected next."""

  def __init__(self, t: int, pose: np.ndarray, centre: np.ndarray):
    self.poses = {}
    self.positions = []  # (t, centre) of its last two frames
    self.add(t, pose, centre)

  def add(self, t: int, pose: np.ndarray, centre: np.ndarray):
    self.poses[t] = pose
    self.positions = (self.positions + [(t, centre)])[-2:]

  def expected_at(self, t: int) -> np.ndarray:
    (t1, c1) = self.positions[-1]
    if len(self.positions) < 2:
      return c1
    (t0, c0) = self.positions[0]
    return c1 + (c1 - c0) * (t - t1) / (t1 - t0)


def track_people(frames: Sequence[Sequence[np.ndarray]]) -> np.ndarray:
  """Each frame's people (arrays (K, 3)) as persons followed over frames.

  Returns:
    float64 (P, T, K, 3), zeros where a person is absent, persons in the
    order they first appear. A pose with no detected keypoint is dropped.
  """
  tracks: list[_Track] = []
  num_keypoints = None
  for t, people in enumerate(frames):
    found = [(pose, c) for pose in people if (c := _centre(pose)) is not None]
    if found:
      num_keypoints = len(found[0][0])
    expected = [track.expected_at(t) for track in tracks]
    pairs = sorted(
        (float(np.hypot(*(c - e))), i, j)
        for i, (_, c) in enumerate(found) for j, e in enumerate(expected))
    taken_people, taken_tracks = set(), set()
    for _, i, j in pairs:
      if i not in taken_people and j not in taken_tracks:
        tracks[j].add(t, *found[i])
        taken_people.add(i)
        taken_tracks.add(j)
    for i, (pose, c) in enumerate(found):
      if i not in taken_people:
        tracks.append(_Track(t, pose, c))
  out = np.zeros((len(tracks), len(frames), num_keypoints or 0, 3))
  for p, track in enumerate(tracks):
    for t, pose in track.poses.items():
      out[p, t] = pose
  return out


# ---- One clip, a dataset -----------------------------------------------------


def _frame_files(clip_dir: pathlib.Path) -> list[pathlib.Path]:
  """The clip's JSON files in frame order: by OpenPose's frame number when
  every name has one, else by name."""
  paths = sorted(p for p in clip_dir.glob('*.json') if p.is_file())
  numbers = [_FRAME_NUMBER.search(p.name) for p in paths]
  if all(numbers):
    paths = sorted(paths, key=lambda p: int(_FRAME_NUMBER.search(p.name)[1]))
  return paths


def read_clip(clip_dir: os.PathLike[str] | str, layout: str = 'openpose18',
              max_persons: int = preprocess.NUM_PERSONS) -> dict:
  """A clip folder of per-frame JSON files as one annotation (no label).

  One frame a file (`_frame_files` order). Returns {'frame_dir':
  the folder's name, 'total_frames', 'keypoint' float32 (M, T, V, 2) in
  pixels, 'keypoint_score' float32 (M, T, V)} with the `max_persons` persons
  present in most frames (ties: the higher total score).
  """
  clip_dir = pathlib.Path(clip_dir)
  paths = _frame_files(clip_dir)
  if not paths:
    raise AnnotationError(f'{clip_dir}: no .json files')
  frames = [read_frame(path) for path in paths]
  sizes = {len(pose) for people in frames for pose in people}
  if len(sizes) > 1:
    raise AnnotationError(f'{clip_dir}: frames of both BODY_25 and COCO-18')
  tracks = track_people(frames)
  if not len(tracks):
    raise AnnotationError(f'{clip_dir}: no person in any frame')
  present = (tracks[..., 2] > 0).any(-1).sum(-1)
  total = tracks[..., 2].sum((1, 2))
  keep = sorted(np.lexsort((-total, -present))[:max_persons])
  tracks = tracks[keep][:, :, joint_indices(tracks.shape[2], layout)]
  return {
      'frame_dir': clip_dir.name,
      'total_frames': len(frames),
      'keypoint': tracks[..., :2].astype(np.float32),
      'keypoint_score': tracks[..., 2].astype(np.float32),
  }


def _subdirs(path: pathlib.Path) -> list[pathlib.Path]:
  return sorted(p for p in path.iterdir() if p.is_dir())


def read_tree(root: os.PathLike[str] | str, layout: str = 'openpose18',
              classes: Sequence[str] | None = None,
              max_persons: int = preprocess.NUM_PERSONS,
              ) -> tuple[dict, list[str], list[Skipped]]:
  """Every clip of `<root>/<split>/<class>/<clip>/*.json`.

  Args:
    root: the tree's root.
    layout: 'openpose18' or 'coco17'.
    classes: the class names in label order (None: the sorted class folder
      names of all splits). A clip of a class not among them is skipped.
    max_persons: persons kept a clip (`read_clip`).

  Returns:
    (data, classes, skipped): `data` in the annotation file's schema
    ({'split', 'annotations'}), the class names, and the clips that gave no
    annotation, each by its frame_dir with the reason (a JSON file's path
    and what is wrong with it, a duplicate clip name, an unknown class).
  """
  root = pathlib.Path(root)
  joint_indices(len(COCO_18), layout)  # an unknown layout fails here
  clips = [(split.name, cls.name, clip)
           for split in _subdirs(root) for cls in _subdirs(split)
           for clip in _subdirs(cls) if any(clip.glob('*.json'))]
  if classes is None:
    classes = sorted({cls for _, cls, _ in clips})
  label_of = {name: i for i, name in enumerate(classes)}
  splits, annotations, skipped, first = {}, [], [], {}
  for split, cls, clip in clips:
    splits.setdefault(split, [])
    if cls not in label_of:
      skipped.append(Skipped(clip.name, f'{clip}: class {cls!r} is not '
                             'among the class names given'))
      continue
    if clip.name in first:
      skipped.append(Skipped(clip.name, f'{clip}: a second clip of this name '
                             f'(the first: {first[clip.name]})'))
      continue
    first[clip.name] = clip
    try:
      annotation = read_clip(clip, layout, max_persons)
    except AnnotationError as e:
      skipped.append(Skipped(clip.name, f'{e}; clip skipped'))
      continue
    annotation['label'] = label_of[cls]
    annotations.append(annotation)
    splits[split].append(clip.name)
  return {'split': splits, 'annotations': annotations}, list(classes), skipped
