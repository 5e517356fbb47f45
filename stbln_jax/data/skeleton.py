"""Reader for NTU RGB+D `.skeleton` text files (Kinect v2, 25 joints).

This module owns the raw file format: `read_skeleton` turns a file into a
`Skeleton` and rejects every malformed file with a `SkeletonFormatError` naming
the file, the line and what is wrong. Format (whitespace separated, LF or
CRLF): `<numFrames>`; per frame `<numBodies>` (0 is legal); per body a line of
the body ID and the 9 `BODY_INFO_FIELDS`, `<numJoints>` (25), 25 lines of the
12 `JOINT_FIELDS`. Values are what Python's `float` reads (through numpy); body
IDs (17 digits, not exact as float64) are read as integers.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re

import numpy as np

from stbln_jax.data import ntu
# Sample names are NTU facts; offered here too, beside the files they name.
from stbln_jax.data.ntu import parse_sample_name, SampleName  # noqa: F401

NUM_JOINTS = ntu.NUM_JOINTS
BODY_INFO_FIELDS = ('clipedEdges', 'handLeftConfidence', 'handLeftState',
                    'handRightConfidence', 'handRightState', 'isRestricted',
                    'leanX', 'leanY', 'trackingState')
JOINT_FIELDS = ('x', 'y', 'z', 'depthX', 'depthY', 'colorX', 'colorY',
                'orientationW', 'orientationX', 'orientationY', 'orientationZ',
                'trackingState')
# Sanity limits: NTU files have at most 300 frames and 4 bodies per frame.
MAX_FRAMES = 100_000
MAX_BODIES = 6

_INFO, _JOINT = len(BODY_INFO_FIELDS), len(JOINT_FIELDS)
# A body is its ID, 9 info values, the joint count and 25 x 12 values; the
# token offsets (from the ID) of its lines, its x y z and tracking states.
_BODY_TOKENS = _INFO + 2 + NUM_JOINTS * _JOINT
_JOINTS_AT = _INFO + 2
_BODY_LINES = np.r_[0, _INFO + 1, _JOINTS_AT + _JOINT * np.arange(NUM_JOINTS)]
_XYZ = (_JOINTS_AT + _JOINT * np.arange(NUM_JOINTS)[:, None]
        + np.arange(3)).ravel()
_STATES = _JOINTS_AT + _JOINT * np.arange(NUM_JOINTS) + _JOINT - 1
_LINE_KINDS = {1: 'count line', _INFO + 1: 'body line', _JOINT: 'joint line'}
_TEXT = bytes(range(32, 127)) + b'\t\n\r'
_NUMBER_BYTES = b'0123456789.-+eE \t\n\r'
_NUMBER_RE = re.compile(rb'[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?')


class SkeletonFormatError(ValueError):
  """A `.skeleton` file that does not follow the format: `path`, `line`
  (1-based, or None) and `reason` (e.g. 'expected 25 joints, got 24')."""

  def __init__(self, path, line: int | None, reason: str):
    self.path, self.line, self.reason = str(path), line, reason
    super().__init__(f'{self.path}{"" if line is None else f":{line}"}: '
                     f'{reason}')

  def __reduce__(self):  # keeps the attributes across processes
    return type(self), (self.path, self.line, self.reason)


@dataclasses.dataclass(frozen=True, eq=False)
class Skeleton:
  """One parsed file of `num_frames` frames (some may hold no body): every
  body of every frame is a row, in file order, with its `frame_index` and
  Kinect tracking ID (`body_ids`, int64 (R,)), `xyz` (R, 25, 3) camera
  coordinates in metres and, unless read `xyz_only`, `body_info` (R, 9)
  and `joints` (R, 25, 12) in `BODY_INFO_FIELDS` / `JOINT_FIELDS` order (the
  tracking state: 0 not tracked, 1 inferred, 2 tracked)."""
  path: str
  num_frames: int
  frame_index: np.ndarray
  body_ids: np.ndarray
  xyz: np.ndarray
  body_info: np.ndarray | None = None
  joints: np.ndarray | None = None


def read_skeleton(path: str | os.PathLike[str], dtype=np.float32,
                  xyz_only: bool = False) -> Skeleton:
  """Parses one `.skeleton` file, values as `dtype` (float64: `float`'s);
  `xyz_only` decodes x, y, z alone (every value is still checked).

  Raises:
    SkeletonFormatError: unreadable, empty, binary or truncated; a value no
      finite number; a count negative or absurd (frames > 100000, bodies > 6,
      joints != 25); a line blank or with the wrong number of values; a bad
      body ID or tracking state; data after the last frame.
  """
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except OSError as e:
    raise SkeletonFormatError(path, None, f'cannot read: {e}') from e
  return parse_skeleton(data, os.fspath(path), dtype, xyz_only)


class _Problem(Exception):
  """What is wrong at token `token` (or on line `line`); `trailing`: data
  after the last frame, which only a bad token before it explains."""

  def __init__(self, reason, token=None, line=None, trailing=False):
    super().__init__(reason)
    self.reason, self.token, self.line = reason, token, line
    self.trailing = trailing


def parse_skeleton(data: bytes, path: str = '<bytes>', dtype=np.float32,
                   xyz_only: bool = False) -> Skeleton:
  """`read_skeleton` of a file's bytes; `path` names the file."""
  if not data:
    raise SkeletonFormatError(path, 1, 'empty file')
  buf = np.frombuffer(data, np.uint8)
  newlines = np.flatnonzero(buf == ord('\n'))
  line_at = lambda offset: int(np.searchsorted(newlines, offset)) + 1
  binary = data.translate(None, _TEXT)
  if binary:
    at = min(data.find(b) for b in set(binary))
    raise SkeletonFormatError(path, line_at(at),
                              f'binary data (byte 0x{data[at]:02x})')
  tokens = data.split()
  if not tokens:
    raise SkeletonFormatError(path, 1, 'no frame count (file is blank)')
  space = np.r_[True, buf <= 32, True]
  starts, ends = np.flatnonzero(space[1:] != space[:-1]).reshape(-1, 2).T
  line_of = lambda k: line_at(starts[min(k, len(tokens) - 1)])
  values = junk = None
  if not (xyz_only and _plain(data, buf, starts, ends)):
    values = _decode(tokens, data)
    junk = _first_junk(tokens) if values is None else None
  take = lambda at: (values[at] if values is not None else  # as float64
                     np.array([tokens[k] for k in at.tolist()], np.float64))
  try:
    heads, counts = _structure(tokens, np.searchsorted(starts, newlines))
    at = (heads[:, None] + _STATES).ravel()
    if junk is None:  # then every token is a number
      state = (buf[starts[at]] - 48.0 if values is None and np.all(
          ends[at] - starts[at] == 1) else take(at))
      bad = np.flatnonzero((state != 0) & (state != 1) & (state != 2))
      if len(bad):
        raise _Problem('joint tracking state must be 0, 1 or 2, got '
                       f'{_shown(tokens[at[bad[0]]])}', token=int(at[bad[0]]))
  except _Problem as p:
    line = p.line if p.line is not None else line_of(p.token)
    if junk is not None and (junk.token < p.token if p.trailing
                             else line_of(junk.token) <= line):
      p, line = junk, line_of(junk.token)
    raise SkeletonFormatError(path, line, p.reason) from None
  if junk is not None:
    raise SkeletonFormatError(path, line_of(junk.token), junk.reason)
  frame_index = np.repeat(np.arange(len(counts)), counts)
  body_ids = np.array([int(tokens[h]) for h in heads], np.int64)
  if xyz_only:
    xyz = take((heads[:, None] + _XYZ).ravel())
    return Skeleton(path, len(counts), frame_index, body_ids,
                    xyz.astype(dtype).reshape(len(heads), NUM_JOINTS, 3))
  body = values[heads[:, None] + np.arange(1, _BODY_TOKENS)].astype(dtype)
  joints = body[:, _JOINTS_AT - 1:].reshape(len(heads), NUM_JOINTS, _JOINT)
  return Skeleton(path, len(counts), frame_index, body_ids, joints[..., :3],
                  body[:, :_INFO], joints)


def _plain(data: bytes, buf: np.ndarray, starts, ends) -> bool:
  """Whether every token is surely a finite number. Without letters, a token
  is `[-+]?(digits[.digits]|.digits)` when a sign is only its first byte, it
  holds one dot at most (no '..' once digits are gone) and ends in a digit,
  or in a dot after one; those with an exponent are checked one by one."""
  if (data.translate(None, _NUMBER_BYTES)
      or b'..' in data.translate(None, b'0123456789')):
    return False  # letters (as in 'nan'), other junk, or two dots
  ahead = buf[np.flatnonzero((buf == ord('+')) | (buf == ord('-'))) - 1]
  digit = lambda b: b - ord('0') <= 9  # uint8: bytes below '0' wrap round
  last, before = buf[ends - 1], buf[ends - 2]
  if (np.any((ahead > 32) & ((ahead | 0x20) != ord('e')))  # an inner sign
      or not np.all(digit(last) | ((last == ord('.')) & digit(before)))
      or np.max(ends - starts) > 300):
    return False
  e = np.flatnonzero((buf | 0x20) == ord('e'))
  exponents = np.searchsorted(starts, e, 'right') - 1
  return all(_NUMBER_RE.fullmatch(data[starts[k]:ends[k]]) and math.isfinite(
      float(data[starts[k]:ends[k]])) for k in set(exponents.tolist()))


def _decode(tokens: list[bytes], data: bytes) -> np.ndarray | None:
  """Every token as float64, or None if one is no finite number."""
  if data.translate(None, _NUMBER_BYTES):
    return None  # `float` would take 'nan', '1_000'
  try:
    values = np.array(tokens, np.float64)
  except ValueError:
    return None
  return values if np.isfinite(values).all() else None


def _first_junk(tokens: list[bytes]) -> _Problem | None:
  """The first token that is no finite number, as a `_Problem`."""
  for k, text in enumerate(tokens):
    if not (_NUMBER_RE.fullmatch(text) and math.isfinite(float(text))):
      number = (_NUMBER_RE.fullmatch(text)
                or text.lstrip(b'+-').lower() in (b'nan', b'inf', b'infinity'))
      kind = 'non-finite value' if number else 'non-numeric token'
      return _Problem(f"{kind} '{_shown(text)}'", token=k)
  return None


def _shown(text: bytes) -> str:
  return text[:40].decode('ascii') + ('...' if len(text) > 40 else '')


def _structure(tokens, after_newline):
  """Walks the headers; returns (the token of each body ID, bodies per
  frame), or raises the first `_Problem` of the file's layout."""
  n = len(tokens)
  frame_heads, heads, counts = [], [], []
  check = lambda upto: _check_lines(after_newline, n, frame_heads, heads, upto)

  def count(k, what, limit):
    if not tokens[k].isdigit() or int(tokens[k]) > limit:
      check(k)
      text = _shown(tokens[k])
      raise _Problem(f'absurd {what} {text} (at most {limit})'
                     if tokens[k].isdigit() else
                     f'expected a non-negative integer {what}, got {text}',
                     token=k)
    return int(tokens[k])

  num_frames, k = count(0, 'frame count', MAX_FRAMES), 1
  for t in range(num_frames):
    if k >= n:
      check(n)
      raise _Problem(f'file ends after frame {t} of {num_frames}', token=n)
    num_bodies = count(k, f'body count of frame {t + 1}', MAX_BODIES)
    frame_heads.append(k)
    counts.append(num_bodies)
    heads.extend(range(k + 1, k + 1 + num_bodies * _BODY_TOKENS,
                       _BODY_TOKENS))
    k += 1 + num_bodies * _BODY_TOKENS
    if k > n:
      check(n)
      raise _Problem(f'file ends inside frame {t + 1} of {num_frames} '
                     f'({num_bodies} bodies announced)', token=n)
  for h in heads:
    text = tokens[h + _JOINTS_AT - 1]
    if not tokens[h].isdigit() or int(tokens[h]) >= 2**63:
      check(h)
      raise _Problem('expected an integer body ID below 2**63, got '
                     f'{_shown(tokens[h])}', token=h)
    if not (text.isdigit() and int(text) == NUM_JOINTS):
      check(h + _JOINTS_AT - 1)
      raise _Problem(f'expected {NUM_JOINTS} joints, got {_shown(text)}',
                     token=h + _JOINTS_AT - 1)
  check(k)
  if k < n:
    raise _Problem('unexpected data after the last frame: '
                   f"'{_shown(tokens[k])}'", token=k, trailing=True)
  return np.asarray(heads, np.int64), counts


def _check_lines(after_newline, n, frame_heads, heads, upto):
  """Raises a `_Problem` for the first line starting before token `upto`
  that does not hold the tokens the format puts there. A line starts at token
  0 and at each token right after a newline (`after_newline`); blank lines
  at the end of the file are fine."""
  actual = np.r_[0, after_newline[after_newline < n]]
  expected = np.r_[0, frame_heads,
                   (np.asarray(heads, np.int64)[:, None] + _BODY_LINES).ravel()]
  actual, expected = actual[actual < upto], np.sort(expected[expected < upto])
  if len(actual) == len(expected) and np.array_equal(actual, expected):
    return
  size = min(len(actual), len(expected))
  diff = np.flatnonzero(actual[:size] != expected[:size])
  j = int(diff[0]) if len(diff) else size  # line j (1-based) is wrong
  got, want = np.append(actual, upto), np.append(expected, upto)
  got, want = int(got[j] - got[j - 1]), int(want[j] - want[j - 1])
  kind = _LINE_KINDS.get(want, 'line')
  raise _Problem('blank line' if got == 0 else
                 f'{kind}: expected {want} values, got {got}', line=j)
