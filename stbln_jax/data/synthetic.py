"""Synthetic NTU RGB+D: real-format `.skeleton` files of motion-defined actions.

This module owns a small, learnable stand-in for NTU RGB+D that the demo and
the tests train on. `write_synthetic_dataset` writes files named
`SsssCcccPpppRrrrAaaa.skeleton` in exactly the NTU text format (CRLF, the
10-value body line, 12 values per joint with depth/colour pixels and joint
quaternions), so the same reader, builder, splits and class names apply.

What varies, and why:
  * Actions (`SYNTHETIC_ACTIONS`, `stbln_jax.data.motions`) differ by how
    the body moves over time, not by a static pose; subjects have their own
    height and bone lengths.
  * A performance (setup, subject, replication, action) has its own length,
    idle frames before and after, speed profile (faster early or late),
    amplitude, number of repetitions and phase; like NTU, the three cameras
    record the same performance, each starting and stopping a few frames
    apart, with its own sensor noise.
  * Cameras 1, 2, 3 look from 0, +45 and -45 degrees about the vertical axis
    at 2.6-3.6 m; replication 1 faces 30 degrees to one side, replication 2 to
    the other. Joints turned away from the camera are noisier and sometimes
    "inferred" (tracking state 1).
  * Sensor noise, occasional runs of dropped frames (0 bodies), and an
    occasional short-lived spurious body (a small, almost static blob with its
    own tracking ID, like NTU's false detections), so that choosing bodies by
    motion energy matters.

Coordinates follow Kinect v2 camera space (metres): x towards the subject's
right when facing the camera, y up, z away from the camera. A body is built
in its own frame by forward kinematics from joint angles (`motions`), then
turned and placed in front of the camera.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

import numpy as np

from stbln_jax.data import motions
from stbln_jax.data import ntu
# The classes are the motions'; offered here too, beside the files they fill.
from stbln_jax.data.motions import (  # noqa: F401
    action_index, SYNTHETIC_ACTIONS, SyntheticAction)

NUM_JOINTS = ntu.NUM_JOINTS

# Kinect v2 projection fitted on the real NTU samples: depth pixels
# (512x424) and colour pixels (1920x1080) from x/z and y/z.
_DEPTH = (258.8, 368.3, 209.0, -367.0)
_COLOR = (959.5, 1057.7, 555.8, -1055.3, 51.5)  # last: colour camera offset
# Kinect tracking IDs look like 72057594037944738 (2**56 + small counter).
_ID_BASE = 2**56
_CAMERA_YAW_DEG = {1: 0.0, 2: 45.0, 3: -45.0}
_REPLICATION_YAW_DEG = 30.0


# ---- Sequences ---------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class SyntheticBody:
  """One tracked body of a synthetic file.

  Attributes:
    body_id: its Kinect-like tracking ID.
    present: bool (T,), the frames it is in.
    xyz: float64 (T, 25, 3) camera coordinates (meaningful where present).
    tracking_state: int8 (T, 25), 2 tracked / 1 inferred.
    lean: float64 (T, 2) leanX, leanY.
  """
  body_id: int
  present: np.ndarray
  xyz: np.ndarray
  tracking_state: np.ndarray
  lean: np.ndarray


@dataclasses.dataclass(frozen=True)
class SyntheticSequence:
  """What one synthetic `.skeleton` file holds.

  Attributes:
    name: its sample name (setup, camera, subject, replication, NTU action).
    label: the generator's class k (`SYNTHETIC_ACTIONS[k]`).
    bodies: the performers first, then any spurious body.
  """
  name: ntu.SampleName
  label: int
  bodies: tuple[SyntheticBody, ...]

  @property
  def num_frames(self) -> int:
    return len(self.bodies[0].present)


def _rng(seed: int, *keys: int) -> np.random.Generator:
  return np.random.default_rng([seed, *keys])


def _yaw_matrix(degrees: float) -> np.ndarray:
  a = np.deg2rad(degrees)
  return np.array([[np.cos(a), 0.0, np.sin(a)], [0.0, 1.0, 0.0],
                   [-np.sin(a), 0.0, np.cos(a)]])


def generate_sequence(label: int, *, subject: int = 1, camera: int = 1,
                      replication: int = 1, setup: int = 1,
                      frames: tuple[int, int] = (40, 80), seed: int = 0,
                      noise: float = 0.006, drop_rate: float = 0.15,
                      spurious_rate: float = 0.2) -> SyntheticSequence:
  """Generates one synthetic sample in camera coordinates.

  Args:
    label: the class k, an index into `SYNTHETIC_ACTIONS`.
    subject, camera, replication, setup: NTU ids (1-based); camera in 1..3.
    frames: (min, max) length of a performance in frames.
    seed: the dataset seed; with the ids it fixes everything.
    noise: std (metres) of the per-joint sensor noise.
    drop_rate: probability that a file has runs of frames with no body.
    spurious_rate: probability that a file has a short-lived spurious body.

  Returns:
    `SyntheticSequence`; the same (setup, subject, replication, label) is the
    same performance under every camera.
  """
  if not 0 <= label < len(SYNTHETIC_ACTIONS):
    raise ValueError(f'label {label} not in [0, {len(SYNTHETIC_ACTIONS)})')
  if camera not in _CAMERA_YAW_DEG:
    raise ValueError(f'camera {camera} not in {sorted(_CAMERA_YAW_DEG)}')
  action = SYNTHETIC_ACTIONS[label]
  # The performance: shared by the three cameras.
  perf = _rng(seed, 1, setup, subject, replication, label)
  length = int(perf.integers(frames[0], frames[1] + 1))
  style = motions.Style(amplitude=perf.uniform(0.75, 1.25),
                 cycles=int(perf.integers(1, 3)),
                 phase=perf.uniform(-0.6, 0.6),
                 side=float(perf.choice([-1.0, 1.0])))
  # Speed: the action fills a random part of the performance (idle before
  # and after), and goes faster early or late (a smooth time warp).
  start, stop = perf.uniform(0.0, 0.2), perf.uniform(0.8, 1.0)
  warp = perf.uniform(-0.5, 0.5)
  facing = _REPLICATION_YAW_DEG * (1 if replication % 2 else -1)
  facing += perf.uniform(-8.0, 8.0)
  bodies = [motions.Body.of_subject(_rng(seed, 2, subject))]
  if action.num_persons == 2:  # a partner from the other subjects
    bodies.append(
        motions.Body.of_subject(_rng(seed, 3, setup, subject, replication)))
  # The recording: this camera's clip of the performance.
  rec = _rng(seed, 4, setup, camera, subject, replication, label)
  num_frames = max(8, length + int(rec.integers(-3, 4)))
  offset = int(rec.integers(-2, 3))
  t = (np.arange(num_frames) + offset) / max(length - 1, 1)
  u = np.clip((t - start) / (stop - start), 0.0, 1.0)
  u = u + warp * u * (1.0 - u)
  poses = action.motion(u, bodies[0], style)
  for p, pose in enumerate(poses):
    habit = subject if p == 0 else 1000 + subject
    motions.add_habits(pose, _rng(seed, 5, habit))
  view = _yaw_matrix(_CAMERA_YAW_DEG[camera] + rec.uniform(-4.0, 4.0))
  place = np.array([rec.uniform(-0.2, 0.2), rec.uniform(-0.15, 0.2),
                    rec.uniform(2.6, 3.6)])
  # A slow drift of the whole scene, like a subject not standing still.
  drift = 0.02 * np.sin(2 * np.pi * (t[:, None] + rec.uniform(size=3)))
  performers = []
  for p, (pose, body) in enumerate(zip(poses, bodies)):
    local = motions.forward_kinematics(pose, body)
    world = local @ _yaw_matrix(facing).T
    xyz = world @ view.T + place + drift[:, None, :]
    xyz, state = _sensor(xyz, rec, noise)
    lean = np.stack([0.03 * rec.standard_normal(num_frames),
                     -np.sin(pose['torso_pitch'])], -1)
    performers.append(SyntheticBody(
        body_id=_ID_BASE + int(rec.integers(1000, 60000)) + 7 * p,
        present=np.ones((num_frames,), bool), xyz=xyz, tracking_state=state,
        lean=lean))
  if rec.uniform() < drop_rate:
    for _ in range(int(rec.integers(1, 3))):
      first = int(rec.integers(1, num_frames - 3))
      for b in performers:
        b.present[first:first + int(rec.integers(1, 4))] = False
  extra = []
  if rec.uniform() < spurious_rate:
    extra.append(_spurious_body(num_frames, rec, noise))
  name = ntu.SampleName(setup, camera, subject, replication,
                                 action.ntu_action)
  return SyntheticSequence(name=name, label=label,
                           bodies=tuple(performers + extra))


def _sensor(xyz, rng, noise):
  """Kinect-like noise: joints turned away from the camera (further than the
  body's middle) are noisier and sometimes only inferred."""
  depth = xyz[..., 2] - xyz[..., 2].mean(-1, keepdims=True)
  hidden = depth > 0.08
  sigma = noise * np.where(hidden, 2.5, 1.0)[..., None]
  xyz = xyz + sigma * rng.standard_normal(xyz.shape)
  inferred = (hidden & (rng.uniform(size=hidden.shape) < 0.3)) | (
      rng.uniform(size=hidden.shape) < 0.01)
  state = np.where(inferred, 1, 2).astype(np.int8)
  return xyz, state


def _spurious_body(num_frames, rng, noise):
  """A false detection: a small, nearly static blob for a few frames."""
  lifetime = int(rng.integers(4, min(20, num_frames) + 1))
  first = int(rng.integers(0, num_frames - lifetime + 1))
  present = np.zeros((num_frames,), bool)
  present[first:first + lifetime] = True
  centre = np.array([rng.choice([-1.0, 1.0]) * rng.uniform(0.8, 1.4),
                     rng.uniform(-0.6, 0.3), rng.uniform(2.5, 4.0)])
  shape = 0.06 * rng.standard_normal((NUM_JOINTS, 3))
  xyz = centre + shape + 2 * noise * rng.standard_normal(
      (num_frames, NUM_JOINTS, 3))
  state = np.where(rng.uniform(size=(num_frames, NUM_JOINTS)) < 0.5, 1,
                   2).astype(np.int8)
  return SyntheticBody(body_id=_ID_BASE + int(rng.integers(60000, 90000)),
                       present=present, xyz=xyz, tracking_state=state,
                       lean=np.zeros((num_frames, 2)))


# ---- The text format ---------------------------------------------------------

# The bone each joint's quaternion orients: to its child in Kinect's tree
# (the first, for joints with several). Joints without a child (head, feet,
# hand tips, thumbs) carry a zero quaternion in NTU files.
_CHILD = {}
for _child, _parent in ntu.KINECT_BONES_1BASED:
  _CHILD.setdefault(_parent, _child)
_JOINT_LINE = '%.7G %.7G %.7G %.7G %.7G %.7G %.7G %.7G %.7G %.7G %.7G %d\r\n'
_BODY_BLOCK = _JOINT_LINE * NUM_JOINTS


def _orientations(xyz: np.ndarray) -> np.ndarray:
  """(T, 25, 4) unit quaternions (w, x, y, z) turning +y onto each joint's
  bone to its child; zeros for joints without a child."""
  quats = np.zeros(xyz.shape[:-1] + (4,))
  parents = np.array(list(_CHILD)) - 1
  children = np.array(list(_CHILD.values())) - 1
  bone = motions.unit(xyz[:, children] - xyz[:, parents] + 1e-12)
  # Half-way quaternion between +y and the bone.
  w = 1.0 + bone[..., 1]
  axis = np.stack([bone[..., 2], np.zeros_like(w), -bone[..., 0]], -1)
  q = np.concatenate([w[..., None], axis], -1)
  quats[:, parents] = motions.unit(q + np.array([1e-9, 0, 0, 0]))
  return quats


def _project(xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Depth (…, 2) and colour (…, 2) pixel coordinates of camera points."""
  z = np.maximum(xyz[..., 2], 0.3)
  u, v = xyz[..., 0] / z, xyz[..., 1] / z
  depth = np.stack([_DEPTH[0] + _DEPTH[1] * u, _DEPTH[2] + _DEPTH[3] * v], -1)
  color = np.stack([_COLOR[0] + _COLOR[1] * u + _COLOR[4] / z,
                    _COLOR[2] + _COLOR[3] * v], -1)
  return depth, color


def to_skeleton_text(sequence: SyntheticSequence) -> bytes:
  """The `.skeleton` file (CRLF, 7 significant digits) for a sequence."""
  blocks = []
  for body in sequence.bodies:
    depth, color = _project(body.xyz)
    values = np.concatenate(
        [body.xyz, depth, color, _orientations(body.xyz),
         body.tracking_state[..., None]], -1)  # (T, 25, 12)
    info_rng = np.random.default_rng(body.body_id % 2**32)
    hands = info_rng.integers(0, 2, 2), info_rng.integers(1, 4, 2)
    head = (f'{body.body_id} 0 {hands[0][0]} {hands[1][0]} {hands[0][1]} '
            f'{hands[1][1]} 0')
    blocks.append((head, values))
  lines = [f'{sequence.num_frames}\r\n']
  for t in range(sequence.num_frames):
    here = [(b, block) for b, block in zip(sequence.bodies, blocks)
            if b.present[t]]
    lines.append(f'{len(here)}\r\n')
    for body, (head, values) in here:
      lean_x, lean_y = body.lean[t]
      lines.append(f'{head} {lean_x:.7G} {lean_y:.7G} 2\r\n25\r\n')
      lines.append(_BODY_BLOCK % tuple(values[t].ravel().tolist()))
  return ''.join(lines).encode('ascii')


def write_synthetic_dataset(
    out_dir: str | os.PathLike[str], *, num_classes: int = 10,
    subjects: tuple[int, ...] = tuple(range(1, 11)),
    cameras: tuple[int, ...] = (1, 2, 3),
    replications: tuple[int, ...] = (1, 2), setups: tuple[int, ...] = (1,),
    frames: tuple[int, int] = (40, 80), seed: int = 0,
    **sequence_kwargs) -> list[pathlib.Path]:
  """Writes one `.skeleton` file per (setup, camera, subject, replication,
  class) under `out_dir`, named like NTU's `SsssCcccPpppRrrrAaaa.skeleton`.

  Args:
    out_dir: created if missing.
    num_classes: the first `num_classes` of `SYNTHETIC_ACTIONS` (<= 12).
    subjects, cameras, replications, setups: NTU ids (1-based) to write.
    frames: (min, max) performance length.
    seed: fixes every file.
    **sequence_kwargs: passed on to `generate_sequence` (noise, drop_rate,
      spurious_rate).

  Returns:
    The written paths, sorted.
  """
  if not 1 <= num_classes <= len(SYNTHETIC_ACTIONS):
    raise ValueError(f'num_classes must be in 1..{len(SYNTHETIC_ACTIONS)}, '
                     f'got {num_classes}')
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  paths = []
  for setup in setups:
    for camera in cameras:
      for subject in subjects:
        for replication in replications:
          for label in range(num_classes):
            sequence = generate_sequence(
                label, subject=subject, camera=camera,
                replication=replication, setup=setup, frames=frames,
                seed=seed, **sequence_kwargs)
            path = out / f'{sequence.name.name}.skeleton'
            path.write_bytes(to_skeleton_text(sequence))
            paths.append(path)
  return sorted(paths)
