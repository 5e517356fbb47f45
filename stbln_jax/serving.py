"""Runs an exported network with `jax` and `numpy` alone (no Flax, Optax, Orbax, TFDS).

An export (`stbln_jax.export`) is two files:

  model.stablehlo        `jax.export` serialisation of the inference forward pass,
                         input (N, T, M, V, C) float32 -> logits (N, num_classes) float32
  model.stablehlo.json   the sidecar (`SIDECAR_FIELDS`): the skeleton layout and what
                         the last input axis holds ('channels'), stream, class names,
                         input shape ('N'/'T' where symbolic), preprocessing (an NTU
                         builder's, or null: keypoints as given), the stablehlo
                         file's size and SHA-256; and, where the run normalised each
                         clip, 'center_joint' and 'normalization' (the config's)

`load(path)` checks the pair against each other and returns an `ExportedModel`; every
mismatch raises `ExportError` naming the file and what is wrong.
"""

import hashlib
import json
import os

import jax
import numpy as np

from stbln_jax.data import layouts
from stbln_jax.data import preprocess

FORMAT = 'stbln_jax.export/1'
SIDECAR_SUFFIX = '.json'
SIDECAR_FIELDS = ('format', 'layout', 'stream', 'preprocessing', 'class_names', 'input_shape',
                  'num_frames', 'model', 'step', 'sha256', 'size')
LAYOUTS = tuple(layouts.LAYOUTS)


class ExportError(ValueError):
  """An export that cannot be loaded or run: which file and what is wrong."""


def sidecar_path(path: str) -> str:
  return os.fspath(path) + SIDECAR_SUFFIX


def sha256_of(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


class ExportedModel:
  """A loaded export: call it on (N, T, M, V, C) float32 inputs to get logits (N, K)."""

  def __init__(self, path: str, exported: jax.export.Exported, meta: dict):
    self.path, self.exported, self.meta = path, exported, meta
    self._run = jax.jit(exported.call)  # one compilation per input shape

  @property
  def class_names(self) -> list[str]:
    return list(self.meta['class_names'])

  @property
  def layout(self) -> str:
    return self.meta['layout']

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
    z = np.asarray(logits, np.float64)
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    names = self.meta['class_names']
    return [[(names[c], float(row[c])) for c in np.argsort(-row, kind='stable')[:k]] for row in p]


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
  if meta['layout'] not in LAYOUTS:
    raise ExportError(f'{side}: layout {meta["layout"]!r} is not one of {LAYOUTS}')
  meta.setdefault('channels', 'xyz')  # an export from before layouts
  meta.setdefault('center_joint', None)  # exports from before per-clip normalisation
  meta.setdefault('normalization', 'none')
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
  if v != layouts.get_layout(meta['layout']).num_joints or c != len(meta['channels']):
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
