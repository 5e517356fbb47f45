"""From a parsed `.skeleton` file to a normalised sample, and the input streams.

This module owns the builder's preprocessing (`preprocess_skeleton`, applied
once when records are written and again on raw files at prediction time) and
the pure array functions applied when samples are read: the per-clip
normalisation (`center_on_first_frame`, `min_max`), `pad_or_crop` to a fixed
length and the bone/motion streams. Two preprocessings
(`PREPROCESSINGS`):

  '2s-agcn' (the default): 2s-AGCN's `data_gen/ntu_gendata.py` (`read_xyz`)
      and `data_gen/preprocess.py` (`pre_normalization`), step for step:
      bodies fill 4 slots by their place in each frame, the 2 slots of most
      motion energy are the persons; a person whose first frame is empty has
      its non-empty frames moved to the front, and each person's empty
      trailing frames are filled by repeating its own frames up to 300; then
      centring and the two rotations (`pre_normalization_2s_agcn`).
  'tracked': bodies followed by tracking ID (`select_bodies`), so a person
      stays one when the order of bodies in a frame changes, then the same
      normalisation on the clip's own length (`pre_normalize`).

Layout: a sample is float32 (T, M, V, C) = (frames, persons=2, joints=25 in
Kinect v2 order, coordinates xyz=3). The stream functions accept any leading
batch axes, i.e. (..., T, M, V, C).
"""

from __future__ import annotations

import math
import os

import numpy as np

from stbln_jax.data import layouts
from stbln_jax.data import ntu
from stbln_jax.data import skeleton as skeleton_lib

NUM_PERSONS = 2
NUM_JOINTS = ntu.NUM_JOINTS
# 2s-AGCN's `max_body_kinect` slots and `max_frame` buffer.
NUM_SLOTS = 4
MAX_FRAMES = 300
PREPROCESSINGS = ('2s-agcn', 'tracked')
STREAMS = ('joint', 'bone', 'joint_motion', 'bone_motion')
# What the last axis of a sample holds: 3D coordinates, 2D coordinates, or 2D
# coordinates and the detector's score.
CHANNELS = ('xyz', 'xy', 'xys')
# How a clip's coordinates are scaled when read: as stored, or by `min_max`.
NORMALIZATIONS = ('none', 'minmax')


class NoSkeletonError(skeleton_lib.SkeletonFormatError):
  """A well-formed file in which no frame holds a body (nothing to learn)."""


# ---- Body selection ----------------------------------------------------------


def motion_energy(track: np.ndarray) -> float:
  """2s-AGCN's `get_nonzero_std`: over the frames whose coordinates do not
  sum to 0, the std of all x values of the body (frames x joints), plus that
  of y, plus that of z, in float64.

  Args:
    track: (T, V, 3) one body, zeros where it is absent.
  """
  present = track.sum(-1).sum(-1) != 0
  if not present.any():
    return 0.0
  coords = track[present].astype(np.float64)
  return float(coords[:, :, 0].std() + coords[:, :, 1].std()
               + coords[:, :, 2].std())


def body_slots(skeleton: skeleton_lib.Skeleton,
               num_slots: int = NUM_SLOTS) -> np.ndarray:
  """2s-AGCN's `read_xyz` before its selection: the b-th body listed in a
  frame goes to slot b; bodies past `num_slots` in a frame are dropped.

  Returns:
    (num_slots, T, 25, 3) in the skeleton's dtype, zeros where a slot is
    empty.
  """
  rows = skeleton
  slot = np.arange(len(rows.frame_index)) - np.searchsorted(
      rows.frame_index, rows.frame_index)  # place within its frame
  keep = slot < num_slots
  out = np.zeros((num_slots, skeleton.num_frames, NUM_JOINTS, 3),
                 rows.xyz.dtype)
  out[slot[keep], rows.frame_index[keep]] = rows.xyz[keep]
  return out


def select_slots(slots: np.ndarray, num_persons: int = NUM_PERSONS
                 ) -> np.ndarray:
  """2s-AGCN's choice of persons: the `num_persons` slots of most motion
  energy (`motion_energy`), most first; ties (identical slots, in practice)
  keep slot order. (S, T, V, 3) -> (num_persons, T, V, 3)."""
  energy = np.array([motion_energy(s) for s in slots])
  return slots[np.argsort(-energy, kind='stable')[:num_persons]]


def select_bodies(skeleton: skeleton_lib.Skeleton,
                  max_bodies: int = NUM_PERSONS) -> np.ndarray:
  """The `max_bodies` most moving bodies of a file, as persons ('tracked').

  Each body ID is followed over the frames where it appears (zeros elsewhere);
  bodies are ranked by motion energy (`motion_energy`, 2s-AGCN's) and the top
  `max_bodies` are kept, most energetic first; ties keep the order of first
  appearance. Missing persons are all-zero. Unlike 2s-AGCN, which fills person
  slots by a body's position within each frame and drops bodies past the
  fourth, bodies are grouped by their tracking ID, so a person stays one
  person when the order of bodies in a frame changes.

  Returns:
    float32 (T, max_bodies, 25, 3) with T = `skeleton.num_frames`.
  """
  rows = skeleton
  out = np.zeros((skeleton.num_frames, max_bodies, NUM_JOINTS, 3), np.float32)
  if len(rows.body_ids) == 0 or max_bodies == 0:
    return out
  ids, first = np.unique(rows.body_ids, return_index=True)
  if len(ids) == 1:  # most files: nothing to rank
    out[rows.frame_index, 0] = rows.xyz
    return out
  ids = ids[np.argsort(first, kind='stable')]
  tracks = np.zeros((len(ids), skeleton.num_frames, NUM_JOINTS, 3),
                    np.float32)
  for i, body_id in enumerate(ids):
    mine = rows.body_ids == body_id
    tracks[i, rows.frame_index[mine]] = rows.xyz[mine]
  energy = np.array([motion_energy(t) for t in tracks])
  order = np.argsort(-energy, kind='stable')[:max_bodies]
  out[:, :len(order)] = tracks[order].transpose(1, 0, 2, 3)
  return out


# ---- Pre-normalisation -------------------------------------------------------


def rotation_onto(vector: np.ndarray, target: np.ndarray) -> np.ndarray:
  """The rotation (3, 3) about `vector x target` that turns `vector`'s
  direction into `target`'s (Rodrigues' formula), as 2s-AGCN's
  `rotation_matrix(cross(v, t), angle_between(v, t))`.

  A zero vector gives the identity (2s-AGCN's choice); an antiparallel vector
  gives a half turn about an axis perpendicular to it (2s-AGCN would leave it
  unrotated).
  """
  v = np.asarray(vector, np.float64)
  t = np.asarray(target, np.float64)
  v_norm, t_norm = np.linalg.norm(v), np.linalg.norm(t)
  if v_norm < 1e-12 or t_norm < 1e-12:
    return np.eye(3)
  v, t = v / v_norm, t / t_norm
  # np.cross(v, t), the same products and differences without its overhead.
  axis = np.array([v[1] * t[2] - v[2] * t[1], v[2] * t[0] - v[0] * t[2],
                   v[0] * t[1] - v[1] * t[0]])
  sin, cos = np.linalg.norm(axis), float(np.dot(v, t))
  if sin < 1e-12:
    if cos > 0:
      return np.eye(3)
    # Half turn about any axis perpendicular to v.
    helper = np.eye(3)[np.argmin(np.abs(v))]
    axis = np.cross(v, helper)
    axis /= np.linalg.norm(axis)
    return 2.0 * np.outer(axis, axis) - np.eye(3)
  k = axis / sin
  cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
  return np.eye(3) + sin * cross + (1 - cos) * (cross @ cross)


def _compact_person(person: np.ndarray) -> np.ndarray:
  """2s-AGCN's frame shift for one person (T, V, 3): if its first frame is
  empty, its non-empty frames move to the front (in order)."""
  present = person.reshape(len(person), -1).sum(-1) != 0
  if present.any() and not present[0]:
    shifted = np.zeros_like(person)
    shifted[:present.sum()] = person[present]
    return shifted
  return person


def _repeat_tail(person: np.ndarray) -> np.ndarray:
  """2s-AGCN's padding for one person (T, V, 3): the empty frames after its
  last non-empty one are filled by repeating all frames before them."""
  present = person.reshape(len(person), -1).sum(-1) != 0
  if not present.any():
    return person
  last = len(present) - int(np.argmax(present[::-1]))  # one past the last
  if last == len(person):
    return person
  reps = -(-len(person) // last)
  return np.concatenate([person[:last]] * reps, 0)[:len(person)]


def pre_normalize(x: np.ndarray) -> np.ndarray:
  """2s-AGCN's normalisation kept at the clip's length ('tracked').

  Steps, with 1-based Kinect v2 joint numbers:
    1. Per person: if its first frame is empty, its non-empty frames are moved
       to the front (frames empty for every person in the middle are kept
       otherwise, as 2s-AGCN does).
    2. Trailing frames where every person is empty are dropped: T' is one past
       the last frame where anybody is present.
    3. Per person that is present somewhere: the empty frames after its last
       non-empty one (up to T') are filled by repeating its frames before them
       (2s-AGCN pads each person like this up to 300 frames; here only up to
       T', and `pad_or_crop` repeats the whole sequence later).
    4. Centre: from every joint of every person in frame t, subtract joint 2
       (spine middle) of person 1 in frame t. Joints that are exactly zero
       (absent) stay zero, so an absent person stays all-zero.
    5. Rotate everything by the rotation that turns the vector joint 1 -> joint
       2 (spine base -> spine middle) of person 1 in frame 1 to +z.
    6. Rotate everything by the rotation that turns the vector joint 5 -> joint
       9 (right shoulder minus left shoulder) of person 1 in frame 1 to +x.
       As in 2s-AGCN, each rotation turns about the cross product of the two
       directions, so after step 6 the shoulder vector is exactly along +x and
       the spine vector is exactly along +z only when it is perpendicular to
       the shoulders (it leans off z by how far the shoulders are from
       horizontal).

  Args:
    x: (T, M, V, 3), zeros where a person is absent.

  Returns:
    float32 (T', M, V, 3), T' <= T; (0, M, V, 3) when nobody is present.
  """
  s = np.array(x, np.float64)
  for m in range(s.shape[1]):
    s[:, m] = _compact_person(s[:, m])
  present = s.reshape(len(s), -1).sum(-1) != 0
  if not present.any():
    return np.zeros((0,) + s.shape[1:], np.float32)
  s = s[:len(present) - int(np.argmax(present[::-1]))]
  for m in range(s.shape[1]):
    s[:, m] = _repeat_tail(s[:, m])
  centre_on(s, ntu.SPINE_MID)
  rotation = view_rotation(s, (ntu.SPINE_BASE, ntu.SPINE_MID),
                           (ntu.LEFT_SHOULDER, ntu.RIGHT_SHOULDER))
  # Zeros (absent joints) stay zero.
  return (s @ rotation.T).astype(np.float32)


def centre_on(s: np.ndarray, joint: int, every_frame: bool = True) -> None:
  """Subtracts joint `joint` of person 1, in the same frame (or in the first
  frame), from every joint of `s` (T, M, V, 3) in place; joints exactly at zero
  (absent) stay zero."""
  centre = s[:, 0:1, joint:joint + 1] if every_frame else s[:1, 0:1, joint:joint + 1]
  centre = centre.copy()  # (T or 1, 1, 1, 3)
  # s.sum(-1) != 0 (summed in the same order); an axis of 3 is slow to
  # reduce and to broadcast over, so the mask is spelled out per coordinate.
  mask = (s[..., 0] + s[..., 1] + s[..., 2]) != 0
  s -= centre
  s *= np.repeat(mask[..., None], 3, axis=-1)


def view_rotation(s: np.ndarray, up: tuple[int, int],
                  across: tuple[int, int]) -> np.ndarray:
  """2s-AGCN's view alignment of `s` (T, M, V, 3) as one rotation (3, 3): it turns
  person 1's vector from joint up[0] to up[1] in the first frame to +z, then
  across[0] -> across[1] to +x, each about the cross product of the two
  directions (`rotation_onto`)."""
  z_rotation = rotation_onto(s[0, 0, up[1]] - s[0, 0, up[0]], [0.0, 0.0, 1.0])
  x_rotation = rotation_onto(z_rotation @ (s[0, 0, across[1]] - s[0, 0, across[0]]),
                             [1.0, 0.0, 0.0])
  return x_rotation @ z_rotation


def axis_angle_rotation(axis: np.ndarray, angle: float) -> np.ndarray:
  """2s-AGCN's `rotation_matrix`: the rotation (3, 3) by `angle` about
  `axis` (Euler-Rodrigues), the identity when the axis or the angle is below
  1e-6."""
  axis = np.asarray(axis, np.float64)
  if np.abs(axis).sum() < 1e-6 or abs(angle) < 1e-6:
    return np.eye(3)
  axis = axis / math.sqrt(np.dot(axis, axis))
  a = math.cos(angle / 2.0)
  b, c, d = -axis * math.sin(angle / 2.0)
  aa, bb, cc, dd = a * a, b * b, c * c, d * d
  return np.array([
      [aa + bb - cc - dd, 2 * (b * c + a * d), 2 * (b * d - a * c)],
      [2 * (b * c - a * d), aa + cc - bb - dd, 2 * (c * d + a * b)],
      [2 * (b * d + a * c), 2 * (c * d - a * b), aa + dd - bb - cc]])


def _align(vector: np.ndarray, target) -> np.ndarray:
  """2s-AGCN's rotation turning `vector` (float32) towards `target`: about
  their cross product, by the angle between them (0 for a vector below
  1e-6)."""
  target = np.asarray(target, np.float64)
  angle = 0.0
  if np.abs(vector).sum() >= 1e-6:
    unit = vector / np.linalg.norm(vector)
    angle = np.arccos(np.clip(np.dot(unit, target), -1.0, 1.0))
  return axis_angle_rotation(np.cross(vector, target), angle)


def pre_normalization_2s_agcn(persons: np.ndarray) -> np.ndarray:
  """2s-AGCN's `pre_normalization` of one sample, on its 300-frame buffer.

  Steps, in float32 as there (frames are empty where their coordinates sum
  to 0; 1-based joint numbers), for each person that is present somewhere:
    1. If its first frame is empty, its non-empty frames move to the front.
    2. Its frames after its last non-empty one are filled by repeating its
       frames up to there (empty ones in between included), to the end of
       the buffer.
    3. Every joint whose coordinates do not sum to 0 loses joint 2 (spine
       middle) of person 1 in the same frame; the others become 0.
    4. Everything turns about (spine vector x z) so that the spine vector
       joint 1 -> joint 2 of person 1 in frame 1 points along +z, then about
       (shoulder vector x x) so that joint 5 -> joint 9 (left to right
       shoulder) of person 1 in frame 1 points along +x.

  Args:
    persons: (M, T, V, 3), zeros where a person is absent; T is the buffer
      (2s-AGCN: the file's frames, then zeros up to 300).

  Returns:
    float32 (T, M, V, 3).
  """
  s = np.array(persons, np.float32)
  num_frames = s.shape[1]
  for person in s:
    if person.sum() == 0:
      continue
    if person[0].sum() == 0:
      kept = person[_present(person)]
      person[:] = 0
      person[:len(kept)] = kept
    length = _length(person)
    if length < num_frames:
      reps = -(-num_frames // length)
      person[length:] = np.concatenate([person[:length]] * reps)[
          :num_frames - length]
  center = s[0, :, ntu.SPINE_MID:ntu.SPINE_MID + 1].copy()
  for m, person in enumerate(s):
    if person.sum() != 0:
      s[m] = (person - center) * (person.sum(-1) != 0)[..., None]
  for first, second, target in ((ntu.SPINE_BASE, ntu.SPINE_MID, (0, 0, 1)),
                                (ntu.LEFT_SHOULDER, ntu.RIGHT_SHOULDER,
                                 (1, 0, 0))):
    rotation = _align(s[0, 0, second] - s[0, 0, first], target)
    s[:] = s.astype(np.float64) @ rotation.T
  return s.transpose(1, 0, 2, 3)


def _present(person: np.ndarray) -> np.ndarray:
  """bool (T,): the frames of `person` (T, V, 3) that are not empty."""
  return person.sum(-1).sum(-1) != 0


def _length(person: np.ndarray) -> int:
  """One past the last non-empty frame of `person` (T, V, 3)."""
  present = _present(person)
  return len(present) - int(np.argmax(present[::-1])) if present.any() else 0


def _period(persons: np.ndarray) -> int:
  """After how many frames `pre_normalization_2s_agcn(persons)` repeats:
  the least common multiple of the persons' lengths after its step 1."""
  return math.lcm(*(
      int(_present(p).sum()) if p[0].sum() == 0 else _length(p)
      for p in persons if p.sum() != 0))


def preprocess_skeleton(
    skeleton_or_path: skeleton_lib.Skeleton | str | os.PathLike[str],
    preprocessing: str = '2s-agcn') -> np.ndarray:
  """The builder's preprocessing of one file (see `PREPROCESSINGS`).

  '2s-agcn' gives the first P frames of 2s-AGCN's 300-frame sample, where P
  is a whole period of it, so that `pad_or_crop(x, 300)` is that sample
  exactly: P is the clip's length when every person's sequence has the same
  length (one person, or two tracked equally long), else the least common
  multiple of their lengths, at most 300 (files over 300 frames: their
  length). Energies are in float64 from float64 coordinates as in 2s-AGCN
  when given a path (a `Skeleton` brings its own dtype).
  'tracked' gives `pre_normalize(select_bodies(...))` at the clip's length.

  Args:
    skeleton_or_path: a parsed `Skeleton` or the path of a `.skeleton` file.
    preprocessing: one of `PREPROCESSINGS`.

  Returns:
    float32 (P, 2, 25, 3).

  Raises:
    SkeletonFormatError: the file is malformed.
    NoSkeletonError: no frame holds a (non-zero) body.
  """
  if preprocessing not in PREPROCESSINGS:
    raise ValueError(f'unknown preprocessing {preprocessing!r}; expected one '
                     f'of {PREPROCESSINGS}')
  skeleton = skeleton_or_path
  if not isinstance(skeleton, skeleton_lib.Skeleton):
    skeleton = skeleton_lib.read_skeleton(
        skeleton, np.float64 if preprocessing == '2s-agcn' else np.float32,
        xyz_only=True)
  if len(skeleton.body_ids) == 0:
    raise NoSkeletonError(
        skeleton.path, None,
        f'no body in any of its {skeleton.num_frames} frames')
  if preprocessing == 'tracked':
    sample = pre_normalize(select_bodies(skeleton, NUM_PERSONS))
  else:
    persons = select_slots(body_slots(skeleton)).astype(np.float32)
    sample = np.zeros((0, NUM_PERSONS, NUM_JOINTS, 3), np.float32)
    if any(p.sum() != 0 for p in persons):
      # 2s-AGCN's buffer is 300 frames; its first P frames come out the same
      # from any buffer of at least P frames that holds the file.
      period = _period(persons)
      buffer = np.zeros((NUM_PERSONS, min(
          max(skeleton.num_frames, period),
          max(MAX_FRAMES, skeleton.num_frames)), NUM_JOINTS, 3), np.float32)
      buffer[:, :skeleton.num_frames] = persons
      sample = pre_normalization_2s_agcn(buffer)[:period]
  if len(sample) == 0:
    raise NoSkeletonError(skeleton.path, None,
                          'every body has all joints at exactly zero')
  return sample


# ---- Per-clip normalisation ---------------------------------------------------


def coordinates(channels: str) -> int:
  """How many leading channels are coordinates (a score channel is not)."""
  return 3 if channels == 'xyz' else 2


def center_on_first_frame(x: np.ndarray, joint: int,
                          channels: str = 'xyz') -> np.ndarray:
  """x (T, M, V, C) less joint `joint` of the first person in the first frame,
  in every frame, person and joint (coordinates only)."""
  n = coordinates(channels)
  out = np.array(x, np.float32)
  out[..., :n] -= out[0, 0, joint, :n].copy()
  return out


def min_max(x: np.ndarray, channels: str = 'xyz') -> np.ndarray:
  """Each coordinate of x (T, M, V, C) mapped linearly onto [-1, 1] over the
  whole clip (all frames, persons and joints); one that never varies becomes 0.

  CTR-GCN's NW-UCLA normalisation. It undoes any shift and any positive scale
  of an axis, so a centring or a scaling before it changes nothing; a rotation
  does.
  """
  n = coordinates(channels)
  out = np.array(x, np.float32)
  coords = out[..., :n].reshape(-1, n)
  low, high = coords.min(axis=0), coords.max(axis=0)
  span = high - low
  with np.errstate(divide='ignore', invalid='ignore'):
    scaled = (out[..., :n] - low) / span * 2 - 1
  out[..., :n] = np.where(span > 0, scaled, 0.0)
  return out


# ---- Length and streams ------------------------------------------------------


def pad_or_crop(x: np.ndarray, num_frames: int) -> np.ndarray:
  """Fixes the length of a sample (..., T, M, V, C) to `num_frames`.

  Longer sequences keep their first `num_frames` frames; shorter ones are
  repeated from the start until long enough (2s-AGCN's padding); an empty
  sequence (T = 0) gives zeros.
  """
  x = np.asarray(x)
  length = x.shape[-4]
  if length >= num_frames:
    return x[..., :num_frames, :, :, :]
  if length == 0:
    shape = x.shape[:-4] + (num_frames,) + x.shape[-3:]
    return np.zeros(shape, x.dtype if x.dtype != object else np.float32)
  reps = -(-num_frames // length)
  tiled = np.concatenate([x] * reps, axis=-4)
  return tiled[..., :num_frames, :, :, :]


def to_bone(x: np.ndarray, layout: str | layouts.Layout = 'ntu25',
            channels: str = 'xyz') -> np.ndarray:
  """Bones (..., T, M, V, C): bone[child] = joint[child] - joint[parent] over the
  layout's tree (`layouts`); the centre joint's bone is zero.

  With `channels` 'xys' (x, y, detection score) only x and y are differenced; a
  bone's score is the mean of its two joints' scores, as in PYSKL.
  """
  x = np.asarray(x)
  parents = np.asarray(layouts.get_layout(layout).parents)
  # `take` gives the same array as x[..., parents, :], about 3x faster.
  parent = np.take(x, parents, axis=-2)
  if channels == 'xys':
    return np.concatenate([x[..., :2] - parent[..., :2],
                           (x[..., 2:] + parent[..., 2:]) / 2], axis=-1)
  return x - parent


def to_motion(x: np.ndarray, channels: str = 'xyz') -> np.ndarray:
  """Frame differences (..., T, M, V, C): out[t] = x[t+1] - x[t]; the last
  frame is zero. With `channels` 'xys' the score of out[t] is the mean of the
  two frames' scores, as in PYSKL."""
  x = np.asarray(x)
  out = np.zeros_like(x)
  out[..., :-1, :, :, :] = x[..., 1:, :, :, :] - x[..., :-1, :, :, :]
  if channels == 'xys':
    out[..., :-1, :, :, 2:] = (x[..., 1:, :, :, 2:] + x[..., :-1, :, :, 2:]) / 2
  return out


def select_stream(x: np.ndarray, name: str, layout: str | layouts.Layout = 'ntu25',
                  channels: str = 'xyz') -> np.ndarray:
  """One of `STREAMS` computed from joints x (..., T, M, V, C) of `layout` (a name
  or a `layouts.Layout`) whose last axis holds `channels` (one of `CHANNELS`)."""
  if channels not in CHANNELS:
    raise ValueError(f'unknown channels {channels!r}; expected one of {CHANNELS}')
  if name == 'joint':
    return np.asarray(x)
  if name == 'bone':
    return to_bone(x, layout, channels)
  if name == 'joint_motion':
    return to_motion(x, channels)
  if name == 'bone_motion':
    return to_motion(to_bone(x, layout, channels), channels)
  raise ValueError(f'unknown stream {name!r}; expected one of {STREAMS}')
