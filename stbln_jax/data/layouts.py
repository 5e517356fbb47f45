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

Any other skeleton is a layout file (`read_layout_file`), `layout.json`:

  {"name": "hand21", "joints": ["wrist", "thumb_1", ...],
   "bones": [["thumb_1", "wrist"], ...], "centre": "wrist"}

the joints in the order of the keypoints, each bone as [child, parent] by name.
Datasets built from one carry it in their metadata (`Layout.to_json`), and runs
in their config (`model.custom_layout`), so nothing needs registering.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Any, Mapping

from stbln_jax.data import ntu

LAYOUT_FILE = 'layout.json'
_NAME = re.compile(r'^[A-Za-z0-9_.-]+$')


class LayoutError(ValueError):
  """A layout file or description that is not one tree of named joints, and why."""


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

  def to_json(self) -> dict[str, Any]:
    """The layout as a layout file holds it (bones and centre by name)."""
    names = self.joint_names
    return {'name': self.name, 'joints': list(names),
            'bones': [[names[c], names[p]] for c, p in self.bones],
            'centre': names[self.center]}


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


def get_layout(layout: str | Layout) -> Layout:
  """The layout registered as `layout` ('ntu25', 'coco17', ...), or `layout` itself."""
  if isinstance(layout, Layout):
    return layout
  try:
    return LAYOUTS[layout]
  except KeyError:
    raise ValueError(f'unknown skeleton layout {layout!r}; choose one of '
                     f'{sorted(LAYOUTS)} or give a layout file') from None


def from_fields(name: str | None, custom: Mapping | None = None) -> Layout:
  """The layout a config, a dataset's metadata or an export's sidecar names: its
  `custom_layout` (a layout file's contents) when given, else the registered `name`."""
  if custom:
    layout = from_json(custom.to_dict() if hasattr(custom, 'to_dict') else custom,
                       'custom_layout')
    if name is not None and name != layout.name:
      raise LayoutError(f'layout {name!r} and custom_layout {layout.name!r} disagree')
    return layout
  return get_layout(name or NTU25.name)


def custom_fields(layout: Layout) -> tuple[str, dict[str, Any] | None]:
  """(name, custom_layout) to record `layout` with: None for a registered layout."""
  return layout.name, None if LAYOUTS.get(layout.name) == layout else layout.to_json()


# ---- Layout files ------------------------------------------------------------


def _name_list(value, what: str, where: str) -> list[str]:
  if (not isinstance(value, (list, tuple))
      or not all(isinstance(v, str) and v for v in value)):
    raise LayoutError(f'{where}: {what} is not a list of names')
  return list(value)


def from_json(data: Any, where: str = '<layout>') -> Layout:
  """The layout a layout file's contents describe, checked to be one tree.

  Raises:
    LayoutError: naming `where` and the fault: a missing key, a duplicate joint,
      a bone naming an unknown joint, no or an unknown centre, or bones that are
      not one tree hanging from the centre.
  """
  if not isinstance(data, Mapping):
    raise LayoutError(f'{where}: not a JSON object {{"name", "joints", "bones", '
                      f'"centre"}}')
  missing = [k for k in ('name', 'joints', 'bones', 'centre') if k not in data]
  if missing:
    raise LayoutError(f'{where}: no {", ".join(repr(k) for k in missing)}')
  name = data['name']
  if not isinstance(name, str) or not _NAME.match(name):
    raise LayoutError(f'{where}: name {name!r} is not a name (letters, digits, _ . -)')
  joints = _name_list(data['joints'], 'joints', where)
  duplicates = sorted({j for j in joints if joints.count(j) > 1})
  if duplicates:
    raise LayoutError(f'{where}: joint {duplicates[0]!r} is listed twice')
  index = {joint: i for i, joint in enumerate(joints)}
  centre = data['centre']
  if centre not in index:
    raise LayoutError(f'{where}: centre {centre!r} is not one of its joints')
  if not isinstance(data['bones'], (list, tuple)):
    raise LayoutError(f'{where}: bones is not a list of [child, parent] pairs')
  bones, parent = [], {}
  for bone in data['bones']:
    pair = _name_list(bone, f'bone {bone!r}', where)
    if len(pair) != 2:
      raise LayoutError(f'{where}: bone {bone!r} is not a pair [child, parent]')
    unknown = [j for j in pair if j not in index]
    if unknown:
      raise LayoutError(f'{where}: bone {pair} names unknown joint {unknown[0]!r}')
    child, par = pair
    if child == centre:
      raise LayoutError(f'{where}: not a tree hanging from the centre: the centre '
                        f'{centre!r} has a parent ({par!r})')
    if child in parent:
      raise LayoutError(f'{where}: not a tree: joint {child!r} has two parents '
                        f'({parent[child]!r} and {par!r})')
    parent[child] = par
    bones.append((index[child], index[par]))
  orphans = [j for j in joints if j != centre and j not in parent]
  if orphans:
    raise LayoutError(f'{where}: not a tree: joint {orphans[0]!r} has no parent (each '
                      f'joint but the centre is the child of one bone)')
  for joint in joints:  # every chain of parents must end at the centre
    chain = []
    while joint != centre:
      if joint in chain:
        cycle = chain[chain.index(joint):] + [joint]
        raise LayoutError(f'{where}: not a tree: the bones make a cycle '
                          f'{" -> ".join(cycle)}')
      chain.append(joint)
      joint = parent[joint]
  layout = Layout(name, tuple(joints), tuple(bones), index[centre])
  registered = LAYOUTS.get(name)
  if registered is not None and registered != layout:
    raise LayoutError(f'{where}: name {name!r} is a built-in layout with other joints '
                      f'or bones; give this one another name')
  return layout


def read_layout_file(path: os.PathLike[str] | str) -> Layout:
  """The layout of a layout file (see the module docstring); LayoutError naming
  `path` if it cannot be read or is not one tree."""
  try:
    with open(path, encoding='utf-8') as f:
      data = json.load(f)
  except OSError as e:
    raise LayoutError(f'{path}: cannot read: {e.strerror or e}') from e
  except ValueError as e:  # JSONDecodeError, bad UTF-8
    raise LayoutError(f'{path}: not valid JSON ({e})') from e
  return from_json(data, os.fspath(path))
