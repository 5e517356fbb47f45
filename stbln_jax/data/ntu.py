"""NTU RGB+D 60/120 facts: joints, bones, actions, benchmark splits, names.

This module owns everything that is true of the dataset itself and used by
more than one part of the code: the Kinect v2 joints and their tree, the joints
that pre-normalisation looks at, the 120 action names, the training subjects,
cameras and setups of the four benchmarks, the official lists of samples with
missing skeletons (shipped in `resources/`) and the sample-name scheme
`SsssCcccPpppRrrrAaaa`. It imports nothing else of this package.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import os
import pathlib
import re

# ---- Joints and bones (Kinect v2) ------------------------------------------

NUM_JOINTS = 25
JOINT_NAMES = (
    'SpineBase', 'SpineMid', 'Neck', 'Head', 'ShoulderLeft', 'ElbowLeft',
    'WristLeft', 'HandLeft', 'ShoulderRight', 'ElbowRight', 'WristRight',
    'HandRight', 'HipLeft', 'KneeLeft', 'AnkleLeft', 'FootLeft', 'HipRight',
    'KneeRight', 'AnkleRight', 'FootRight', 'SpineShoulder', 'HandTipLeft',
    'ThumbLeft', 'HandTipRight', 'ThumbRight')

# The 24 bones as 1-based (child, parent) joint numbers; joint 21 (spine
# shoulder) is the centre and has no parent.
NTU_BONES_1BASED = (
    (1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7),
    (9, 21), (10, 9), (11, 10), (12, 11), (13, 1), (14, 13), (15, 14),
    (16, 15), (17, 1), (18, 17), (19, 18), (20, 19), (22, 23), (23, 8),
    (24, 25), (25, 12))
NTU_BONES = tuple((c - 1, p - 1) for c, p in NTU_BONES_1BASED)  # 0-based
CENTER_JOINT_1BASED = 21
CENTER_JOINT = CENTER_JOINT_1BASED - 1  # 0-based
# parent[v] (0-based); the centre is its own parent.
PARENTS = tuple(dict(NTU_BONES).get(v, v) for v in range(NUM_JOINTS))

# Kinect v2's own joint tree, rooted at the spine base, as 1-based (child,
# parent): the one its joint orientations follow. It differs from the bones
# above in its root and at the hands (hand -> hand tip, wrist -> thumb).
KINECT_BONES_1BASED = (
    (2, 1), (21, 2), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7),
    (22, 8), (23, 7), (9, 21), (10, 9), (11, 10), (12, 11), (24, 12),
    (25, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17),
    (19, 18), (20, 19))

# Joints (0-based) that 2s-AGCN's pre-normalisation uses: the spine base ->
# spine middle vector is turned to +z, left -> right shoulder to +x, and every
# frame is centred on the spine middle.
SPINE_BASE = JOINT_NAMES.index('SpineBase')
SPINE_MID = JOINT_NAMES.index('SpineMid')
LEFT_SHOULDER = JOINT_NAMES.index('ShoulderLeft')
RIGHT_SHOULDER = JOINT_NAMES.index('ShoulderRight')

# ---- Actions (A001 ... A120; label = action - 1) ---------------------------

ACTION_NAMES = (
    # NTU RGB+D 60: A001-A060.
    'drink water', 'eat meal/snack', 'brushing teeth', 'brushing hair',
    'drop', 'pickup', 'throw', 'sitting down',
    'standing up (from sitting position)', 'clapping', 'reading', 'writing',
    'tear up paper', 'wear jacket', 'take off jacket', 'wear a shoe',
    'take off a shoe', 'wear on glasses', 'take off glasses',
    'put on a hat/cap', 'take off a hat/cap', 'cheer up', 'hand waving',
    'kicking something', 'reach into pocket', 'hopping (one foot jumping)',
    'jump up', 'make a phone call/answer phone', 'playing with phone/tablet',
    'typing on a keyboard', 'pointing to something with finger',
    'taking a selfie', 'check time (from watch)', 'rub two hands together',
    'nod head/bow', 'shake head', 'wipe face', 'salute',
    'put the palms together', 'cross hands in front (say stop)',
    'sneeze/cough', 'staggering', 'falling', 'touch head (headache)',
    'touch chest (stomachache/heart pain)', 'touch back (backache)',
    'touch neck (neckache)', 'nausea or vomiting condition',
    'use a fan (with hand or paper)/feeling warm',
    'punching/slapping other person', 'kicking other person',
    'pushing other person', 'pat on back of other person',
    'point finger at the other person', 'hugging other person',
    'giving something to other person', "touch other person's pocket",
    'handshaking', 'walking towards each other',
    'walking apart from each other',
    # NTU RGB+D 120 additions: A061-A120.
    'put on headphone', 'take off headphone', 'shoot at the basket',
    'bounce ball', 'tennis bat swing', 'juggling table tennis balls',
    'hush (quite)', 'flick hair', 'thumb up', 'thumb down', 'make ok sign',
    'make victory sign', 'staple book', 'counting money', 'cutting nails',
    'cutting paper (using scissors)', 'snapping fingers', 'open bottle',
    'sniff (smell)', 'squat down', 'toss a coin', 'fold paper',
    'ball up paper', 'play magic cube', 'apply cream on face',
    'apply cream on hand back', 'put on bag', 'take off bag',
    'put something into a bag', 'take something out of a bag', 'open a box',
    'move heavy objects', 'shake fist', 'throw up cap/hat',
    'hands up (both hands)', 'cross arms', 'arm circles', 'arm swings',
    'running on the spot', 'butt kicks (kick backward)', 'cross toe touch',
    'side kick', 'yawn', 'stretch oneself', 'blow nose',
    'hit other person with something', 'wield knife towards other person',
    'knock over other person (hit with body)', "grab other person's stuff",
    'shoot at other person with a gun', 'step on foot', 'high-five',
    'cheers and drink', 'carry something with other person',
    'take a photo of other person', 'follow other person',
    "whisper in other person's ear", 'exchange things with other person',
    'support somebody with hand',
    'finger-guessing game (playing rock-paper-scissors)',
)
assert len(ACTION_NAMES) == 120
# Two-person interactions.
MUTUAL_ACTIONS = frozenset(range(50, 61)) | frozenset(range(106, 121))

# ---- Benchmark splits -------------------------------------------------------

# Cross-view (NTU-60): cameras 2 and 3 train, camera 1 tests.
XVIEW_TRAIN_CAMERAS = frozenset({2, 3})
# Cross-subject (NTU-60), Shahroudy et al. (2016).
XSUB_TRAIN_SUBJECTS = frozenset({
    1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38,
})
# Cross-subject (NTU-120), Liu et al. (2020): those and 33 more.
XSUB120_TRAIN_SUBJECTS = XSUB_TRAIN_SUBJECTS | frozenset({
    45, 46, 47, 49, 50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82,
    83, 84, 85, 86, 89, 91, 92, 93, 94, 95, 97, 98, 100, 103,
})


def is_xset_train_setup(setup: int) -> bool:
  """Cross-setup (NTU-120): even setup ids train, odd ones test."""
  return setup % 2 == 0


_MISSING_LISTS = {
    60: 'NTU_RGBD_samples_with_missing_skeletons.txt',
    120: 'NTU_RGBD120_samples_with_missing_skeletons.txt',
}


def missing_samples(num_classes: int) -> frozenset[str]:
  """Names (no suffix) on the official missing-skeleton list of NTU-60/120.

  The lists ship in `stbln_jax/data/resources/`: two header lines, a blank
  line, then one sample name per line.
  """
  if num_classes not in _MISSING_LISTS:
    raise ValueError(f'num_classes must be 60 or 120, got {num_classes}')
  text = (importlib.resources.files(__package__) / 'resources' /
          _MISSING_LISTS[num_classes]).read_text()
  return frozenset(line.strip() for line in text.splitlines()
                   if _NAME_RE.fullmatch(line.strip()))


# ---- Sample names -----------------------------------------------------------

_NAME_RE = re.compile(r'S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})')


@dataclasses.dataclass(frozen=True)
class SampleName:
  """The ids in a sample name such as `S001C002P003R002A013` (all 1-based)."""
  setup: int
  camera: int
  subject: int
  replication: int
  action: int

  @property
  def name(self) -> str:
    return (f'S{self.setup:03d}C{self.camera:03d}P{self.subject:03d}'
            f'R{self.replication:03d}A{self.action:03d}')


def parse_sample_name(name_or_path: str | os.PathLike[str]) -> SampleName:
  """Reads the ids out of `SsssCcccPpppRrrrAaaa` (a bare name or a path to
  `SsssCcccPpppRrrrAaaa.skeleton`).

  Raises:
    ValueError: the name does not have that form.
  """
  stem = pathlib.Path(name_or_path).name
  if stem.endswith('.skeleton'):
    stem = stem[:-len('.skeleton')]
  match = _NAME_RE.fullmatch(stem)
  if match is None:
    raise ValueError(
        f'{str(name_or_path)!r} is not an NTU sample name of the form '
        'SsssCcccPpppRrrrAaaa (e.g. S001C002P003R002A013)')
  ids = [int(g) for g in match.groups()]
  if 0 in ids:
    raise ValueError(f'{str(name_or_path)!r}: NTU ids start at 1')
  return SampleName(*ids)
