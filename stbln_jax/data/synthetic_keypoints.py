"""Synthetic COCO-17 2D keypoints: the synthetic actions as a pose estimator sees them.

This module owns a 2D stand-in for the pickles that PYSKL and MMAction2 release
(e.g. `ntu60_2d.pkl`, HRNet keypoints on NTU's colour video). It films the
performances of `stbln_jax.data.synthetic` (same actions, subjects, cameras and
replications, the same 3D joints) with a pinhole camera and writes one pickle in
MMAction2's skeleton annotation format:

  {'split': {'xview_train': [frame_dir, ...], 'xview_val': [...],
             'xsub_train': [...], 'xsub_val': [...]},
   'annotations': [{'frame_dir': 'S001C001P001R001A008', 'label': 0,
                    'img_shape': (1080, 1920), 'original_shape': (1080, 1920),
                    'total_frames': T,
                    'keypoint': float32 (M, T, 17, 2),        # pixels (x, y)
                    'keypoint_score': float32 (M, T, 17)}, ...]}

and `classes.txt` (one class name per line, line k the name of label k) beside
it. Labels are the generator's classes 0..k-1. Cross-view trains on cameras 2
and 3 and tests on camera 1, cross-subject splits by NTU's training subjects.

What a pose estimator adds to the 3D joints, and how it is imitated:
  * COCO's joints: shoulders, elbows, wrists, hips, knees and ankles are the
    Kinect joints of the same name; nose, eyes and ears are placed on the head
    from the neck-to-head axis and the way the shoulders face.
  * Pixel noise, larger for joints turned away from the camera (further from
    it than the body's middle, or than the head's centre for the face).
  * Scores: high (about 0.9) for visible joints, lower (about 0.45) for those
    turned away, drifting slowly over the frames.
  * Missed detections: a joint now and then (more often when turned away), a
    joint outside the image, and whole frames without a person (the 3D
    generator's dropped frames, and the estimator's own misses); a missed
    joint has score 0 and coordinates (0, 0). The generator's spurious bodies
    become short-lived low-score false detections.
"""

from __future__ import annotations

import os
import pathlib
import pickle

import numpy as np

from stbln_jax.data import layouts
from stbln_jax.data import motions
from stbln_jax.data import ntu
from stbln_jax.data import synthetic

IMG_SHAPE = (1080, 1920)  # (height, width) in pixels, NTU's colour video
FOCAL_PX = 1060.0  # focal length in pixels: a ~84 degree horizontal field of view
NUM_JOINTS = layouts.COCO17.num_joints
XVIEW_TRAIN_CAMERAS = ntu.XVIEW_TRAIN_CAMERAS
XSUB_TRAIN_SUBJECTS = ntu.XSUB_TRAIN_SUBJECTS

# COCO-17 body joints taken from the Kinect joint of the same name (0-based).
_FROM_NTU = {
    'left_shoulder': 'ShoulderLeft', 'right_shoulder': 'ShoulderRight',
    'left_elbow': 'ElbowLeft', 'right_elbow': 'ElbowRight',
    'left_wrist': 'WristLeft', 'right_wrist': 'WristRight',
    'left_hip': 'HipLeft', 'right_hip': 'HipRight',
    'left_knee': 'KneeLeft', 'right_knee': 'KneeRight',
    'left_ankle': 'AnkleLeft', 'right_ankle': 'AnkleRight',
}
# Face joints on the head: (forward, up, right) offsets in metres from the
# Kinect head joint (the head's centre), in the head's own frame.
_FACE = {
    'nose': (0.10, -0.02, 0.0),
    'left_eye': (0.08, 0.02, -0.033), 'right_eye': (0.08, 0.02, 0.033),
    'left_ear': (0.0, 0.0, -0.075), 'right_ear': (0.0, 0.0, 0.075),
}
_COCO = layouts.COCO17.joint_names.index
_NTU = ntu.JOINT_NAMES.index
_FACE_JOINTS = np.array([_COCO(n) for n in _FACE])


def project(xyz: np.ndarray, img_shape: tuple[int, int] = IMG_SHAPE,
            focal: float = FOCAL_PX) -> np.ndarray:
  """Pinhole projection of camera points (..., 3) to pixels (..., 2).

  Camera space is Kinect's (x to the camera's left, y up, z along its view);
  the principal point is the image centre, pixel x grows to the camera's right
  and pixel y downwards, as in a photograph (not Kinect's mirrored colour
  frames): (w/2 - f x/z, h/2 - f y/z).
  """
  height, width = img_shape
  z = xyz[..., 2]
  return np.stack([width / 2 - focal * xyz[..., 0] / z,
                   height / 2 - focal * xyz[..., 1] / z], -1)


def coco17_from_ntu25(xyz: np.ndarray) -> np.ndarray:
  """COCO-17 joints (..., 17, 3) of Kinect joints (..., 25, 3).

  The face is placed on the head: 'up' runs from the neck to the head, 'right'
  from the left to the right shoulder (made perpendicular to up), and the face
  looks along up x right, the way the body faces.
  """
  out = np.zeros(xyz.shape[:-2] + (NUM_JOINTS, 3), xyz.dtype)
  for coco, kinect in _FROM_NTU.items():
    out[..., _COCO(coco), :] = xyz[..., _NTU(kinect), :]
  head = xyz[..., _NTU('Head'), :]
  up = motions.unit(head - xyz[..., _NTU('Neck'), :] + 1e-9)
  right = xyz[..., _NTU('ShoulderRight'), :] - xyz[..., _NTU('ShoulderLeft'), :]
  right = right - np.sum(right * up, -1, keepdims=True) * up
  right = motions.unit(right + 1e-9)
  forward = np.cross(up, right)
  for name, (f, u, r) in _FACE.items():
    out[..., _COCO(name), :] = (
        head + f * forward + u * up + r * right)
  return out


def _turned_away(joints: np.ndarray) -> np.ndarray:
  """bool (T, 17): body joints further from the camera than the body's middle
  (by 8 cm), face joints further than the head's centre (by 2 cm)."""
  depth = joints[..., 2]
  hidden = depth - depth.mean(-1, keepdims=True) > 0.08
  head_z = 0.5 * (depth[..., _COCO('left_ear')] + depth[..., _COCO('right_ear')])
  hidden[..., _FACE_JOINTS] = depth[..., _FACE_JOINTS] - head_z[..., None] > 0.02
  return hidden


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int],
                  keep: float = 0.9) -> np.ndarray:
  """Unit-variance noise (T, J) correlated over frames (AR(1), `keep` of the
  last frame's value carried over)."""
  white = rng.standard_normal(shape)
  out = np.empty(shape)
  out[0] = white[0]
  for t in range(1, shape[0]):
    out[t] = keep * out[t - 1] + np.sqrt(1 - keep**2) * white[t]
  return out


def _detect(body: synthetic.SyntheticBody, rng: np.random.Generator, *,
            spurious: bool, pixel_noise: float, miss_rate: float,
            frame_miss_rate: float) -> tuple[np.ndarray, np.ndarray]:
  """What the estimator reports for one body: pixels (T, 17, 2), scores (T, 17)."""
  joints = coco17_from_ntu25(body.xyz)
  hidden = _turned_away(joints)
  pixels = project(joints)
  sigma = pixel_noise * np.where(hidden, 2.5, 1.0)
  pixels = pixels + sigma[..., None] * rng.standard_normal(pixels.shape)
  # An estimator's confidence in a joint drifts slowly from frame to frame.
  drift = _smooth_noise(rng, hidden.shape)
  score = np.where(hidden, 0.45 + 0.1 * drift, 0.9 + 0.04 * drift)
  if spurious:  # a false detection: unsure of every joint
    score = 0.3 + 0.1 * drift
  score = np.clip(score + 0.01 * rng.standard_normal(hidden.shape), 0.05, 1.0)
  missed = rng.uniform(size=hidden.shape) < np.where(hidden, 4 * miss_rate,
                                                     miss_rate)
  height, width = IMG_SHAPE
  missed |= ~((pixels[..., 0] >= 0) & (pixels[..., 0] < width)
              & (pixels[..., 1] >= 0) & (pixels[..., 1] < height))
  missed |= ~body.present[:, None]
  missed |= (rng.uniform(size=body.present.shape) < frame_miss_rate)[:, None]
  pixels[missed] = 0.0
  score[missed] = 0.0
  return pixels.astype(np.float32), score.astype(np.float32)


def to_annotation(sequence: synthetic.SyntheticSequence, *, seed: int = 0,
                  pixel_noise: float = 2.5, miss_rate: float = 0.01,
                  frame_miss_rate: float = 0.02) -> dict:
  """The MMAction2 annotation of one synthetic sequence (see the module doc).

  Args:
    sequence: 3D joints in camera coordinates (`synthetic.generate_sequence`,
      best with noise=0: the estimator's noise is added here).
    seed: with the sample's name, fixes the noise, scores and misses.
    pixel_noise: std (pixels) of the noise on visible joints; 2.5 times that
      on joints turned away.
    miss_rate: probability that a visible joint is missed in a frame; four
      times that for joints turned away.
    frame_miss_rate: probability that a person is missed in a whole frame.
  """
  n = sequence.name
  rng = np.random.default_rng(
      [seed, 6, n.setup, n.camera, n.subject, n.replication, n.action])
  num_performers = synthetic.SYNTHETIC_ACTIONS[sequence.label].num_persons
  detections = [
      _detect(body, rng, spurious=p >= num_performers, pixel_noise=pixel_noise,
              miss_rate=miss_rate, frame_miss_rate=frame_miss_rate)
      for p, body in enumerate(sequence.bodies)]
  return {
      'frame_dir': n.name,
      'label': int(sequence.label),
      'img_shape': IMG_SHAPE,
      'original_shape': IMG_SHAPE,
      'total_frames': int(sequence.num_frames),
      'keypoint': np.stack([d[0] for d in detections]),
      'keypoint_score': np.stack([d[1] for d in detections]),
  }


def splits(frame_dirs: list[str]) -> dict[str, list[str]]:
  """NTU's cross-view (cameras 2, 3 train) and cross-subject splits of sample
  names, under PYSKL's split names."""
  names = [ntu.parse_sample_name(d) for d in frame_dirs]
  xview = [s.camera in XVIEW_TRAIN_CAMERAS for s in names]
  xsub = [s.subject in XSUB_TRAIN_SUBJECTS for s in names]
  pick = lambda keep, want: [d for d, k in zip(frame_dirs, keep) if k == want]  # noqa: E731
  return {'xview_train': pick(xview, True), 'xview_val': pick(xview, False),
          'xsub_train': pick(xsub, True), 'xsub_val': pick(xsub, False)}


def write_synthetic_annotations(
    path: str | os.PathLike[str], *, num_classes: int = 10,
    subjects: tuple[int, ...] = tuple(range(1, 11)),
    cameras: tuple[int, ...] = (1, 2, 3),
    replications: tuple[int, ...] = (1, 2), setups: tuple[int, ...] = (1,),
    frames: tuple[int, int] = (40, 80), seed: int = 0,
    drop_rate: float = 0.15, spurious_rate: float = 0.2,
    **annotation_kwargs) -> dict:
  """Writes the pickle at `path` and `classes.txt` beside it.

  One annotation per (setup, camera, subject, replication, class), the same
  performances as `synthetic.write_synthetic_dataset` with the same ids, seed
  and frames.

  Args:
    path: the `.pkl` file; its folder is created if missing.
    num_classes: the first `num_classes` of `SYNTHETIC_ACTIONS` (<= 12).
    subjects, cameras, replications, setups: NTU ids (1-based) to write.
    frames: (min, max) performance length.
    seed: fixes every sample.
    drop_rate, spurious_rate: as in `synthetic.generate_sequence`.
    **annotation_kwargs: passed on to `to_annotation` (pixel_noise,
      miss_rate, frame_miss_rate).

  Returns:
    The pickled dict {'split': ..., 'annotations': [...]}.
  """
  if not 1 <= num_classes <= len(synthetic.SYNTHETIC_ACTIONS):
    raise ValueError(f'num_classes must be in 1..{len(synthetic.SYNTHETIC_ACTIONS)}, '
                     f'got {num_classes}')
  annotations = []
  for setup in setups:
    for camera in cameras:
      for subject in subjects:
        for replication in replications:
          for label in range(num_classes):
            sequence = synthetic.generate_sequence(
                label, subject=subject, camera=camera, replication=replication,
                setup=setup, frames=frames, seed=seed, noise=0.0,
                drop_rate=drop_rate, spurious_rate=spurious_rate)
            annotations.append(
                to_annotation(sequence, seed=seed, **annotation_kwargs))
  annotations.sort(key=lambda a: a['frame_dir'])
  data = {'split': splits([a['frame_dir'] for a in annotations]),
          'annotations': annotations}
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, 'wb') as f:
    pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)
  names = [a.name for a in synthetic.SYNTHETIC_ACTIONS[:num_classes]]
  (path.parent / 'classes.txt').write_text(''.join(f'{n}\n' for n in names))
  return data
