"""From a parsed `.skeleton` file to a normalised sample, and the input streams.

This module owns "the builder's preprocessing" (`preprocess_skeleton`: body
selection and 2s-AGCN's pre-normalisation, applied once when records are
written and again on raw files at prediction time) and the pure array
functions applied when samples are read: `pad_or_crop` to a fixed length and
the bone/motion streams.

Layout: a sample is float32 (T, M, V, C) = (frames, persons=2, joints=25 in
Kinect v2 order, coordinates xyz=3). The stream functions accept any leading
batch axes, i.e. (..., T, M, V, C).
"""

from __future__ import annotations

import os

import numpy as np

from stbln_jax.data import skeleton as skeleton_lib

NUM_PERSONS = 2
NUM_JOINTS = skeleton_lib.NUM_JOINTS

# The 24 NTU bones as 1-based (child, parent) Kinect v2 joint numbers. Joint 21
# (spine shoulder) is the centre and has no parent.
NTU_BONES_1BASED = (
    (1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7),
    (9, 21), (10, 9), (11, 10), (12, 11), (13, 1), (14, 13), (15, 14),
    (16, 15), (17, 1), (18, 17), (19, 18), (20, 19), (22, 23), (23, 8),
    (24, 25), (25, 12))
CENTER_JOINT_1BASED = 21
# parent[v] (0-based); the centre is its own parent, so its bone is zero.
_PARENT = np.arange(NUM_JOINTS)
for _child, _parent in NTU_BONES_1BASED:
  _PARENT[_child - 1] = _parent - 1

# 0-based joints used by the pre-normalisation (2s-AGCN's choices).
_SPINE_BASE = 0       # joint 1
_SPINE_MID = 1        # joint 2: centre of every frame, top of the z axis
_LEFT_SHOULDER = 4    # joint 5
_RIGHT_SHOULDER = 8   # joint 9

STREAMS = ('joint', 'bone', 'joint_motion', 'bone_motion')


class NoSkeletonError(skeleton_lib.SkeletonFormatError):
  """A well-formed file in which no frame holds a body (nothing to learn)."""


# ---- Body selection ----------------------------------------------------------


def _motion_energy(track: np.ndarray) -> float:
  """2s-AGCN's `get_nonzero_std`: over the frames where the body is non-zero,
  the std of all its x values (frames x joints), plus that of y, plus z.

  Args:
    track: (T, V, 3) one body, zeros where it is absent.
  """
  present = track.reshape(len(track), -1).sum(-1) != 0
  if not present.any():
    return 0.0
  coords = track[present].astype(np.float64)
  return float(sum(coords[:, :, c].std() for c in range(3)))


def select_bodies(skeleton: skeleton_lib.Skeleton | skeleton_lib.SkeletonXyz,
                  max_bodies: int = NUM_PERSONS) -> np.ndarray:
  """The `max_bodies` most moving bodies of a file, as persons.

  Each body ID is followed over the frames where it appears (zeros elsewhere);
  bodies are ranked by motion energy (`_motion_energy`, 2s-AGCN's) and the top
  `max_bodies` are kept, most energetic first; ties keep the order of first
  appearance. Missing persons are all-zero. Unlike 2s-AGCN, which fills person
  slots by a body's position within each frame and drops bodies past the
  fourth, bodies are grouped by their tracking ID, so a person stays one
  person when the order of bodies in a frame changes.

  Args:
    skeleton: a parsed file, whole (`read_skeleton`) or its coordinates only
      (`read_xyz`).

  Returns:
    float32 (T, max_bodies, 25, 3) with T = `skeleton.num_frames`.
  """
  rows = (skeleton.rows if isinstance(skeleton, skeleton_lib.Skeleton)
          else skeleton)
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
  energy = np.array([_motion_energy(t) for t in tracks])
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
  """2s-AGCN's `pre_normalization` of one sample, kept at its true length.

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
  center = s[:, 0:1, _SPINE_MID:_SPINE_MID + 1].copy()  # (T', 1, 1, 3)
  # s.sum(-1) != 0 (summed in the same order); an axis of 3 is slow to
  # reduce and to broadcast over, so the mask is spelled out per coordinate.
  mask = (s[..., 0] + s[..., 1] + s[..., 2]) != 0
  s -= center
  s *= np.repeat(mask[..., None], 3, axis=-1)
  z_rotation = rotation_onto(s[0, 0, _SPINE_MID] - s[0, 0, _SPINE_BASE],
                             [0.0, 0.0, 1.0])
  shoulders = z_rotation @ (s[0, 0, _RIGHT_SHOULDER] - s[0, 0, _LEFT_SHOULDER])
  x_rotation = rotation_onto(shoulders, [1.0, 0.0, 0.0])
  # Both rotations at once; zeros (absent joints) stay zero.
  return (s @ (x_rotation @ z_rotation).T).astype(np.float32)


def preprocess_skeleton(
    skeleton_or_path: skeleton_lib.Skeleton | str | os.PathLike[str],
) -> np.ndarray:
  """The builder's preprocessing: read, `select_bodies`, `pre_normalize`.

  A path is read with `read_xyz`, which checks the whole file like
  `read_skeleton` but decodes only what the result depends on.

  Args:
    skeleton_or_path: a parsed `Skeleton` or the path of a `.skeleton` file.

  Returns:
    float32 (T', 2, 25, 3) at the sample's true length.

  Raises:
    SkeletonFormatError: the file is malformed.
    NoSkeletonError: no frame holds a (non-zero) body.
  """
  if isinstance(skeleton_or_path, skeleton_lib.Skeleton):
    skeleton = skeleton_lib.SkeletonXyz.from_skeleton(skeleton_or_path)
  else:
    skeleton = skeleton_lib.read_xyz(skeleton_or_path)
  if len(skeleton.body_ids) == 0:
    raise NoSkeletonError(
        skeleton.path, None,
        f'no body in any of its {skeleton.num_frames} frames')
  sample = pre_normalize(select_bodies(skeleton, NUM_PERSONS))
  if len(sample) == 0:
    raise NoSkeletonError(skeleton.path, None,
                          'every body has all joints at exactly zero')
  return sample


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


def to_bone(x: np.ndarray) -> np.ndarray:
  """Bones (..., T, M, V, C): bone[child] = joint[child] - joint[parent] for
  `NTU_BONES_1BASED`; the centre joint 21's bone is zero."""
  x = np.asarray(x)
  # `take` gives the same array as x[..., _PARENT, :], about 3x faster.
  return x - np.take(x, _PARENT, axis=-2)


def to_motion(x: np.ndarray) -> np.ndarray:
  """Frame differences (..., T, M, V, C): out[t] = x[t+1] - x[t]; the last
  frame is zero."""
  x = np.asarray(x)
  out = np.zeros_like(x)
  out[..., :-1, :, :, :] = x[..., 1:, :, :, :] - x[..., :-1, :, :, :]
  return out


def select_stream(x: np.ndarray, name: str) -> np.ndarray:
  """One of `STREAMS` computed from joints x (..., T, M, V, C)."""
  if name == 'joint':
    return np.asarray(x)
  if name == 'bone':
    return to_bone(x)
  if name == 'joint_motion':
    return to_motion(x)
  if name == 'bone_motion':
    return to_motion(to_bone(x))
  raise ValueError(f'unknown stream {name!r}; expected one of {STREAMS}')
