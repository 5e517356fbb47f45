"""Synthetic NTU RGB+D: real-format `.skeleton` files of motion-defined actions.

This module owns a small, learnable stand-in for NTU RGB+D that the demo and
the tests train on. `write_synthetic_dataset` writes files named
`SsssCcccPpppRrrrAaaa.skeleton` in exactly the NTU text format (CRLF, the
10-value body line, 12 values per joint with depth/colour pixels and joint
quaternions), so the same reader, builder, splits and class names apply.

What varies, and why:
  * Actions (`SYNTHETIC_ACTIONS`) differ by how the body moves over time, not
    by a static pose. They come in groups that visit the same poses for the
    same share of the time and differ only in order, rhythm or who moves
    when, so the time-averaged pose tells the group and not the action:
    sitting down / standing up / picking up (one way, the other way, down and
    up); drinking / eating / brushing teeth / coughing (the hand held at the
    mouth, raised again and again, scrubbing, or the torso rocking);
    handshaking / giving something / punching, two-person interactions (both
    reach at once and pump, one reaches after the other, quick jabs fended
    off); putting on / taking off a cap (slow up and quick down, or the
    reverse).
  * Subjects have their own height and bone lengths.
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
in its own frame (X right, Y up, facing -Z) by forward kinematics from joint
angles, then turned and placed in front of the camera.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Callable

import numpy as np

from stbln_jax.data import ntu

NUM_JOINTS = ntu.NUM_JOINTS

# Kinect v2 projection fitted on the real NTU samples: depth pixels
# (512x424) and colour pixels (1920x1080) from x/z and y/z.
_DEPTH = (258.8, 368.3, 209.0, -367.0)
_COLOR = (959.5, 1057.7, 555.8, -1055.3, 51.5)  # last: colour camera offset
# Kinect tracking IDs look like 72057594037944738 (2**56 + small counter).
_ID_BASE = 2**56
_CAMERA_YAW_DEG = {1: 0.0, 2: 45.0, 3: -45.0}
_REPLICATION_YAW_DEG = 30.0


# ---- The body ----------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Body:
  """Bone lengths of one subject (metres)."""
  spine_low: float = 0.28   # 1 -> 2
  spine_up: float = 0.22    # 2 -> 21
  neck: float = 0.08        # 21 -> 3
  head: float = 0.12        # 3 -> 4
  shoulder: float = 0.17    # 21 -> 5 / 9, sideways
  upper_arm: float = 0.28
  forearm: float = 0.25
  hand: float = 0.08
  hand_tip: float = 0.06
  thumb: float = 0.05
  hip: float = 0.08         # 1 -> 13 / 17, sideways
  thigh: float = 0.41
  shin: float = 0.40
  foot: float = 0.12

  @classmethod
  def of_subject(cls, rng: np.random.Generator) -> _Body:
    height = rng.uniform(0.86, 1.14)
    base = cls()
    return cls(**{f.name: getattr(base, f.name) * height
                  * (1.0 + 0.05 * rng.standard_normal())
                  for f in dataclasses.fields(cls)})


# Pose parameters over time; angles in radians. root_*: the spine base in the
# body's own frame; yaw: the way the body faces; pos_*: where it stands in the
# scene (after turning). Arms: pitch 0 hangs down,
# pi/2 points forward, pi up; yaw turns a raised arm from forward (0) to the
# side (pi/2, outwards). Elbow/knee: flexion. Hip: forward swing of the thigh.
_POSE_NEUTRAL = {
    'root_x': 0.0, 'root_y': 0.0, 'root_z': 0.0, 'yaw': 0.0,
    'pos_x': 0.0, 'pos_z': 0.0,
    'torso_pitch': 0.05,
    'l_pitch': 0.12, 'l_yaw': np.pi / 2, 'l_elbow': 0.2,
    'r_pitch': 0.12, 'r_yaw': np.pi / 2, 'r_elbow': 0.2,
    'l_hip': 0.0, 'l_knee': 0.0, 'r_hip': 0.0, 'r_knee': 0.0,
}


def _neutral_pose(num_frames: int) -> dict[str, np.ndarray]:
  return {k: np.full((num_frames,), v) for k, v in _POSE_NEUTRAL.items()}


def _add_habits(pose: dict[str, np.ndarray], rng: np.random.Generator):
  """A subject's own way of standing: arm carriage and posture."""
  for arm in ('l', 'r'):
    pose[f'{arm}_pitch'] = pose[f'{arm}_pitch'] + rng.uniform(-0.08, 0.15)
    pose[f'{arm}_elbow'] = pose[f'{arm}_elbow'] + rng.uniform(0.0, 0.3)
  pose['torso_pitch'] = pose['torso_pitch'] + rng.uniform(-0.05, 0.1)


def _unit(v: np.ndarray) -> np.ndarray:
  return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _arm_direction(pitch, yaw, side):
  """(T, 3) upper-arm direction; side +1 right arm, -1 left arm."""
  return np.stack([side * np.sin(pitch) * np.sin(yaw), -np.cos(pitch),
                   -np.sin(pitch) * np.cos(yaw)], -1)


def _bend(direction, flexion, towards):
  """Turns `direction` (T, 3) by `flexion` towards the (T, 3) or (3,) vector
  `towards` (made perpendicular to it): how elbows bend."""
  towards = np.broadcast_to(towards, direction.shape)
  perp = towards - np.sum(towards * direction, -1, keepdims=True) * direction
  perp = _unit(perp + 1e-9)
  return (np.cos(flexion)[:, None] * direction
          + np.sin(flexion)[:, None] * perp)


def _forward_kinematics(pose: dict[str, np.ndarray], body: _Body) -> np.ndarray:
  """(T, 25, 3) joints in the scene: built in the body's own frame (X
  right, Y up, facing -Z, spine base at the origin when standing), turned by
  `yaw` and moved to `pos_*`."""
  num_frames = len(pose['yaw'])
  joints = np.zeros((num_frames, NUM_JOINTS, 3))
  j = lambda n: n - 1  # noqa: E731  1-based Kinect joint number -> index
  tp = pose['torso_pitch']
  up = np.stack([np.zeros_like(tp), np.cos(tp), -np.sin(tp)], -1)
  right = np.array([1.0, 0.0, 0.0])
  root = np.stack([pose['root_x'], pose['root_y'], pose['root_z']], -1)
  joints[:, j(1)] = root
  joints[:, j(2)] = root + body.spine_low * up
  joints[:, j(21)] = joints[:, j(2)] + body.spine_up * up
  joints[:, j(3)] = joints[:, j(21)] + body.neck * up
  joints[:, j(4)] = joints[:, j(3)] + body.head * up
  forward_up = np.array([0.0, 1.0, -1.0]) / np.sqrt(2.0)
  arms = (('l', -1.0, (5, 6, 7, 8, 22, 23)),
          ('r', 1.0, (9, 10, 11, 12, 24, 25)))
  for name, side, (sh, el, wr, ha, tip, th) in arms:
    joints[:, j(sh)] = (joints[:, j(21)] + side * body.shoulder * right
                        - 0.03 * up)
    upper = _arm_direction(pose[f'{name}_pitch'], pose[f'{name}_yaw'], side)
    joints[:, j(el)] = joints[:, j(sh)] + body.upper_arm * upper
    fore = _bend(upper, pose[f'{name}_elbow'], forward_up)
    joints[:, j(wr)] = joints[:, j(el)] + body.forearm * fore
    joints[:, j(ha)] = joints[:, j(wr)] + body.hand * fore
    joints[:, j(tip)] = joints[:, j(ha)] + body.hand_tip * fore
    thumb = _unit(fore + np.array([-0.5 * side, 0.0, -0.5]))
    joints[:, j(th)] = joints[:, j(wr)] + (body.hand + body.thumb) * thumb
  legs = (('l', -1.0, (13, 14, 15, 16)), ('r', 1.0, (17, 18, 19, 20)))
  zero = np.zeros((num_frames,))
  for name, side, (hp, kn, an, ft) in legs:
    hip, knee = pose[f'{name}_hip'], pose[f'{name}_knee']
    joints[:, j(hp)] = root + np.array([side * body.hip, -0.06, 0.0])
    thigh = np.stack([zero, -np.cos(hip), -np.sin(hip)], -1)
    shin = np.stack([zero, -np.cos(hip - knee), -np.sin(hip - knee)], -1)
    joints[:, j(kn)] = joints[:, j(hp)] + body.thigh * thigh
    joints[:, j(an)] = joints[:, j(kn)] + body.shin * shin
    joints[:, j(ft)] = joints[:, j(an)] + body.foot * _unit(
        np.array([0.0, -0.3, -1.0]))
  yaw = pose['yaw']
  cos, sin = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
  x, z = joints[..., 0].copy(), joints[..., 2]
  joints[..., 0] = cos * x + sin * z + pose['pos_x'][:, None]
  joints[..., 2] = -sin * x + cos * z + pose['pos_z'][:, None]
  return joints


def _plant_feet(pose, body: _Body):
  """Moves the root so the feet stay on the floor where they stand, given
  the hip and knee angles (for sitting, squatting, take-off and landing)."""
  def ankle(hip, knee):
    return (-body.thigh * np.cos(hip) - body.shin * np.cos(hip - knee),
            -body.thigh * np.sin(hip) - body.shin * np.sin(hip - knee))
  y, z = ankle(pose['r_hip'], pose['r_knee'])
  y0, z0 = ankle(0.0, 0.0)
  pose['root_y'] = pose['root_y'] + (y0 - y)
  pose['root_z'] = pose['root_z'] + (z0 - z)


# ---- Motions -----------------------------------------------------------------
#
# Every action is a few limbs driven by activations a(u) in [0, 1] over the
# action's progress u; a pose function turns the activations into joint
# angles. Actions come in groups that share one pose function and differ only
# in the timing of the activations: played backwards, repeated, or which limb
# (or person) moves when. Within a group the activations spend the same time
# at every level, so the time-averaged pose says which group, not which action.

def _smooth(u):
  """Smoothstep on [0, 1], clipped outside."""
  u = np.clip(u, 0.0, 1.0)
  return u * u * (3.0 - 2.0 * u)


def _window(u, start, stop):
  """Progress 0 -> 1 through [start, stop] (smooth)."""
  return _smooth((u - start) / (stop - start))


def _bump(u, start, stop):
  """0 -> 1 -> 0 over [start, stop] (smooth)."""
  mid = 0.5 * (start + stop)
  return _window(u, start, mid) - _window(u, mid, stop)


def _gesture(u, start, rise, hold, fall):
  """0 -> 1 over `rise`, held for `hold`, 1 -> 0 over `fall`, from `start`."""
  top = start + rise
  return _window(u, start, top) - _window(u, top + hold, top + hold + fall)


def _repeated(u, times, gesture):
  """`gesture` (a function of v in [0, 1]) done `times` times in a row: each
  repetition is faster, the time spent at each level is the same."""
  v = np.clip(u, 0.0, 1.0) * times
  return gesture(np.minimum(v - np.floor(v), 1.0) * (v < times))


@dataclasses.dataclass(frozen=True)
class _Style:
  """How one performance goes: amplitude, rhythm and timing."""
  amplitude: float  # scales the excursions (about 0.8-1.2)
  cycles: int       # repetitions of repeated gestures, less 1 (1 or 2)
  phase: float      # start phase of oscillations (radians)
  side: float       # +1 / -1: which way a free choice goes


# Squatting: sit down, stand up and pick up visit the same poses.

def _squat_pose(a, body, style):
  """Knees and hips bent by a (0 standing, 1 seated or crouched); the torso
  leans forward most on the way, and the arms come forward for balance."""
  pose = _neutral_pose(len(a))
  depth = 0.85 + 0.15 * style.amplitude
  pose['r_hip'] = pose['l_hip'] = 1.45 * depth * a
  pose['r_knee'] = pose['l_knee'] = 1.5 * depth * a
  pose['torso_pitch'] = 0.05 + 1.6 * style.amplitude * a * (1 - a)
  pose['l_pitch'] = pose['r_pitch'] = 0.12 + 0.5 * a * style.amplitude
  _plant_feet(pose, body)
  return pose


def _sit_down(u, body, style):
  return [_squat_pose(_window(u, 0.25, 0.75), body, style)]


def _stand_up(u, body, style):
  return _sit_down(1.0 - u, body, style)


def _pick_up(u, body, style):
  """Down and up again. As long in each pose as sitting down, counting the
  idle frames: a standing and a crouched end, against two standing ends."""
  return [_squat_pose(_gesture(u, 0.0625, 0.25, 0.375, 0.25), body, style)]


# Right hand to the mouth: drinking, eating, brushing teeth, coughing.

def _hand_to_mouth(a, style, scrub=0.0, jerk=0.0):
  """The right hand raised to the mouth by a; `scrub` turns it side to side
  there (radians), `jerk` bends the torso (radians)."""
  pose = _neutral_pose(len(a))
  pose['r_pitch'] = 0.12 + (0.75 + 0.1 * style.amplitude) * a
  pose['r_yaw'] = np.pi / 2 - 1.2 * a + scrub
  pose['r_elbow'] = 0.2 + 2.0 * a
  pose['torso_pitch'] = pose['torso_pitch'] + jerk
  return pose


def _to_mouth(u):
  return _gesture(u, 0.1, 0.2, 0.4, 0.2)


def _drink_water(u, body, style):
  return [_hand_to_mouth(_to_mouth(u), style)]


def _eat_meal(u, body, style):
  return [_hand_to_mouth(_repeated(u, style.cycles + 1, _to_mouth), style)]


def _brush_teeth(u, body, style):
  """Hand at the mouth, scrubbing round and round (side to side and up and
  down), the shoulders twisting a little with each stroke."""
  a = _to_mouth(u)
  at_mouth = 0.6 * style.amplitude * _window(a, 0.8, 1.0)
  turn = 2 * np.pi * (3 + style.cycles) * u + style.phase
  pose = _hand_to_mouth(a, style, scrub=at_mouth * np.sin(turn))
  pose['r_elbow'] = pose['r_elbow'] + 0.8 * at_mouth * np.cos(turn)
  pose['yaw'] = pose['yaw'] + 0.25 * at_mouth * np.sin(turn)
  return [pose]


def _cough(u, body, style):
  """Hand at the mouth, the torso rocking forward and back with each cough."""
  a = _to_mouth(u)
  coughs = np.sin(2 * np.pi * (style.cycles + 1) * _window(u, 0.3, 0.7))
  return [_hand_to_mouth(a, style, jerk=0.3 * style.amplitude * coughs)]


# Both hands to the top of the head: putting on and taking off a cap.

def _hands_to_head(a, style):
  pose = _neutral_pose(len(a))
  for arm in ('l', 'r'):
    pose[f'{arm}_pitch'] = 0.12 + (2.2 + 0.2 * style.amplitude) * a
    pose[f'{arm}_yaw'] = np.pi / 2 - 0.7 * a
    pose[f'{arm}_elbow'] = 0.2 + 1.7 * a
  return pose


def _put_on_cap(u, body, style):
  """Slowly up with the cap, pull it on, hands down quickly."""
  return [_hands_to_head(_gesture(u, 0.1, 0.4, 0.2, 0.15), style)]


def _take_off_cap(u, body, style):
  return _put_on_cap(1.0 - u, body, style)


# Two persons facing each other, right arms reaching towards the other.

def _facing_pair(u, gap):
  """Two neutral poses facing each other `gap` metres apart (T,) along x."""
  a, b = _neutral_pose(len(u)), _neutral_pose(len(u))
  a['pos_x'], b['pos_x'] = -0.5 * gap, 0.5 * gap
  a['yaw'], b['yaw'] = np.full(len(u), -np.pi / 2), np.full(len(u), np.pi / 2)
  return a, b


def _reach(pose, a, style, shake=0.0):
  """The right arm reaches forward towards the partner by a."""
  pose['r_pitch'] = 0.12 + (1.0 + 0.1 * style.amplitude) * a + shake
  pose['r_yaw'] = np.pi / 2 - (np.pi / 2 + 0.25) * a
  pose['r_elbow'] = 0.2 + 0.35 * a + 1.5 * shake


def _pair_reaching(u, style, first, second, shake=None):
  gap = np.full(len(u), 0.95 + 0.15 * (style.amplitude - 1.0))
  a, b = _facing_pair(u, gap)
  _reach(a, first, style, 0.0 if shake is None else shake)
  _reach(b, second, style, 0.0 if shake is None else shake)
  if shake is not None:  # the upper bodies bob with the pumping hands
    a['torso_pitch'] = a['torso_pitch'] + 0.5 * shake
    b['torso_pitch'] = b['torso_pitch'] + 0.5 * shake
  return [a, b]


def _offer(u):
  return _gesture(u, 0.0, 0.15, 0.3, 0.15)


def _shaking_hands(u, body, style):
  """Both reach at once and shake: the hands go up and down together."""
  a = _offer(u - 0.2)
  shake = 0.35 * style.amplitude * _window(a, 0.8, 1.0) * np.sin(
      2 * np.pi * (style.cycles + 3) * u + style.phase)
  return _pair_reaching(u, style, a, a, shake)


def _giving_object(u, body, style):
  """One offers, the other takes while it is held out, then both let go."""
  return _pair_reaching(u, style, _offer(u - 0.05), _offer(u - 0.35))


def _punching(u, body, style):
  """Quick jabs while the other holds a forearm up to fend them off and
  rocks back with each (about its own stance: the mean arm-out time of a
  jab is 0.45)."""
  jabs = _repeated(u, style.cycles + 2, _offer)
  a, b = _pair_reaching(u, style, jabs, _offer(u - 0.2))
  b['torso_pitch'] = b['torso_pitch'] - 0.3 * style.amplitude * (jabs - 0.45)
  return [a, b]


@dataclasses.dataclass(frozen=True)
class SyntheticAction:
  """One synthetic class and the NTU action it stands for.

  Attributes:
    name: NTU's class name.
    ntu_action: NTU's 1-based action id, written as `Aaaa` in file names.
    num_persons: bodies performing it (2 for interactions).
    motion: (u (T,) in [0, 1], body, style) -> one pose dict per person.
  """
  name: str
  ntu_action: int
  num_persons: int
  motion: Callable = dataclasses.field(repr=False)


# Class k of the generator is SYNTHETIC_ACTIONS[k]; file names carry its NTU
# id, so the builder's label is ntu_action - 1 and NTU's class names apply.
# The first ten (the default) are three groups of 3, 4 and 3 actions that
# share their poses; the last two are a third such group.
SYNTHETIC_ACTIONS = (
    SyntheticAction('sitting down', 8, 1, _sit_down),
    SyntheticAction('standing up (from sitting position)', 9, 1, _stand_up),
    SyntheticAction('pickup', 6, 1, _pick_up),
    SyntheticAction('drink water', 1, 1, _drink_water),
    SyntheticAction('eat meal/snack', 2, 1, _eat_meal),
    SyntheticAction('brushing teeth', 3, 1, _brush_teeth),
    SyntheticAction('sneeze/cough', 41, 1, _cough),
    SyntheticAction('handshaking', 58, 2, _shaking_hands),
    SyntheticAction('giving something to other person', 56, 2,
                    _giving_object),
    SyntheticAction('punching/slapping other person', 50, 2, _punching),
    SyntheticAction('put on a hat/cap', 20, 1, _put_on_cap),
    SyntheticAction('take off a hat/cap', 21, 1, _take_off_cap),
)


def action_index(ntu_action: int) -> int:
  """The generator's class k for an NTU action id (inverse of the table)."""
  for k, action in enumerate(SYNTHETIC_ACTIONS):
    if action.ntu_action == ntu_action:
      return k
  raise ValueError(f'NTU action {ntu_action} is not synthesised; known: '
                   f'{[a.ntu_action for a in SYNTHETIC_ACTIONS]}')


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
  style = _Style(amplitude=perf.uniform(0.75, 1.25),
                 cycles=int(perf.integers(1, 3)),
                 phase=perf.uniform(-0.6, 0.6),
                 side=float(perf.choice([-1.0, 1.0])))
  # Speed: the action fills a random part of the performance (idle before
  # and after), and goes faster early or late (a smooth time warp).
  start, stop = perf.uniform(0.0, 0.2), perf.uniform(0.8, 1.0)
  warp = perf.uniform(-0.5, 0.5)
  facing = _REPLICATION_YAW_DEG * (1 if replication % 2 else -1)
  facing += perf.uniform(-8.0, 8.0)
  bodies = [_Body.of_subject(_rng(seed, 2, subject))]
  if action.num_persons == 2:  # a partner from the other subjects
    bodies.append(_Body.of_subject(_rng(seed, 3, setup, subject, replication)))
  # The recording: this camera's clip of the performance.
  rec = _rng(seed, 4, setup, camera, subject, replication, label)
  num_frames = max(8, length + int(rec.integers(-3, 4)))
  offset = int(rec.integers(-2, 3))
  t = (np.arange(num_frames) + offset) / max(length - 1, 1)
  u = np.clip((t - start) / (stop - start), 0.0, 1.0)
  u = u + warp * u * (1.0 - u)
  poses = action.motion(u, bodies[0], style)
  for p, pose in enumerate(poses):
    _add_habits(pose, _rng(seed, 5, subject if p == 0 else 1000 + subject))
  view = _yaw_matrix(_CAMERA_YAW_DEG[camera] + rec.uniform(-4.0, 4.0))
  place = np.array([rec.uniform(-0.2, 0.2), rec.uniform(-0.15, 0.2),
                    rec.uniform(2.6, 3.6)])
  # A slow drift of the whole scene, like a subject not standing still.
  drift = 0.02 * np.sin(2 * np.pi * (t[:, None] + rec.uniform(size=3)))
  performers = []
  for p, (pose, body) in enumerate(zip(poses, bodies)):
    local = _forward_kinematics(pose, body)
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
  bone = _unit(xyz[:, children] - xyz[:, parents] + 1e-12)
  # Half-way quaternion between +y and the bone.
  w = 1.0 + bone[..., 1]
  axis = np.stack([bone[..., 2], np.zeros_like(w), -bone[..., 0]], -1)
  q = np.concatenate([w[..., None], axis], -1)
  quats[:, parents] = _unit(q + np.array([1e-9, 0, 0, 0]))
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
