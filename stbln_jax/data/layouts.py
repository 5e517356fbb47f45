"""Skeleton layouts: the joints of a pose format, its bone tree and centre joint.

A layout names V joints and V - 1 bones as 0-based (child, parent) pairs that form
one tree rooted at the centre joint. The graph (`stbln_jax.graph`) builds the three
ST-GCN partitions of Eqs. (1)-(3) from it, the bone streams subtract each parent
from its child, and the model's V is its number of joints. The bilinear mixer
(Eq. 4) learns its own U and needs only V.

  ntu25       Kinect v2 (NTU RGB+D): the 24 bones of 2s-AGCN's `ntu_rgb_d.py`
              (as the authors' code uses them), centre the spine shoulder.
  coco17      COCO keypoints (HRNet, RTMPose, ViTPose...): the 16 edges and centre
              (the nose) of PYSKL's and MMAction2's `graph.py` layout 'coco'.
  openpose18  OpenPose COCO-18 (BODY_18): the 17 edges and centre (the neck) of
              ST-GCN's, PYSKL's and MMAction2's layout 'openpose'.
  kinect20    Kinect v1 (NW-UCLA): the 19 bones and centre (the shoulder centre)
              of CTR-GCN's `graph/ucla.py`.

Where ours differ from those toolboxes: PYSKL's 'nturgb+d' joins both hand tips
and thumbs to the hands (22, 23 -> 8; 24, 25 -> 12), 2s-AGCN chains them
(22 -> 23 -> 8); PYSKL's coco *bone stream* hangs the hips from the nose, and
its openpose bone stream is rooted at the nose (the neck's bone is neck - nose),
where its graphs (and ours, for both) hang the hips from the shoulders and root
the openpose tree at the neck.
"""

from __future__ import annotations

import dataclasses

from stbln_jax.data import ntu


@dataclasses.dataclass(frozen=True)
class Layout:
  """One pose format.

  Attributes:
    name: the registry key, e.g. 'coco17'.
    joint_names: the V joints in the format's order.
    bones: V - 1 (child, parent) pairs, 0-based; the parent is nearer the centre.
    center: the root joint (0-based), which has no parent.
  """

  name: str
  joint_names: tuple[str, ...]
  bones: tuple[tuple[int, int], ...]
  center: int

  @property
  def num_joints(self) -> int:
    return len(self.joint_names)

  @property
  def parents(self) -> tuple[int, ...]:
    """parent[v] for every joint; the centre is its own parent."""
    parent = dict(self.bones)
    return tuple(parent.get(v, v) for v in range(self.num_joints))


NTU25 = Layout('ntu25', ntu.JOINT_NAMES, ntu.NTU_BONES, ntu.CENTER_JOINT)

COCO17 = Layout(
    'coco17',
    ('nose', 'left_eye', 'right_eye', 'left_ear', 'right_ear', 'left_shoulder',
     'right_shoulder', 'left_elbow', 'right_elbow', 'left_wrist', 'right_wrist',
     'left_hip', 'right_hip', 'left_knee', 'right_knee', 'left_ankle',
     'right_ankle'),
    ((1, 0), (2, 0), (3, 1), (4, 2), (5, 0), (6, 0), (7, 5), (8, 6), (9, 7),
     (10, 8), (11, 5), (12, 6), (13, 11), (14, 12), (15, 13), (16, 14)),
    center=0)

OPENPOSE18 = Layout(
    'openpose18',
    ('nose', 'neck', 'right_shoulder', 'right_elbow', 'right_wrist',
     'left_shoulder', 'left_elbow', 'left_wrist', 'right_hip', 'right_knee',
     'right_ankle', 'left_hip', 'left_knee', 'left_ankle', 'right_eye',
     'left_eye', 'right_ear', 'left_ear'),
    ((0, 1), (2, 1), (5, 1), (3, 2), (4, 3), (6, 5), (7, 6), (8, 2), (9, 8),
     (10, 9), (11, 5), (12, 11), (13, 12), (14, 0), (15, 0), (16, 14),
     (17, 15)),
    center=1)

KINECT20 = Layout(
    'kinect20',
    ('hip_center', 'spine', 'shoulder_center', 'head', 'left_shoulder',
     'left_elbow', 'left_wrist', 'left_hand', 'right_shoulder', 'right_elbow',
     'right_wrist', 'right_hand', 'left_hip', 'left_knee', 'left_ankle',
     'left_foot', 'right_hip', 'right_knee', 'right_ankle', 'right_foot'),
    ((0, 1), (1, 2), (3, 2), (4, 2), (5, 4), (6, 5), (7, 6), (8, 2), (9, 8),
     (10, 9), (11, 10), (12, 0), (13, 12), (14, 13), (15, 14), (16, 0),
     (17, 16), (18, 17), (19, 18)),
    center=2)

LAYOUTS = {layout.name: layout
           for layout in (NTU25, COCO17, OPENPOSE18, KINECT20)}


def get_layout(name: str) -> Layout:
  """The layout registered as `name` ('ntu25', 'coco17', 'openpose18' or
  'kinect20')."""
  try:
    return LAYOUTS[name]
  except KeyError:
    raise ValueError(f'unknown skeleton layout {name!r}; choose one of '
                     f'{sorted(LAYOUTS)}') from None
