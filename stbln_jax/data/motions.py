"""The synthetic actions: a parametric body and how each action moves it.

This module owns the motions behind `stbln_jax.data.synthetic`: a `Body` of
one subject's bone lengths, poses as joint angles over time,
`forward_kinematics` from a pose to the 25 Kinect joints, and
`SYNTHETIC_ACTIONS`, the classes.

Actions differ by how the body moves over time, not by a static pose. They
come in groups that visit the same poses for the same share of the time and
differ only in order, rhythm or who moves when, so the time-averaged pose
tells the group and not the action: sitting down / standing up / picking up
(one way, the other way, down and up); drinking / eating / brushing teeth /
coughing (the hand held at the mouth, raised again and again, scrubbing, or
the torso rocking); handshaking / giving something / punching, two-person
interactions (both reach at once and pump, one reaches after the other, quick
jabs fended off); putting on / taking off a cap (slow up and quick down, or
the reverse). Subjects have their own height and bone lengths.

A body is built in its own frame (X right, Y up, facing -Z).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from stbln_jax.data import ntu

NUM_JOINTS = ntu.NUM_JOINTS

# ---- The body ----------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Body:
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
  def of_subject(cls, rng: np.random.Generator) -> Body:
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


def add_habits(pose: dict[str, np.ndarray], rng: np.random.Generator):
  """A subject's own way of standing: arm carriage and posture."""
  for arm in ('l', 'r'):
    pose[f'{arm}_pitch'] = pose[f'{arm}_pitch'] + rng.uniform(-0.08, 0.15)
    pose[f'{arm}_elbow'] = pose[f'{arm}_elbow'] + rng.uniform(0.0, 0.3)
  pose['torso_pitch'] = pose['torso_pitch'] + rng.uniform(-0.05, 0.1)


def unit(v: np.ndarray) -> np.ndarray:
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
  perp = unit(perp + 1e-9)
  return (np.cos(flexion)[:, None] * direction
          + np.sin(flexion)[:, None] * perp)


def forward_kinematics(pose: dict[str, np.ndarray], body: Body) -> np.ndarray:
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
    thumb = unit(fore + np.array([-0.5 * side, 0.0, -0.5]))
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
    joints[:, j(ft)] = joints[:, j(an)] + body.foot * unit(
        np.array([0.0, -0.3, -1.0]))
  yaw = pose['yaw']
  cos, sin = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
  x, z = joints[..., 0].copy(), joints[..., 2]
  joints[..., 0] = cos * x + sin * z + pose['pos_x'][:, None]
  joints[..., 2] = -sin * x + cos * z + pose['pos_z'][:, None]
  return joints


def _plant_feet(pose, body: Body):
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
class Style:
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
