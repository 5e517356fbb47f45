r"""Recognition on a live stream of poses, one frame at a time, with an exported network.

  python -m stbln_jax.stream --export=/tmp/cv.stablehlo --window=64 --hop=8 --fps=30 \
      S001C001P001R001A011.skeleton

A `Recognizer` keeps the last `window` frames (each frame: the bodies Kinect reported,
NTU-25 joints) and every `hop` frames, once `window` frames have come, classifies them.
The window is preprocessed as one clip, exactly as `predict` preprocesses a file of
those frames: the export's preprocessing (`preprocess.preprocess_skeleton`: the two most
active bodies are the persons, centred on and rotated to the window's first frame),
repeat-padded to `window` frames, then the export's stream. So a prediction is the one
`predict` gives for a `.skeleton` file holding the window's frames, with
`num_frames = window`; a window in which nobody is present gives no actions. Only
NTU-25 poses: no other layout exists yet.

The command replays a `.skeleton` file as a stream at `--fps` (0: as fast as it can),
prints each prediction and keeps a progress line on stderr.
"""

import collections
import dataclasses
import sys
import time
from typing import TextIO

from absl import app
from absl import flags
import numpy as np

from stbln_jax import cli
from stbln_jax import serving
from stbln_jax.data import preprocess
from stbln_jax.data import skeleton as skeleton_lib


@dataclasses.dataclass(frozen=True)
class Prediction:
  """The actions of the window ending at frame `frame` (0-based, counted from the start)."""
  frame: int
  actions: list[tuple[str, float]]  # the top-k (class name, probability); [] if nobody
  logits: np.ndarray | None
  latency_ms: float  # preprocessing and network, this window


class Recognizer:
  """Sliding-window recognition of one stream of poses (see the module docstring)."""

  def __init__(self, model: serving.ExportedModel, *, window: int = 64, hop: int = 8,
               top_k: int = 5, name: str = '<stream>'):
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
    self.stream = model.meta['stream']
    # As `preprocess_skeleton` reads files: float64 for 2s-AGCN's energies, else float32.
    self._dtype = np.float64 if self.preprocessing == '2s-agcn' else np.float32
    self._frames = collections.deque(maxlen=window)
    self.frames_seen = 0

  def push(self, bodies, body_ids=None) -> Prediction | None:
    """Adds one frame; returns a `Prediction` when a hop completes, else None.

    Args:
      bodies: (B, 25, 3) camera coordinates of the B bodies in view (B may be 0), in
        the sensor's order.
      body_ids: (B,) tracking IDs (default 0..B-1); only the 'tracked' preprocessing
        uses them.
    """
    xyz = np.asarray(bodies, self._dtype).reshape(-1, preprocess.NUM_JOINTS, 3)
    ids = (np.arange(len(xyz)) if body_ids is None
           else np.asarray(body_ids, np.int64).reshape(-1))
    if len(ids) != len(xyz):
      raise ValueError(f'{self.name}: frame {self.frames_seen}: {len(xyz)} bodies but '
                       f'{len(ids)} body IDs')
    self._frames.append((ids, xyz))
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
    try:
      sample = preprocess.preprocess_skeleton(self.window_skeleton(), self.preprocessing)
    except preprocess.NoSkeletonError:
      return None
    x = preprocess.pad_or_crop(sample, self.window)[None].astype(np.float32)
    return preprocess.select_stream(x, self.stream)

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


def replay(model: serving.ExportedModel, path: str, *, window: int = 64, hop: int = 8,
           fps: float = 30.0, top_k: int = 3, out: TextIO = sys.stdout,
           progress: TextIO | None = sys.stderr) -> list[Prediction]:
  """Feeds a `.skeleton` file to a `Recognizer` at `fps` frames per second (0: unpaced).

  The network is compiled first, so the first prediction's latency is like the others'.
  """
  skeleton = skeleton_lib.read_skeleton(path, np.float64, xyz_only=True)
  recognizer = Recognizer(model, window=window, hop=hop, top_k=top_k, name=path)
  model(np.zeros((1, window) + model.input_shape[2:], np.float32))  # compiles before the clock
  predictions, start = [], time.perf_counter()
  for i, (bodies, ids) in enumerate(frames_of(skeleton)):
    if fps > 0:
      time.sleep(max(0.0, start + i / fps - time.perf_counter()))
    p = recognizer.push(bodies, ids)
    if p is not None:
      predictions.append(p)
      if progress:
        progress.write('\r\033[K')
      shown = '  '.join(f'{name} {prob:.3f}' for name, prob in p.actions) or '(nobody)'
      print(f'frame {p.frame:>5}  {p.latency_ms:7.1f} ms  {shown}', file=out, flush=True)
    if progress:
      elapsed = time.perf_counter() - start
      rate = len(predictions) / elapsed if elapsed else 0.0
      progress.write(f'\r\033[K{path}: frame {i + 1}/{skeleton.num_frames}, '
                     f'{len(predictions)} predictions ({rate:.1f}/s)')
      progress.flush()
  if progress:
    progress.write('\n')
  if not predictions:
    print(f'{path}: {skeleton.num_frames} frames, fewer than the window of {window}: no '
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


def main(argv):
  if len(argv) < 2:
    raise app.UsageError('name one or more .skeleton files to replay')
  model = serving.load(FLAGS.export)
  for path in argv[1:]:
    replay(model, path, window=FLAGS.window, hop=FLAGS.hop, fps=FLAGS.fps, top_k=FLAGS.top_k)
  return 0


if __name__ == '__main__':
  _define_flags()
  cli.run(main, input_errors=(serving.ExportError, skeleton_lib.SkeletonFormatError,
                              ValueError))
