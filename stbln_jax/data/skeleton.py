"""Reader for NTU RGB+D `.skeleton` text files (Kinect v2, 25 joints).

This module owns the raw file format: `read_skeleton` turns one file into a
`Skeleton` of per-frame arrays, and rejects every malformed file with a
`SkeletonFormatError` that names the file, the line and what was expected.
`read_xyz` checks a file just as strictly but decodes only what body selection
needs (counts, body IDs, x, y, z), for building datasets. `parse_sample_name`
reads the setup/camera/subject/replication/action ids out of a name such as
`S001C002P003R002A013`.

File format (whitespace separated, LF or CRLF line ends):

    <numFrames>
    per frame:
      <numBodies>                                   (0 is legal)
      per body:
        bodyID clipedEdges handLeftConfidence handLeftState
          handRightConfidence handRightState isRestricted leanX leanY
          trackingState                             (10 values, one line)
        <numJoints>                                 (always 25)
        25 lines: x y z depthX depthY colorX colorY
                  orientationW orientationX orientationY orientationZ
                  trackingState                     (12 values per line)

Speed: the NTU-120 archive holds 114,480 files of ~300 KB each, so the reader
never converts numbers one Python `float()` at a time. All numbers of a file
are decoded together with numpy (`_decode_chunk`): each token is loaded as two
little-endian 64-bit words and its ASCII digits are turned into an integer with
SIMD-within-a-register arithmetic, exactly like `float()`; only rare tokens
(exponent notation, body IDs and other long tokens, junk) take a per-token
Python path. The frame/body headers are then walked in Python (one step per
frame), and the line structure is checked by comparing where lines start with
where the format says they must start.
"""

from __future__ import annotations

from collections.abc import Sequence
import dataclasses
import os
import pathlib
import re
import threading

import numpy as np

NUM_JOINTS = 25
# Values on one joint line and on one body line (after the body ID).
JOINT_VALUES = 12
BODY_INFO_VALUES = 9
BODY_INFO_FIELDS = ('clipedEdges', 'handLeftConfidence', 'handLeftState',
                    'handRightConfidence', 'handRightState', 'isRestricted',
                    'leanX', 'leanY', 'trackingState')
JOINT_FIELDS = ('x', 'y', 'z', 'depthX', 'depthY', 'colorX', 'colorY',
                'orientationW', 'orientationX', 'orientationY', 'orientationZ',
                'trackingState')
# Sanity limits: NTU files have at most ~300 frames and 4 bodies per frame.
MAX_FRAMES = 100_000
MAX_BODIES = 6

# Tokens of one body: ID, 9 info values, the joint count, 25 x 12 joint values.
_BODY_TOKENS = 1 + BODY_INFO_VALUES + 1 + NUM_JOINTS * JOINT_VALUES
# Offsets (in tokens, from the body line's first token) of the lines of a body.
_BODY_LINE_OFFSETS = np.concatenate(
    [[0, 1 + BODY_INFO_VALUES],
     2 + BODY_INFO_VALUES + JOINT_VALUES * np.arange(NUM_JOINTS)])
_LINE_KINDS = {1: 'count line', 1 + BODY_INFO_VALUES: 'body line',
               JOINT_VALUES: 'joint line'}


class SkeletonFormatError(ValueError):
  """A `.skeleton` file that does not follow the format.

  Attributes:
    path: the file.
    line: 1-based line number of the offending text, or None.
    reason: what was wrong, e.g. 'expected 25 joints, got 24'.
  """

  def __init__(self, path, line: int | None, reason: str):
    self.path = str(path)
    self.line = line
    self.reason = reason
    where = self.path if line is None else f'{self.path}:{line}'
    super().__init__(f'{where}: {reason}')

  def __reduce__(self):
    # Keeps the attributes when the error crosses a process boundary.
    return type(self), (self.path, self.line, self.reason)


@dataclasses.dataclass(frozen=True, eq=False)
class Frame:
  """The bodies seen in one frame; B may be 0 (nobody tracked).

  Attributes:
    body_ids: int64 (B,) Kinect tracking IDs (stable across frames).
    body_info: float32 (B, 9) in `BODY_INFO_FIELDS` order.
    xyz: float32 (B, 25, 3) camera coordinates in metres.
    depth_xy: float32 (B, 25, 2) pixels in the 512x424 depth image.
    color_xy: float32 (B, 25, 2) pixels in the 1920x1080 colour image.
    orientation: float32 (B, 25, 4) joint quaternions (w, x, y, z).
    tracking_state: int8 (B, 25): 0 not tracked, 1 inferred, 2 tracked.
  """
  body_ids: np.ndarray
  body_info: np.ndarray
  xyz: np.ndarray
  depth_xy: np.ndarray
  color_xy: np.ndarray
  orientation: np.ndarray
  tracking_state: np.ndarray

  @property
  def num_bodies(self) -> int:
    return len(self.body_ids)


@dataclasses.dataclass(frozen=True, eq=False)
class BodyRows:
  """Every body of every frame of a file, one row each, in file order.

  This is the flat form `Skeleton.frames` is cut from; row r belongs to frame
  `frame_index[r]`. With R rows: `frame_index` int64 (R,), `body_ids` int64
  (R,), `body_info` float32 (R, 9), `joints` float32 (R, 25, 11) holding the
  first 11 joint values (x y z depthX depthY colorX colorY orientation w x y z),
  `tracking_state` int8 (R, 25).
  """
  frame_index: np.ndarray
  body_ids: np.ndarray
  body_info: np.ndarray
  joints: np.ndarray
  tracking_state: np.ndarray

  @property
  def xyz(self) -> np.ndarray:
    """float32 (R, 25, 3)."""
    return self.joints[:, :, 0:3]

  def frame(self, start: int, stop: int) -> Frame:
    """The rows start..stop-1 as one `Frame` (arrays are views)."""
    joints = self.joints[start:stop]
    return Frame(body_ids=self.body_ids[start:stop],
                 body_info=self.body_info[start:stop],
                 xyz=joints[:, :, 0:3], depth_xy=joints[:, :, 3:5],
                 color_xy=joints[:, :, 5:7], orientation=joints[:, :, 7:11],
                 tracking_state=self.tracking_state[start:stop])

  @classmethod
  def from_frames(cls, frames) -> BodyRows:
    counts = [f.num_bodies for f in frames]
    if not frames:
      return cls(np.zeros((0,), np.int64), np.zeros((0,), np.int64),
                 np.zeros((0, BODY_INFO_VALUES), np.float32),
                 np.zeros((0, NUM_JOINTS, JOINT_VALUES - 1), np.float32),
                 np.zeros((0, NUM_JOINTS), np.int8))
    joints = np.concatenate(
        [np.concatenate([f.xyz, f.depth_xy, f.color_xy, f.orientation], -1)
         for f in frames], 0).astype(np.float32)
    return cls(
        frame_index=np.repeat(np.arange(len(frames)), counts),
        body_ids=np.concatenate([f.body_ids for f in frames]).astype(np.int64),
        body_info=np.concatenate([f.body_info for f in frames]).astype(
            np.float32),
        joints=joints,
        tracking_state=np.concatenate(
            [f.tracking_state for f in frames]).astype(np.int8))


class FrameSequence(Sequence):
  """The frames of a `BodyRows`, made on first access (a file has ~100-300
  frames and most users only need the rows)."""

  def __init__(self, rows: BodyRows, bounds: list[int]):
    self._rows = rows
    self._bounds = bounds  # frame t holds rows bounds[t]..bounds[t+1]-1
    self._cache = {}

  def __len__(self) -> int:
    return len(self._bounds) - 1

  def __getitem__(self, index):
    if isinstance(index, slice):
      return tuple(self[i] for i in range(*index.indices(len(self))))
    t = range(len(self))[index]  # IndexError and negative indices
    frame = self._cache.get(t)
    if frame is None:
      frame = self._cache[t] = self._rows.frame(self._bounds[t],
                                                self._bounds[t + 1])
    return frame

  def __repr__(self) -> str:
    return f'<{len(self)} frames>'


@dataclasses.dataclass(frozen=True, eq=False)
class Skeleton:
  """One parsed `.skeleton` file.

  Attributes:
    path: the file it was read from.
    num_frames: frames in the file (also those with no body).
    frames: `num_frames` `Frame`s; any sequence works (`read_skeleton` gives
      a `FrameSequence` that makes each frame on first access).
    rows: the same bodies as flat per-body rows (`BodyRows`).
  """
  path: str
  num_frames: int
  frames: Sequence[Frame]
  # Filled by `read_skeleton`; derived from `frames` when not given.
  _rows: BodyRows | None = dataclasses.field(
      default=None, repr=False, compare=False)

  @property
  def rows(self) -> BodyRows:
    """Every body of every frame as flat rows (see `BodyRows`)."""
    if self._rows is None:  # made from `frames` once
      object.__setattr__(self, '_rows', BodyRows.from_frames(self.frames))
    return self._rows

  @property
  def body_ids(self) -> tuple[int, ...]:
    """Distinct body IDs in order of first appearance."""
    ids = self.rows.body_ids
    _, first = np.unique(ids, return_index=True)
    return tuple(int(ids[i]) for i in np.sort(first))

  def track(self, body_id: int) -> tuple[np.ndarray, np.ndarray]:
    """One body over the whole file.

    Returns:
      present: bool (T,), the frames where `body_id` appears.
      xyz: float32 (T, 25, 3), its joints there and zeros elsewhere.
    """
    rows = self.rows
    mine = rows.body_ids == body_id
    present = np.zeros((self.num_frames,), bool)
    present[rows.frame_index[mine]] = True
    xyz = np.zeros((self.num_frames, NUM_JOINTS, 3), np.float32)
    xyz[rows.frame_index[mine]] = rows.xyz[mine]
    return present, xyz


# ---- Sample names ------------------------------------------------------------

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


# ---- Number decoding ---------------------------------------------------------

# Whitespace padding around the text, so every token has 16 readable bytes on
# either side for the 8-byte word loads.
_PAD = 16
_U64 = np.uint64


def _bytes8(byte: int) -> np.uint64:
  return _U64(int.from_bytes(bytes([byte]) * 8, 'little'))


_LOW7 = _bytes8(0x7F)
_ASCII_ZEROS = _bytes8(ord('0'))
_DOT_DIGIT = _U64(ord('.') ^ ord('0'))  # a '.' in digit-value space
_DOT_DIGITS = _bytes8(ord('.') ^ ord('0'))
_SIXES = _bytes8(0x06)
_HIGH_NIBBLES = _bytes8(0xF0)
# A token of n <= 15 characters (sign removed) is loaded right-aligned into
# two words (lo: characters 16-n.., hi: the last 8) and turned into digit
# values (byte ^ '0'); _KEEP_*[n] keeps the token's bytes and zeroes the ones
# before it, which then read as leading 0 digits.
_KEEP_LO = np.array(
    [0 if n <= 8 else ((1 << 64) - 1) ^ ((1 << (8 * (16 - n))) - 1)
     for n in range(16)], dtype=np.uint64)
_KEEP_HI = np.array(
    [((1 << 64) - 1) ^ ((1 << (8 * (8 - min(n, 8)))) - 1) for n in range(16)],
    dtype=np.uint64)
# Indexed by the number of fraction digits F (16 means no decimal point;
# indices up to 40 arise only for rejected tokens with several dots).
_POW10 = 10.0 ** np.minimum(np.arange(41), 15)
_POW10[16:] = 1.0
_INT_SCALE = 10.0 * _POW10
_INT_DROP = 9.0 * _POW10
_INT_DROP[16:] = 0.0
# Tokens decoded per numpy pass: bounds the temporaries (128 KiB each) and
# the number of numpy calls (measured best among 2k-32k).
_CHUNK = 16384
_NUMBER_RE = re.compile(rb'[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?')
_NON_FINITE = {b'nan', b'inf', b'infinity'}


def _digits8_to_int(w: np.ndarray) -> np.ndarray:
  """uint64 words of 8 digit values 0-9 (first digit in the lowest byte) ->
  the integer they spell."""
  w = (w * _U64(10 * 256 + 1)) >> _U64(8)
  w = ((w & _U64(0x00FF00FF00FF00FF)) * _U64(100 * 65536 + 1)) >> _U64(16)
  w = ((w & _U64(0x0000FFFF0000FFFF)) * _U64(10000 * (1 << 32) + 1)) >> _U64(32)
  return w


def _zero_byte_flags(w: np.ndarray) -> np.ndarray:
  """0x80 in every byte of w that is 0x00, 0 elsewhere (exact)."""
  return ~(((w & _LOW7) + _LOW7) | w | _LOW7)


# Per-thread scratch memory, grown as needed: fresh multi-MB temporaries for
# every file would cost page faults (a large share of the time).
_scratch = threading.local()
_SCRATCH_LIMIT = 1 << 25  # bytes per buffer kept between calls


def _scratch_array(name: str, size: int, dtype) -> np.ndarray:
  """A reused 1-D array of at least `size` items, first `size` returned;
  overwritten by the next call for `name` in this thread."""
  array = getattr(_scratch, name, None)
  if array is None or array.size < size or array.dtype != dtype:
    array = np.empty((max(size, 1 << 16),), dtype)
    if array.nbytes <= _SCRATCH_LIMIT:
      setattr(_scratch, name, array)
  return array[:size]


def _aligned_words(buf: np.ndarray) -> np.ndarray:
  """The 8-byte little-endian word starting at every byte offset of `buf`,
  as one aligned array: offset o is at `(o % 8) * m + o // 8` (m = its
  length / 8). Eight shifted copies of the text cost less than loading
  unaligned words one by one. The result is overwritten by the next call in
  the same thread."""
  m = len(buf) // 8 + 1
  # Little-endian words whatever the machine.
  words = _scratch_array('words', 8 * m, np.dtype('<u8')).reshape(8, m)
  as_bytes = words.view(np.uint8)
  for r in range(8):
    as_bytes[r, :len(buf) - r] = buf[r:]
    as_bytes[r, len(buf) - r:] = ord(' ')
  return words.ravel()


_SEVEN = _U64(7)


def _decode_chunk(words, buf, starts, ends):
  """Decodes tokens `[-]digits[.digits]` of at most 15 characters after the
  sign; returns (values float64, is_int bool, ok bool) where ok marks tokens
  of that form (the others are left to the caller).

  Each token is loaded right-aligned into two words lo/hi (its last byte is
  hi's top byte) as digit values (byte ^ '0', so the bytes before it become
  0 digits and a dot becomes 0 too), and the 16 digits are turned into an
  integer z; with F fraction digits, z = int_part * 10^(F+1) + fraction, from
  which the value follows with one correctly rounded division (z < 10^15 is
  exact in float64).
  """
  neg = buf[starts] == ord('-')
  n = ends - starts - neg
  ok = (n >= 1) & (n <= 15)
  n = np.minimum(n, 15)
  last = ends - 8
  at = (last & 7) * (len(words) // 8) + (last >> 3)
  hi = words[at]
  lo = words[at - 1]  # the word 8 bytes earlier: same row, previous column
  hi ^= _ASCII_ZEROS
  hi &= _KEEP_HI[n]
  lo ^= _ASCII_ZEROS
  lo &= _KEEP_LO[n]
  dot_hi = _zero_byte_flags(hi ^ _DOT_DIGITS)
  dot_lo = _zero_byte_flags(lo ^ _DOT_DIGITS)
  num_dots = np.bitwise_count(dot_hi) + np.bitwise_count(dot_lo)
  has_dot = num_dots == 1
  ok &= (num_dots <= 1) & ~(has_dot & (n == 1))
  # Fraction digits F, from the dot's byte b: popcount(flag - 1) = 8 b + 7;
  # F = 16 encodes "no dot".
  below_hi = np.bitwise_count(dot_hi - _U64(1))
  below_lo = np.bitwise_count(dot_lo - _U64(1))
  frac = np.where(below_hi < 64, (63 - below_hi) >> 3,
                  np.where(below_lo < 64, 8 + ((63 - below_lo) >> 3),
                           np.uint8(16)))
  hi ^= (dot_hi >> _SEVEN) * _DOT_DIGIT
  lo ^= (dot_lo >> _SEVEN) * _DOT_DIGIT
  # Every byte must now be a digit value: below 10.
  check = hi | (hi + _SIXES)
  check |= lo
  check |= lo + _SIXES
  check &= _HIGH_NIBBLES
  ok &= check == 0
  z = _digits8_to_int(lo)
  z *= _U64(100_000_000)
  z += _digits8_to_int(hi)
  z = z.astype(np.float64)
  int_part = z / _INT_SCALE[frac]
  np.floor(int_part, out=int_part)
  int_part *= _INT_DROP[frac]
  z -= int_part
  z /= _POW10[frac]
  np.negative(z, out=z, where=neg)
  return z, ~has_dot & ~neg, ok


# `_decode_numbers`: the number of fraction digits F (16: no dot) indexed by
# popcount(hi_dot - 1) + 2 popcount(lo_dot - 1), where x_dot holds bit 4 of
# the dot's byte (none: 0, which counts 64). A dot in byte i of hi (byte 7 is
# the token's last character) leaves 7 - i fraction digits, in byte i of lo
# 15 - i; all these indices differ.
_FRACTION_DIGITS = np.full((193,), 16, np.intp)
for _i in range(8):
  _FRACTION_DIGITS[8 * _i + 4 + 2 * 64] = 7 - _i
  _FRACTION_DIGITS[64 + 2 * (8 * _i + 4)] = 15 - _i
_DOT_BITS = _bytes8(0x10)
_FOUR = _U64(4)
_ONE = _U64(1)


def _decode_numbers(words, buf, starts, ends):
  """`_decode_chunk` for tokens already known to be `-?(d+.?d*|.d+)`: the
  same arithmetic without its checks (about half the work). Returns (values
  float64, short bool); tokens longer than 15 characters after the sign are
  not short and their values are meaningless.

  As digit values (byte ^ '0') such a token holds 0-9 and one dot (0x1E,
  the only byte with bit 4 set), so bit 4 locates the dot.
  """
  neg = buf.take(starts) == ord('-')
  n = ends - starts - neg
  short = n <= 15
  np.minimum(n, 15, out=n)
  last = ends - 8
  at = (last & 7) * (len(words) // 8) + (last >> 3)
  hi = words.take(at)
  at -= 1
  lo = words.take(at)
  hi ^= _ASCII_ZEROS
  hi &= _KEEP_HI.take(n)
  lo ^= _ASCII_ZEROS
  lo &= _KEEP_LO.take(n)
  dot_hi = hi & _DOT_BITS
  dot_lo = lo & _DOT_BITS
  index = np.bitwise_count(dot_lo - _ONE).astype(np.intp)
  index *= 2
  index += np.bitwise_count(dot_hi - _ONE)
  frac = _FRACTION_DIGITS.take(index)
  dot_hi >>= _FOUR
  dot_hi *= _DOT_DIGIT
  hi ^= dot_hi
  dot_lo >>= _FOUR
  dot_lo *= _DOT_DIGIT
  lo ^= dot_lo
  z = _digits8_to_int(lo)
  z *= _U64(100_000_000)
  z += _digits8_to_int(hi)
  z = z.astype(np.float64)
  int_part = z / _INT_SCALE.take(frac)
  np.floor(int_part, out=int_part)
  int_part *= _INT_DROP.take(frac)
  z -= int_part
  z /= _POW10.take(frac)
  np.negative(z, out=z, where=neg)
  return z, short


class _Tokens:
  """The whitespace-separated tokens of one file, decoded to numbers."""

  def __init__(self, path: str, data: bytes):
    self.path = path
    # Offsets (starts, ends, errors) are into this padded copy.
    self.padded = b' ' * _PAD + data + b' ' * _PAD
    buf = np.frombuffer(self.padded, np.uint8)
    # Problems found while decoding, as (byte offset, reason); reported only
    # once the structure is known, so that an error names the first problem
    # in the file (e.g. 'data after the last frame', not 'junk').
    self.errors = []
    # Byte-sized temporaries go to reused scratch memory (`out=`).
    flags = _scratch_array('flags', len(buf), bool)
    space = _scratch_array('space', len(buf), bool)
    np.equal(buf, ord('\n'), out=flags)
    self.newlines = np.flatnonzero(flags)
    # Control bytes other than tab/LF/CR would silently split tokens.
    num_control = np.count_nonzero(np.less(buf, 32, out=flags))
    num_space_like = len(self.newlines) + np.count_nonzero(
        np.equal(buf, ord('\r'), out=flags))
    if num_control != num_space_like:
      num_space_like += np.count_nonzero(np.equal(buf, ord('\t'), out=flags))
    if num_control != num_space_like:
      bad = int(np.flatnonzero(
          (buf < 32) & (buf != 9) & (buf != 10) & (buf != 13))[0])
      self.errors.append((bad, f'binary data (byte 0x{buf[bad]:02x})'))
    np.less_equal(buf, 32, out=space)
    np.not_equal(space[1:], space[:-1], out=flags[1:])
    flags[0] = False  # the padding makes byte 0 a space
    # Alternating token starts and ends (the text is padded with spaces).
    edges = np.flatnonzero(flags)
    self.starts = edges[0::2]
    self.ends = edges[1::2]
    self.count = len(self.starts)
    words = _aligned_words(buf)
    values = np.empty((self.count,), np.float64)
    is_int = np.empty((self.count,), bool)
    ok = np.empty((self.count,), bool)
    for i in range(0, self.count, _CHUNK):
      s = slice(i, i + _CHUNK)
      values[s], is_int[s], ok[s] = _decode_chunk(
          words, buf, self.starts[s], self.ends[s])
    # The tokens the fast path leaves: exponents, junk, and integers too long
    # for it such as body IDs, kept exactly in `big_ints` {token: int}.
    self.big_ints = {}
    slow = np.flatnonzero(~ok)
    self.num_slow = len(slow)
    for k, a, b in zip(slow.tolist(), self.starts[slow].tolist(),
                       self.ends[slow].tolist()):
      text = self.padded[a:b]
      if text.isdigit():
        self.big_ints[k] = int(text)
        values[k], is_int[k] = float(text), True
        continue
      values[k], is_int[k] = np.nan, False
      reason = self._check_number(k, text)
      if reason is None:
        values[k] = float(text)
      else:
        self.errors.append((a, reason))
    self.errors.sort()
    self.values = values
    self.is_int = is_int

  def text(self, k: int) -> bytes:
    return self.padded[self.starts[k]:self.ends[k]]

  def shown(self, k: int) -> str:
    """Token k for a message: its text, escaped where not printable ASCII,
    cut at 40 characters."""
    text = self.text(k)
    shown = text[:40].decode('ascii', 'backslashreplace')
    shown = ''.join(c if ' ' < c <= '~' else repr(c)[1:-1] for c in shown)
    return shown + ('...' if len(text) > 40 else '')

  def line_of(self, k: int) -> int:
    """1-based line of token k (k == count: the line after the last token)."""
    return self.line_at_byte(self.starts[k] if k < self.count
                             else self.ends[-1])

  def fail(self, k: int, reason: str):
    """Raises `reason` at token k, or the first undecodable token up to its
    line (junk in a line explains what is wrong with that line)."""
    self.fail_line(self.line_of(min(k, self.count)), reason)

  def fail_line(self, line: int, reason: str):
    raise (self.first_error(line=line)
           or SkeletonFormatError(self.path, line, reason))

  def line_at_byte(self, pos: int) -> int:
    return int(np.searchsorted(self.newlines, pos)) + 1

  def _check_number(self, k: int, text: bytes) -> str | None:
    """None if token k (`text`) is a finite number, else what is wrong."""
    if _NUMBER_RE.fullmatch(text):
      if np.isfinite(float(text)):
        return None
      return f"non-finite value '{self.shown(k)}'"
    if text.lstrip(b'+-').lower() in _NON_FINITE:
      return f"non-finite value '{self.shown(k)}'"
    junk = [b for b in text if b >= 0x80]
    if junk:
      return (f'binary data (byte 0x{junk[0]:02x}) in token '
              f"'{self.shown(k)}'")
    return f"non-numeric token '{self.shown(k)}'"

  def first_error(self, line: int | None = None,
                  before_byte: int | None = None) -> SkeletonFormatError | None:
    """The error for the first undecodable token, if it is on or before
    `line` and before byte `before_byte` of the padded text."""
    if not self.errors:
      return None
    pos, reason = self.errors[0]
    error = SkeletonFormatError(self.path, self.line_at_byte(pos), reason)
    if line is not None and error.line > line:
      return None
    if before_byte is not None and pos >= before_byte:
      return None
    return error

  def count_at(self, k: int, what: str, limit: int) -> int:
    """The non-negative integer token k, checked to be <= limit."""
    if k >= self.count:
      self.fail(k, f'file ends where the {what} should be')
    if not self.is_int[k]:
      self.fail(k, f'expected a non-negative integer {what}, got '
                f'{self.shown(k)}')
    value = self.values[k]
    if value > limit:
      self.fail(k, f'absurd {what} {self.shown(k)} (at most {limit})')
    return int(value)


# ---- The reader --------------------------------------------------------------


def _check_lines(tokens: _Tokens, frame_heads, body_heads, upto=None):
  """Checks that each line starting before token `upto` (default: all) holds
  exactly the tokens the format puts there."""
  upto = tokens.count if upto is None else upto
  expected = np.concatenate([
      [0], frame_heads,
      (np.asarray(body_heads, np.int64)[:, None] + _BODY_LINE_OFFSETS).ravel()])
  expected.sort()
  # Token starting each line after the first; trailing blank lines are fine.
  after_newline = np.searchsorted(tokens.starts, tokens.newlines)
  after_newline = after_newline[after_newline < tokens.count]
  if len(after_newline) and after_newline[0] == 0:
    tokens.fail_line(1, 'blank line')
  blank = np.flatnonzero(np.diff(after_newline) == 0)
  if len(blank) and after_newline[blank[0]] < upto:
    tokens.fail_line(int(blank[0]) + 2, 'blank line')
  actual = np.concatenate([[0], after_newline])
  actual = actual[actual < upto]
  expected = expected[expected < upto]
  if len(actual) == len(expected) and np.array_equal(actual, expected):
    return
  size = min(len(actual), len(expected))
  diff = np.flatnonzero(actual[:size] != expected[:size])
  # Line j (1-based) spans tokens actual[j-1]..actual[j]-1.
  j = int(diff[0]) if len(diff) else size
  ends_actual = np.append(actual, upto)
  ends_expected = np.append(expected, upto)
  got = int(ends_actual[j] - ends_actual[j - 1])
  want = int(ends_expected[j] - ends_expected[j - 1])
  kind = _LINE_KINDS.get(want, 'line')
  tokens.fail_line(j, f'{kind}: expected {want} values, got {got}')


def _read_bytes(path: str) -> bytes:
  try:
    with open(path, 'rb') as f:
      return f.read()
  except OSError as e:
    raise SkeletonFormatError(path, None, f'cannot read: {e}') from e


def read_skeleton(path: str | os.PathLike[str]) -> Skeleton:
  """Parses one NTU RGB+D `.skeleton` file.

  Args:
    path: the file.

  Returns:
    `Skeleton` with `num_frames` frames; a frame may hold 0 bodies, and so may
    every frame (e.g. S001C002P006R001A008).

  Raises:
    SkeletonFormatError: the file is unreadable, empty, binary, truncated,
      has a non-numeric or non-finite value, a negative or absurd count
      (frames > 100000, bodies > 6, joints != 25), a line with the wrong
      number of values, or data after the last frame.
  """
  path = os.fspath(path)
  data = _read_bytes(path)
  if not data:
    raise SkeletonFormatError(path, 1, 'empty file')
  return _parse(path, data)


def _parse(path: str, data: bytes) -> Skeleton:
  tokens = _Tokens(path, data)
  skeleton = _walk(tokens)
  error = tokens.first_error()
  if error is not None:
    raise error
  return skeleton


def _walk(tokens: _Tokens) -> Skeleton:
  path = tokens.path
  if tokens.count == 0:
    raise SkeletonFormatError(path, 1, 'no frame count (file is blank)')
  num_frames = tokens.count_at(0, 'frame count', MAX_FRAMES)
  # Walk the headers: where each frame's body count and each body start.
  values, is_int = tokens.values, tokens.is_int
  value_at, is_int_at = values.item, is_int.item  # Python scalars: faster
  frame_heads = []
  body_heads = []
  bodies_per_frame = []
  k = 1
  for t in range(num_frames):
    if k >= tokens.count:
      _check_lines(tokens, frame_heads, body_heads)
      tokens.fail(k, f'file ends after frame {t} of {num_frames}')
    num_bodies = value_at(k)
    if not is_int_at(k) or num_bodies > MAX_BODIES:
      _check_lines(tokens, frame_heads, body_heads, upto=k)
      tokens.count_at(k, f'body count of frame {t + 1}', MAX_BODIES)
    num_bodies = int(num_bodies)
    frame_heads.append(k)
    bodies_per_frame.append(num_bodies)
    body_heads.extend(range(k + 1, k + 1 + num_bodies * _BODY_TOKENS,
                            _BODY_TOKENS))
    k += 1 + num_bodies * _BODY_TOKENS
    if k > tokens.count:
      _check_lines(tokens, frame_heads, body_heads, upto=tokens.count)
      tokens.fail(tokens.count,
                  f'file ends inside frame {t + 1} of {num_frames} '
                  f'({num_bodies} bodies announced)')
  heads = np.asarray(body_heads, np.int64)
  joint_counts = heads + 1 + BODY_INFO_VALUES
  bad = np.flatnonzero(~is_int[joint_counts]
                       | (values[joint_counts] != NUM_JOINTS))
  if len(bad):
    at = int(joint_counts[bad[0]])
    _check_lines(tokens, frame_heads, body_heads, upto=at)
    tokens.fail(at, f'expected {NUM_JOINTS} joints, got {tokens.shown(at)}')
  _check_lines(tokens, frame_heads, body_heads, upto=k)
  if k < tokens.count:
    raise (tokens.first_error(before_byte=int(tokens.starts[k]))
           or SkeletonFormatError(
               path, tokens.line_of(k),
               f"unexpected data after the last frame: '{tokens.shown(k)}'"))
  return _assemble(tokens, num_frames, bodies_per_frame, heads)


def _assemble(tokens: _Tokens, num_frames: int, bodies_per_frame, heads):
  values = tokens.values
  num_rows = len(heads)
  # Body IDs: short ones are exact in `values`, long ones in `big_ints`.
  bad = np.flatnonzero(~tokens.is_int[heads])
  if len(bad):
    at = int(heads[bad[0]])
    tokens.fail(at, f'expected an integer body ID, got {tokens.shown(at)}')
  body_ids = np.minimum(values[heads], 2.0**62).astype(np.int64)
  big = tokens.big_ints
  for r, h in enumerate(heads.tolist()):
    body_id = big.get(h)
    if body_id is not None:
      if body_id >= 2**63:
        tokens.fail(h, f'body ID {body_id} does not fit in int64')
      body_ids[r] = body_id
  # Each body's values are consecutive tokens: copy them as rows.
  if num_rows:
    body = np.lib.stride_tricks.sliding_window_view(
        values, _BODY_TOKENS)[heads]  # (R, 311)
  else:
    body = np.zeros((0, _BODY_TOKENS))
  info = body[:, 1:1 + BODY_INFO_VALUES]
  first_joint = heads + 2 + BODY_INFO_VALUES
  joints = body[:, 2 + BODY_INFO_VALUES:].reshape(num_rows, NUM_JOINTS,
                                                  JOINT_VALUES)
  state = joints[:, :, JOINT_VALUES - 1]
  bad = np.flatnonzero(((state != 0) & (state != 1) & (state != 2)).ravel())
  if len(bad):
    r, j = divmod(int(bad[0]), NUM_JOINTS)
    at = int(first_joint[r]) + JOINT_VALUES * j + JOINT_VALUES - 1
    tokens.fail(at, f'joint tracking state must be 0, 1 or 2, got '
                f'{tokens.shown(at)}')
  counts = np.asarray(bodies_per_frame, np.int64)
  rows = BodyRows(
      frame_index=np.repeat(np.arange(num_frames), counts),
      body_ids=body_ids,
      body_info=info.astype(np.float32),
      joints=joints[:, :, :JOINT_VALUES - 1].astype(np.float32),
      tracking_state=state.astype(np.int8))
  bounds = np.concatenate([[0], np.cumsum(counts)]).tolist()
  return Skeleton(path=tokens.path, num_frames=num_frames,
                  frames=FrameSequence(rows, bounds), _rows=rows)


# ---- Coordinates only --------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class SkeletonXyz:
  """The part of a file that body selection needs: each body row's frame,
  tracking ID and joint positions (the rows of `Skeleton.rows`, without the
  other eight joint values and the body line).

  Attributes:
    path: the file it was read from.
    num_frames: frames in the file (also those with no body).
    frame_index: int64 (R,) the frame of each row.
    body_ids: int64 (R,) Kinect tracking IDs.
    xyz: float32 (R, 25, 3) camera coordinates in metres.
  """
  path: str
  num_frames: int
  frame_index: np.ndarray
  body_ids: np.ndarray
  xyz: np.ndarray

  @classmethod
  def from_skeleton(cls, skeleton: Skeleton) -> SkeletonXyz:
    rows = skeleton.rows
    return cls(path=skeleton.path, num_frames=skeleton.num_frames,
               frame_index=rows.frame_index, body_ids=rows.body_ids,
               xyz=np.ascontiguousarray(rows.xyz))


def read_xyz(path: str | os.PathLike[str]) -> SkeletonXyz:
  """`read_skeleton(path)` reduced to `SkeletonXyz`, for ~40% less CPU time.

  Building a dataset needs only 3 of the 12 values of each joint line, and
  decoding numbers is most of `read_skeleton`'s time. This reader checks the
  whole file as strictly as `read_skeleton` (every token a finite number,
  counts, the values on every line, tracking states, body IDs) but decodes
  only the counts, the body IDs and x, y, z. When any check fails, or the
  file takes a form the quick checks do not cover (e.g. `025` as the joint
  count), the file is read by `read_skeleton`, so a malformed file raises the
  same `SkeletonFormatError` (file, line, reason) and a well-formed one gives
  the same numbers bit for bit.

  Raises:
    SkeletonFormatError: as `read_skeleton`.
  """
  path = os.fspath(path)
  data = _read_bytes(path)
  xyz = _quick_xyz(path, data) if data else None
  if xyz is None:
    if not data:
      raise SkeletonFormatError(path, 1, 'empty file')
    xyz = SkeletonXyz.from_skeleton(_parse(path, data))
  return xyz


_DIGITS = b'0123456789'
# Bytes of a file without exponents, once digits are removed.
_PLAIN_NON_DIGITS = b'.- \t\r\n'
_EXPONENT_BYTES = b'eE+'
# Longer tokens leave the quick path (plain digit strings are finite up to
# 308 characters; NTU's longest tokens are 17-digit body IDs).
_QUICK_MAX_TOKEN = 64
# Token offsets of a body's lines from its body line; joint j's x, y, z and
# tracking state.
_FIRST_JOINT = 2 + BODY_INFO_VALUES
_XYZ_OFFSETS = (_FIRST_JOINT + JOINT_VALUES * np.arange(NUM_JOINTS)[:, None]
                + np.arange(3)).ravel()
_STATE_OFFSETS = (_FIRST_JOINT + JOINT_VALUES * np.arange(NUM_JOINTS)
                  + JOINT_VALUES - 1)


def _quick_xyz(path: str, data: bytes) -> SkeletonXyz | None:
  """`SkeletonXyz` of a well-formed file, or None where `_parse` must judge.

  Every token is checked to be a number without decoding it: once the bytes
  are known to be digits, '.', '-', whitespace (and e, E, + inside tokens
  that are checked one by one), a token is `-?(digits[.digits]|.digits)`
  exactly when no '-' follows another byte of its token, no two dots share a
  token (with digits removed, no '..' remains) and it does not end in a
  non-digit after a non-digit ('.', '-', '-.').
  """
  no_digits = data.translate(None, _DIGITS)
  rare = no_digits.translate(None, _PLAIN_NON_DIGITS)
  if rare and rare.translate(None, _EXPONENT_BYTES):
    return None  # other bytes: junk, binary data, 'nan', ...
  marks = np.frombuffer(no_digits, np.uint8)
  if np.any((marks[1:] == ord('.')) & (marks[:-1] == ord('.'))):
    return None
  padded = b' ' * _PAD + data + b' ' * _PAD
  buf = np.frombuffer(padded, np.uint8)
  space = _scratch_array('space', len(buf), bool)
  flags = _scratch_array('flags', len(buf) - 1, bool)
  np.less_equal(buf, 32, out=space)
  np.not_equal(space[1:], space[:-1], out=flags)
  edges = np.flatnonzero(flags)
  edges += 1
  starts, ends = edges[0::2], edges[1::2]
  count = len(starts)
  if count == 0:
    return None
  lengths = ends - starts
  if lengths.max() > _QUICK_MAX_TOKEN:
    return None
  first = buf.take(starts)
  last = buf.take(ends - 1)
  # Tokens with exponents (rare: a few small orientation values) are checked
  # one by one; their inner '-' are allowed.
  special = {}
  inner_minus = 0
  if rare:
    at = []
    for byte in set(rare):
      i = padded.find(byte)
      while i >= 0:
        at.append(i)
        i = padded.find(byte, i + 1)
    for k in np.unique(np.searchsorted(starts, at, 'right') - 1).tolist():
      text = padded[starts[k]:ends[k]]
      if not _NUMBER_RE.fullmatch(text):
        return None
      value = float(text)
      if not np.isfinite(value):
        return None
      special[k] = value
      inner_minus += text.count(b'-', 1)
  if (np.count_nonzero(marks == ord('-'))
      != np.count_nonzero(first == ord('-')) + inner_minus):
    return None  # a '-' inside a token
  ends_odd = np.flatnonzero(last < ord('0'))
  if len(ends_odd):
    before = buf.take(ends.take(ends_odd) - 2) - np.uint8(ord('0'))
    if np.any(before > 9):
      return None  # '.', '-', '-.' or a token ending in '+'
  # The frame and body headers (a body count is one digit, 0-6).
  text = padded[starts.item(0):ends.item(0)]
  if not text.isdigit() or len(text) > 6 or int(text) > MAX_FRAMES:
    return None
  num_frames = int(text)
  length_at, first_at = lengths.item, first.item
  frame_heads = []
  body_heads = []
  bodies_per_frame = []
  k = 1
  for _ in range(num_frames):
    if k >= count:
      return None
    num_bodies = first_at(k) - ord('0')
    if length_at(k) != 1 or not 0 <= num_bodies <= MAX_BODIES:
      return None
    frame_heads.append(k)
    bodies_per_frame.append(num_bodies)
    body_heads.extend(range(k + 1, k + 1 + num_bodies * _BODY_TOKENS,
                            _BODY_TOKENS))
    k += 1 + num_bodies * _BODY_TOKENS
  if k != count:
    return None
  heads = np.asarray(body_heads, np.int64)
  # Lines: the token starting each line must be the one the format puts
  # there. A token starts a line when a newline is right before it; each
  # newline before the last token must be such a newline (so no line is
  # blank or starts with spaces; trailing blank lines are fine).
  line_starts = buf.take(starts - 1) == ord('\n')
  if (line_starts[0] or np.count_nonzero(line_starts)
      != np.count_nonzero(buf[:ends[-1]] == ord('\n'))):
    return None
  actual = np.flatnonzero(line_starts)
  expected = np.concatenate([
      frame_heads, (heads[:, None] + _BODY_LINE_OFFSETS).ravel()])
  expected.sort()
  if len(actual) != len(expected) or not np.array_equal(actual, expected):
    return None
  # Joint counts are '25'; tracking states one of '0', '1', '2'.
  joint_counts = heads + 1 + BODY_INFO_VALUES
  if not (np.all(lengths.take(joint_counts) == 2)
          and np.all(first.take(joint_counts) == ord('2'))
          and np.all(last.take(joint_counts) == ord('5'))):
    return None
  states = (heads[:, None] + _STATE_OFFSETS).ravel()
  if not (np.all(lengths.take(states) == 1)
          and np.all(first.take(states) - np.uint8(ord('0')) <= 2)):
    return None
  # Body IDs: plain digits that fit in int64.
  id_texts = [padded[a:b] for a, b in zip(starts[heads].tolist(),
                                          ends[heads].tolist())]
  if id_texts and not b''.join(id_texts).isdigit():
    return None
  body_ids = [int(text) for text in id_texts]
  if body_ids and max(body_ids) >= 2**63:
    return None
  # x, y, z.
  xyz_tokens = (heads[:, None] + _XYZ_OFFSETS).ravel()
  values = np.empty((len(xyz_tokens),), np.float64)
  words = _aligned_words(buf)
  for i in range(0, len(xyz_tokens), _CHUNK):
    chunk = xyz_tokens[i:i + _CHUNK]
    values[i:i + _CHUNK], short = _decode_numbers(
        words, buf, starts.take(chunk), ends.take(chunk))
    for j in np.flatnonzero(~short).tolist():
      k = int(chunk[j])
      value = special.get(k)
      values[i + j] = (float(padded[starts[k]:ends[k]]) if value is None
                       else value)
  for k, value in special.items():  # exponents: `_decode_numbers` cannot
    body = int(np.searchsorted(heads, k, 'right')) - 1
    offset = k - int(heads[body]) - _FIRST_JOINT if body >= 0 else -1
    if 0 <= offset < NUM_JOINTS * JOINT_VALUES and offset % JOINT_VALUES < 3:
      values[body * NUM_JOINTS * 3 + offset // JOINT_VALUES * 3
             + offset % JOINT_VALUES] = value
  counts = np.asarray(bodies_per_frame, np.int64)
  return SkeletonXyz(
      path=path, num_frames=num_frames,
      frame_index=np.repeat(np.arange(num_frames), counts),
      body_ids=np.asarray(body_ids, np.int64).reshape(-1),
      xyz=values.astype(np.float32).reshape(len(heads), NUM_JOINTS, 3))
