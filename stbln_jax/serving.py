"""Runs an exported network with `jax`, `numpy` and `flatbuffers` alone.

  pip install jax numpy flatbuffers                  # CPU; jax[cuda12] for NVIDIA GPUs
  pip install --no-deps /path/to/stbln_jax          # this package, without the training stack

This module imports nothing of the training stack (Flax, Optax, Orbax, TFDS, grain,
ml_collections, absl), only `stbln_jax.data`'s numpy modules.

An export (`stbln_jax.export`) is two files:

  model.stablehlo        `jax.export` serialisation of the inference forward pass,
                         input (N, T, M, V, C) float32 -> logits (N, num_classes) float32
  model.stablehlo.json   the sidecar (`SIDECAR_FIELDS`): the skeleton layout (a
                         registered name, and a layout file's joints and bones in
                         'custom_layout') and what the last input axis holds
                         ('channels'), stream, class names, input shape ('N'/'T' where
                         symbolic), preprocessing (an NTU builder's, a 3D annotation
                         normalisation, or null: keypoints as given), the per-clip
                         normalisation ('center_joint', 'normalization'), the training
                         clips' frames and the evaluation's temporal sampling, the
                         stablehlo file's size and SHA-256

`load(path)` checks the pair against each other and returns an `ExportedModel`; every
mismatch raises `ExportError` naming the file and what is wrong. `ExportedModel.prepare`
makes a record (a sample as the dataset holds it) the network's input as `predict`
does, and `classify` names its actions.
"""

import hashlib
import json
import os

import jax
import numpy as np

from stbln_jax.data import augment
from stbln_jax.data import layouts
from stbln_jax.data import preprocess

FORMAT = 'stbln_jax.export/1'
SIDECAR_SUFFIX = '.json'
SIDECAR_FIELDS = ('format', 'layout', 'stream', 'preprocessing', 'class_names', 'input_shape',
                  'num_frames', 'model', 'step', 'sha256', 'size')
# Sidecar fields of later exports, and what an earlier one meant without them.
SIDECAR_DEFAULTS = {'channels': 'xyz', 'custom_layout': None, 'temporal_sampling': 'pad',
                    'test_crop': 0.95, 'num_test_clips': 1, 'center_joint': None,
                    'normalization': 'none'}


class ExportError(ValueError):
  """An export that cannot be loaded or run: which file and what is wrong."""


def sidecar_path(path: str) -> str:
  return os.fspath(path) + SIDECAR_SUFFIX


def sha256_of(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


class ExportedModel:
  """A loaded export: call it on (N, T, M, V, C) float32 inputs to get logits (N, K).

  `layout` is its skeleton (`layouts.Layout`: the joints in input order, the bones),
  `meta` the sidecar.
  """

  def __init__(self, path: str, exported: jax.export.Exported, meta: dict):
    self.path, self.exported, self.meta = path, exported, meta
    self.layout = layouts.from_fields(meta['layout'], meta.get('custom_layout'))
    self._run = jax.jit(exported.call)  # one compilation per input shape

  @property
  def class_names(self) -> list[str]:
    return list(self.meta['class_names'])

  @property
  def channels(self) -> str:
    return self.meta['channels']

  @property
  def input_shape(self) -> tuple:
    """(N, T, M, V, C) with None where the export is symbolic."""
    return tuple(d if isinstance(d, int) else None for d in self.meta['input_shape'])

  def __call__(self, x) -> np.ndarray:
    x = np.asarray(x, np.float32)
    expected = self.input_shape
    if x.ndim != len(expected) or any(e is not None and e != d for e, d in zip(expected, x.shape)):
      shown = tuple('N' if i == 0 else 'T' if e is None else e for i, e in enumerate(expected))
      raise ExportError(f'{self.path}: input of shape {x.shape}, expected {shown}')
    return np.asarray(self._run(x))

  def top_k(self, logits: np.ndarray, k: int = 5) -> list[list[tuple[str, float]]]:
    """Per row of `logits`, the k most probable (class name, softmax probability)."""
    return [self._named(row, k) for row in _softmax(logits)]

  def _named(self, p: np.ndarray, k: int) -> list[tuple[str, float]]:
    names = self.meta['class_names']
    return [(names[c], float(p[c])) for c in np.argsort(-p, kind='stable')[:k]]

  def prepare(self, record) -> np.ndarray:
    """The network's input (K, T, M, V, C) float32 of one record, as `predict` and
    evaluation make it (`input_pipeline.Transform`).

    A record is a sample as the export's dataset holds it, (T', M, V, C) in the
    sidecar's layout and channels: `annotations.to_sample` of an annotation (with the
    sidecar's preprocessing), or `preprocess.preprocess_skeleton` of an NTU file. It
    gets the run's per-clip normalisation (`normalize`), the export's stream and the
    evaluation's temporal sampling to T frames (the export's fixed T, else the
    training clips' `num_frames`): repeat-padded or cut, the centre crop resized,
    evenly spread frames, or K fixed clips ('uniform' with test clips; K = 1
    otherwise). Feeding a record of another length unprepared changes the result.
    """
    x = np.asarray(record, np.float32)
    shape = self.input_shape
    if x.ndim != 4 or x.shape[1:] != shape[2:]:
      raise ExportError(f'{self.path}: a record of shape {x.shape}, expected '
                        f'(T, {", ".join(map(str, shape[2:]))})')
    meta, stream = self.meta, self.meta['stream']
    x = self.normalize(x)
    if stream in ('bone', 'bone_motion'):  # of the record's own frames, as evaluation
      x = preprocess.select_stream(x, 'bone', self.layout, self.channels)
    clips = meta['num_test_clips'] if meta['temporal_sampling'] == 'uniform' else 1
    x = augment.eval_frames(x, shape[1] or meta['num_frames'], meta['temporal_sampling'],
                            meta['test_crop'], clips)
    x = x if clips > 1 else x[None]
    if stream.endswith('motion'):  # of the sampled frames
      x = preprocess.select_stream(x, 'joint_motion', self.layout, self.channels)
    return x.astype(np.float32)

  def normalize(self, record: np.ndarray) -> np.ndarray:
    """A record (T, M, V, C) normalised as the run normalised each clip: centred on
    the sidecar's 'center_joint' of its first frame, then its 'normalization'."""
    center, normalization = self.meta['center_joint'], self.meta['normalization']
    if center is not None:
      record = preprocess.center_on_first_frame(record, center, self.channels)
    if normalization == 'minmax':
      record = preprocess.min_max(record, self.channels)
    return record

  def classify(self, record, k: int = 5) -> list[tuple[str, float]]:
    """The k most probable (class name, probability) of one record: the network on
    `prepare(record)`, its clips' softmax probabilities averaged (as `predict`)."""
    x = self.prepare(record)
    n = self.input_shape[0]
    if n not in (None, 1, len(x)):
      raise ExportError(f'{self.path}: exported for batch {n}; classify needs batch 1 or a '
                        f'symbolic batch')
    logits = np.concatenate([self(clip[None]) for clip in x]) if n == 1 else self(x)
    return self._named(_softmax(logits).mean(0), k)


def _softmax(logits) -> np.ndarray:
  z = np.asarray(logits, np.float64)
  p = np.exp(z - z.max(-1, keepdims=True))
  return p / p.sum(-1, keepdims=True)


def read_sidecar(path: str) -> dict:
  """The sidecar of export `path`, with every field of `SIDECAR_FIELDS` checked."""
  side = sidecar_path(path)
  try:
    with open(side) as f:
      meta = json.load(f)
  except FileNotFoundError as e:
    raise ExportError(f'{side}: sidecar not found (an export is FILE and FILE.json)') from e
  except (OSError, ValueError) as e:
    raise ExportError(f'{side}: not a readable JSON sidecar: {e}') from e
  if not isinstance(meta, dict):
    raise ExportError(f'{side}: expected a JSON object, got {type(meta).__name__}')
  missing = [k for k in SIDECAR_FIELDS if k not in meta]
  if missing:
    raise ExportError(f'{side}: missing fields {missing}')
  if meta['format'] != FORMAT:
    raise ExportError(f'{side}: format {meta["format"]!r}, expected {FORMAT!r}')
  for key, value in SIDECAR_DEFAULTS.items():
    meta.setdefault(key, value)
  try:
    layout = layouts.from_fields(meta['layout'], meta['custom_layout'])
  except ValueError as e:
    raise ExportError(f'{side}: layout: {e}') from None
  if meta['normalization'] not in preprocess.NORMALIZATIONS:
    raise ExportError(f'{side}: normalization {meta["normalization"]!r} is not one of '
                      f'{preprocess.NORMALIZATIONS}')
  if meta['channels'] not in preprocess.CHANNELS:
    raise ExportError(f'{side}: channels {meta["channels"]!r} is not one of '
                      f'{preprocess.CHANNELS}')
  shape = meta['input_shape']
  if (not isinstance(shape, list) or len(shape) != 5
      or not all(isinstance(d, int) or d in ('N', 'T') for d in shape[:2])
      or not all(isinstance(d, int) for d in shape[2:])):
    raise ExportError(f'{side}: input_shape {shape!r} is not [N, T, M, V, C] '
                      f"(integers, or 'N' and 'T' where symbolic)")
  v, c = shape[3:]
  if v != layout.num_joints or c != len(meta['channels']):
    raise ExportError(f'{side}: input_shape {shape} does not fit layout {meta["layout"]!r} '
                      f'with channels {meta["channels"]!r}')
  return meta


def load(path: str) -> ExportedModel:
  """Reads and checks export `path` and its sidecar (see the module docstring).

  Raises:
    ExportError: a file is missing, truncated or altered, or the two do not match.
  """
  path = os.fspath(path)
  meta = read_sidecar(path)
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except OSError as e:
    raise ExportError(f'{path}: cannot read the export: {e}') from e
  if len(data) != meta['size']:
    raise ExportError(f'{path}: {len(data)} bytes, but its sidecar says {meta["size"]} '
                      f'(truncated or not the export it describes)')
  if sha256_of(data) != meta['sha256']:
    raise ExportError(f'{path}: SHA-256 differs from its sidecar\'s (altered, or not the '
                      f'export it describes)')
  try:
    exported = jax.export.deserialize(bytearray(data))
  except ImportError as e:  # jax reads the file with `flatbuffers`, not a dependency of jax
    missing = getattr(e.__cause__, 'name', None) or e.name or str(e)
    raise ExportError(f'{path}: reading a jax.export serialisation needs the package '
                      f'{missing!r}, which is not installed: pip install {missing}') from e
  except Exception as e:  # the deserialiser's own errors are flatbuffer internals
    raise ExportError(f'{path}: not a jax.export serialisation: {type(e).__name__}: {e}') from e
  _check_signature(path, exported, meta)
  return ExportedModel(path, exported, meta)


def _check_signature(path: str, exported, meta: dict) -> None:
  if len(exported.in_avals) != 1 or len(exported.out_avals) != 1:
    raise ExportError(f'{path}: expected one input and one output, got '
                      f'{len(exported.in_avals)} and {len(exported.out_avals)}')
  (x,), (y,) = exported.in_avals, exported.out_avals
  shape = meta['input_shape']
  fixed = [d if isinstance(d, int) else None for d in shape]
  actual = [d if isinstance(d, int) else None for d in x.shape]
  if fixed != actual or x.dtype != np.float32:
    raise ExportError(f'{path}: takes {x.dtype}{list(map(str, x.shape))}, but its sidecar '
                      f'says float32{shape}')
  num_classes = y.shape[-1]
  if num_classes != len(meta['class_names']):
    raise ExportError(f'{path}: gives {num_classes} logits, but its sidecar names '
                      f'{len(meta["class_names"])} classes')
