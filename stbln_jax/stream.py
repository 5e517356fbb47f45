r"""Recognition on a live stream of poses, one frame at a time, with an exported network.

  python -m stbln_jax.stream --export=/tmp/cv.stablehlo --window=64 --hop=8 --fps=30 \
      S001C001P001R001A011.skeleton
  python -m stbln_jax.stream --export=/tmp/coco.stablehlo --annotations=clips.pkl [FRAME_DIR ...]

A `Recognizer` keeps the last `window` frames (each frame: the people in view) and
every `hop` frames, once `window` frames have come, classifies them. The window is
preprocessed as one clip, as the export's dataset preprocessed its records, then the
export's stream (`preprocess.select_stream` in its layout and channels):
- an export of NTU records (preprocessing '2s-agcn' or 'tracked'): each frame holds
  the Kinect bodies (B, 25, 3); exactly as `predict` preprocesses a file of those
  frames (`preprocess.preprocess_skeleton`: the two most active bodies are the
  persons, centred on and rotated to the window's first frame), repeat-padded to
  `window` frames. So a prediction is the one `predict` gives for a `.skeleton` file
  holding the window's frames, with `num_frames = window`.
- any other export (keypoints as given, any layout): each frame holds the keypoints
  (P, V, C) of P people, person p of a frame being the track `ids[p]`, and the window
  becomes a sample as the annotation builder makes one (`window_keypoints`): 2D
  keypoints in pixels normalised to [-1, 1] by the image size (`img_shape`, as PYSKL's
  PreNormalize2D), 3D ones normalised as the builder did (the sidecar's preprocessing),
  the export's M tracks of the highest total score where the
  keypoints carry one ('xys'), else the most active (2s-AGCN's motion energy, as for
  NTU), best first; fewer are padded with zeros.
Where the run normalised each clip (the sidecar's 'center_joint' and 'normalization',
e.g. NW-UCLA's), the window is normalised as one clip in the same way. A window in
which nobody is present gives no actions.

The command replays a `.skeleton` file (an NTU export) or the annotations of a
PYSKL/MMAction2 file (`--annotations`, any other export) as a stream at `--fps` (0: as
fast as it can), prints each prediction and keeps a progress line on stderr.
"""

import collections
import dataclasses
import sys
import time
from typing import Sequence, TextIO

from absl import app
from absl import flags
import numpy as np

from stbln_jax import cli
from stbln_jax import serving
from stbln_jax.data import annotations
from stbln_jax.data import preprocess
from stbln_jax.data import skeleton as skeleton_lib

# Track channels -> the annotation kind that makes them a sample.
_KINDS = {channels: kind for kind, channels in annotations.CHANNELS.items()}


@dataclasses.dataclass(frozen=True)
class Prediction:
  """The actions of the window ending at frame `frame` (0-based, counted from the start)."""
  frame: int
  actions: list[tuple[str, float]]  # the top-k (class name, probability); [] if nobody
  logits: np.ndarray | None
  latency_ms: float  # preprocessing and network, this window


class Recognizer:
  """Sliding-window recognition of one stream of poses (see the module docstring).

  `img_shape` (h, w) is the image size of 2D keypoints, given in pixels; `kinect` says
  whether frames are NTU bodies.
  """

  def __init__(self, model: serving.ExportedModel, *, window: int = 64, hop: int = 8,
               top_k: int = 5, name: str = '<stream>',
               img_shape: tuple[int, int] = annotations.DEFAULT_IMG_SHAPE):
    n, t = model.input_shape[:2]
    if window < 1 or hop < 1:
      raise ValueError(f'window={window} and hop={hop} must be at least 1')
    if n not in (None, 1):
      raise ValueError(f'{model.path}: exported for batch {n}; a stream needs batch 1 or '
                       f'a symbolic batch')
    if t not in (None, window):
      raise ValueError(f'{model.path}: exported for {t} frames; use --window={t} or '
                       f'export with a symbolic frame count')
    self.model, self.window, self.hop, self.top_k, self.name = model, window, hop, top_k, name
    self.preprocessing = model.meta['preprocessing']
    self.stream, self.layout, self.channels = model.meta['stream'], model.layout, model.channels
    self.kinect = self.preprocessing in preprocess.PREPROCESSINGS
    if self.kinect and (self.layout.name, self.channels) != ('ntu25', 'xyz'):
      raise ValueError(f'{model.path}: preprocessing {self.preprocessing!r} is for NTU '
                       f'bodies, not layout {self.layout.name!r} with channels '
                       f'{self.channels!r}')
    # 3D keypoints: the annotation builder's normalisation, if the records had one.
    self.normalization = (None if self.kinect or not self.preprocessing
                          else annotations.Normalization.from_spec(self.preprocessing))
    self.img_shape = img_shape if self.channels in ('xy', 'xys') else None
    self._point_shape = ((preprocess.NUM_JOINTS, 3) if self.kinect
                         else tuple(model.input_shape[3:]))
    # As `preprocess_skeleton` reads files: float64 for 2s-AGCN's energies, else float32.
    self._dtype = np.float64 if self.preprocessing == '2s-agcn' else np.float32
    self._frames = collections.deque(maxlen=window)
    self.frames_seen = 0

  def push(self, bodies, body_ids=None) -> Prediction | None:
    """Adds one frame; returns a `Prediction` when a hop completes, else None.

    Args:
      bodies: the B people in view (B may be 0): for NTU exports their (B, 25, 3)
        camera coordinates in the sensor's order, else their keypoints (B, V, C).
      body_ids: (B,) tracking IDs (default 0..B-1); the 'tracked' preprocessing and
        keypoints use them to follow a person from frame to frame.
    """
    points = np.asarray(bodies, self._dtype)
    if points.size == 0:
      points = points.reshape((0,) + self._point_shape)
    if points.ndim != 3 or points.shape[1:] != self._point_shape:
      raise ValueError(f'{self.name}: frame {self.frames_seen}: people of shape '
                       f'{points.shape[1:]}, expected {self._point_shape}')
    ids = (np.arange(len(points)) if body_ids is None
           else np.asarray(body_ids, np.int64).reshape(-1))
    if len(ids) != len(points):
      raise ValueError(f'{self.name}: frame {self.frames_seen}: {len(points)} bodies but '
                       f'{len(ids)} body IDs')
    self._frames.append((ids, points))
    self.frames_seen += 1
    if self.frames_seen < self.window or (self.frames_seen - self.window) % self.hop:
      return None
    return self.predict_window()

  def window_skeleton(self) -> skeleton_lib.Skeleton:
    """The frames in the window as a parsed file would hold them."""
    counts = [len(ids) for ids, _ in self._frames]
    return skeleton_lib.Skeleton(
        path=self.name, num_frames=len(self._frames),
        frame_index=np.repeat(np.arange(len(counts)), counts),
        body_ids=np.concatenate([ids for ids, _ in self._frames]).astype(np.int64),
        xyz=np.concatenate([xyz for _, xyz in self._frames]).reshape(-1, 25, 3))

  def window_input(self) -> np.ndarray | None:
    """The network's input (1, window, M, V, C) for the window, None if nobody is in it."""
    if self.kinect:
      try:
        sample = preprocess.preprocess_skeleton(self.window_skeleton(), self.preprocessing)
      except preprocess.NoSkeletonError:
        return None
    else:
      sample = self.window_keypoints()
      if sample is None:
        return None
    x = preprocess.pad_or_crop(self.model.normalize(sample), self.window)[None]
    return preprocess.select_stream(x.astype(np.float32), self.stream, self.layout,
                                    self.channels)

  def window_keypoints(self) -> np.ndarray | None:
    """The window's keypoints as one sample (T, M, V, C), None if nobody is in it.

    The window's tracks (zero where a track is absent) make one annotation, which
    becomes a sample exactly as the annotation builder makes a record
    (`annotations.to_sample`: 2D normalised by `img_shape`, the M tracks of highest
    total score, or most motion without scores, best first).
    """
    ids = list(dict.fromkeys(i for frame_ids, _ in self._frames for i in frame_ids))
    if not ids:
      return None
    slot = {person: s for s, person in enumerate(ids)}
    tracks = np.zeros((len(ids), len(self._frames)) + self._point_shape, np.float32)
    for t, (frame_ids, points) in enumerate(self._frames):
      tracks[[slot[i] for i in frame_ids], t] = points
    kind = _KINDS[self.channels]
    annotation = dict(frame_dir='window', label=0, total_frames=len(self._frames),
                      keypoint=tracks[..., :annotations.INPUT_CHANNELS[kind]])
    if self.channels == 'xys':
      annotation['keypoint_score'] = tracks[..., 2]
    if self.img_shape is not None:  # 2D
      annotation['img_shape'] = self.img_shape
    return annotations.to_sample(annotation, self.layout, kind, self.model.input_shape[2],
                                 normalization=self.normalization)

  def predict_window(self) -> Prediction:
    start = time.perf_counter()
    x = self.window_input()
    logits = None if x is None else self.model(x)[0]
    actions = [] if logits is None else self.model.top_k(logits[None], self.top_k)[0]
    return Prediction(self.frames_seen - 1, actions, logits,
                      1e3 * (time.perf_counter() - start))


# ---- Replaying a file -------------------------------------------------------------

def frames_of(skeleton: skeleton_lib.Skeleton):
  """Per frame of a parsed file: (bodies (B, 25, 3), body IDs (B,))."""
  bounds = np.searchsorted(skeleton.frame_index, np.arange(skeleton.num_frames + 1))
  for a, b in zip(bounds[:-1], bounds[1:]):
    yield skeleton.xyz[a:b], skeleton.body_ids[a:b]


def annotation_frames(annotation: dict, channels: str):
  """Per frame of an annotation (`annotations.to_sample`'s input): the keypoints
  (P, V, C) of the P persons seen in it and their indices, which follow them."""
  keypoint = np.asarray(annotation['keypoint'], np.float32)
  if channels == 'xys':
    score = np.asarray(annotation['keypoint_score'], np.float32)
    keypoint = np.concatenate([keypoint, score[..., None]], axis=-1)
  seen = np.abs(keypoint).sum(axis=(-1, -2)) > 0  # (M, T)
  for t in range(keypoint.shape[1]):
    people = np.flatnonzero(seen[:, t])
    yield keypoint[people, t], people


def replay(model: serving.ExportedModel, path: str, *, window: int = 64, hop: int = 8,
           fps: float = 30.0, top_k: int = 3, out: TextIO = sys.stdout,
           progress: TextIO | None = sys.stderr) -> list[Prediction]:
  """Feeds a `.skeleton` file to a `Recognizer` at `fps` frames per second (0: unpaced)."""
  recognizer = Recognizer(model, window=window, hop=hop, top_k=top_k, name=path)
  if not recognizer.kinect:
    raise ValueError(f'{model.path}: a {model.layout.name} export without NTU preprocessing; '
                     f'only NTU exports replay .skeleton files (give --annotations)')
  skeleton = skeleton_lib.read_skeleton(path, np.float64, xyz_only=True)
  return play(recognizer, frames_of(skeleton), skeleton.num_frames, fps=fps, out=out,
              progress=progress)


def replay_annotations(model: serving.ExportedModel, path: str,
                       frame_dirs: Sequence[str] = (), *, window: int = 64, hop: int = 8,
                       fps: float = 30.0, top_k: int = 3, out: TextIO = sys.stdout,
                       progress: TextIO | None = sys.stderr) -> dict[str, list[Prediction]]:
  """Feeds the named annotations of a PYSKL/MMAction2 file (default: all) to a
  `Recognizer` each, at `fps` frames per second; keypoints as the file holds them."""
  if model.meta['preprocessing'] in preprocess.PREPROCESSINGS:
    raise ValueError(f'{model.path}: an export of NTU .skeleton records; replay '
                     f'.skeleton files with it')
  data = annotations.load_annotation_file(path)
  results = {}
  for name, annotation in annotations.find_annotations(data, frame_dirs):
    if annotation is None:
      raise ValueError(f'{path}: no annotation has frame_dir {name!r}')
    # The file's annotation, checked as the builder checks it.
    annotations.to_sample(annotation, model.layout, _KINDS[model.channels])
    recognizer = Recognizer(model, window=window, hop=hop, top_k=top_k, name=name,
                            img_shape=annotation.get('img_shape',
                                                     annotations.DEFAULT_IMG_SHAPE))
    print(name, file=out)
    results[name] = play(recognizer, annotation_frames(annotation, model.channels),
                         int(annotation['total_frames']), fps=fps, out=out,
                         progress=progress)
  return results


def play(recognizer: Recognizer, frames, num_frames: int, *, fps: float, out: TextIO,
         progress: TextIO | None) -> list[Prediction]:
  """Pushes (people, ids) frames at `fps` (0: unpaced), printing each prediction and a
  progress line. The network is compiled first, so the first prediction's latency is
  like the others'."""
  model, window, name = recognizer.model, recognizer.window, recognizer.name
  model(np.zeros((1, window) + model.input_shape[2:], np.float32))  # compiles before the clock
  predictions, start = [], time.perf_counter()
  for i, (people, ids) in enumerate(frames):
    if fps > 0:
      time.sleep(max(0.0, start + i / fps - time.perf_counter()))
    p = recognizer.push(people, ids)
    if p is not None:
      predictions.append(p)
      if progress:
        progress.write('\r\033[K')
      shown = '  '.join(f'{label} {prob:.3f}' for label, prob in p.actions) or '(nobody)'
      print(f'frame {p.frame:>5}  {p.latency_ms:7.1f} ms  {shown}', file=out, flush=True)
    if progress:
      elapsed = time.perf_counter() - start
      rate = len(predictions) / elapsed if elapsed else 0.0
      progress.write(f'\r\033[K{name}: frame {i + 1}/{num_frames}, '
                     f'{len(predictions)} predictions ({rate:.1f}/s)')
      progress.flush()
  if progress:
    progress.write('\n')
  if not predictions:
    print(f'{name}: {num_frames} frames, fewer than the window of {window}: no '
          f'prediction', file=out)
  return predictions


FLAGS = flags.FLAGS


def _define_flags():
  # Defined only when run as a program, so importing this module defines no flags.
  flags.DEFINE_string('export', None, 'An exported network (stbln_jax.export).', required=True)
  flags.DEFINE_integer('window', 64, 'Frames per prediction.', lower_bound=1)
  flags.DEFINE_integer('hop', 8, 'Frames between predictions.', lower_bound=1)
  flags.DEFINE_float('fps', 30.0, 'Replay speed in frames per second (0: unpaced).',
                     lower_bound=0.0)
  flags.DEFINE_integer('top_k', 3, 'Actions per prediction.', lower_bound=1)
  flags.DEFINE_string('annotations', None,
                      'A PYSKL/MMAction2 annotation file to replay (an export of '
                      'annotation records); the arguments name its frame_dirs '
                      '(default: all).')


def main(argv):
  model = serving.load(FLAGS.export)
  if FLAGS.annotations:
    replay_annotations(model, FLAGS.annotations, argv[1:], window=FLAGS.window,
                       hop=FLAGS.hop, fps=FLAGS.fps, top_k=FLAGS.top_k)
    return 0
  if len(argv) < 2:
    raise app.UsageError('name one or more .skeleton files to replay, or give --annotations')
  for path in argv[1:]:
    replay(model, path, window=FLAGS.window, hop=FLAGS.hop, fps=FLAGS.fps, top_k=FLAGS.top_k)
  return 0


if __name__ == '__main__':
  _define_flags()
  cli.run(main, input_errors=(serving.ExportError, skeleton_lib.SkeletonFormatError,
                              ValueError))
