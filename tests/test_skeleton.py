"""Tests for the `.skeleton` reader on the real NTU files and a corpus of broken
files made from one of them."""

import pickle
import re

import numpy as np
import pytest

from stbln_jax.data import read_skeleton
from stbln_jax.data import ntu
from stbln_jax.data import SkeletonFormatError
from stbln_jax.data import skeleton as skeleton_lib

REAL = {
    # name: (frames, bodies in frame 1)
    'S001C001P001R001A011': (82, 1),
    'S001C003P008R002A058': (70, 2),
    'S002C001P003R001A003': (100, 1),
    'S003C001P015R001A034': (71, 1),
    'S004C002P003R001A017': (124, 1),
    'S001C002P006R001A008': (71, 0),
}


def _reference_parse(data: bytes):
  """A slow line-by-line reading of a well-formed file, to compare with."""
  lines = data.decode('ascii').split('\n')  # CR is whitespace, as a space
  it = iter(lines)
  frames = []
  for _ in range(int(next(it))):
    bodies = []
    for _ in range(int(next(it))):
      head = next(it).split()
      assert int(next(it)) == 25
      joints = [[float(v) for v in next(it).split()] for _ in range(25)]
      bodies.append((int(head[0]), [float(v) for v in head[1:]], joints))
    frames.append(bodies)
  assert not any(line.strip() for line in it)
  return frames


def _file_of(values, body_id=7):
  """A well-formed file with one body per frame whose 25 x 11 joint values
  are `values` (bytes tokens, 275 per frame; the tracking states are 2)."""
  frames = [values[i:i + 275] for i in range(0, len(values), 275)]
  text = [str(len(frames)).encode()]
  for frame in frames:
    frame = list(frame) + [b'0'] * (275 - len(frame))
    text += [b'1', f'{body_id} 0 1 1 1 1 0 0.5 -0.25 2'.encode(), b'25']
    text += [b' '.join(frame[j * 11:(j + 1) * 11]) + b' 2' for j in range(25)]
  return b'\n'.join(text) + b'\n'


def _rows_of_frame(skeleton, t):
  return np.flatnonzero(skeleton.frame_index == t)


def track(skeleton, body_id):
  """One body over the file: present bool (T,), xyz (T, 25, 3) (zeros
  where absent)."""
  mine = skeleton.body_ids == body_id
  present = np.zeros((skeleton.num_frames,), bool)
  present[skeleton.frame_index[mine]] = True
  xyz = np.zeros((skeleton.num_frames, 25, 3), skeleton.xyz.dtype)
  xyz[skeleton.frame_index[mine]] = skeleton.xyz[mine]
  return present, xyz


@pytest.mark.parametrize('name', sorted(REAL))
def test_real_files_parse_like_a_line_by_line_reader(ntu_samples_dir, name):
  path = ntu_samples_dir / f'{name}.skeleton'
  skeleton = read_skeleton(path)
  num_frames, first_bodies = REAL[name]
  assert skeleton.num_frames == num_frames
  assert len(_rows_of_frame(skeleton, 0)) == first_bodies
  assert skeleton.path == str(path)
  reference = _reference_parse(path.read_bytes())
  assert len(reference) == num_frames
  for t, bodies in enumerate(reference):
    rows = _rows_of_frame(skeleton, t)
    assert len(rows) == len(bodies)
    for r, (body_id, info, joints) in zip(rows, bodies):
      assert skeleton.body_ids[r] == body_id
      np.testing.assert_array_equal(skeleton.body_info[r],
                                    np.asarray(info, np.float32))
      np.testing.assert_array_equal(skeleton.joints[r],
                                    np.asarray(joints, np.float32))
      np.testing.assert_array_equal(skeleton.xyz[r],
                                    np.asarray(joints, np.float32)[:, 0:3])
  assert skeleton.body_ids.dtype == np.int64
  assert skeleton.xyz.dtype == np.float32 and skeleton.xyz.shape[1:] == (25, 3)
  assert skeleton.joints.shape[1:] == (25, 12)
  assert set(np.unique(skeleton.joints[..., 11])) <= {0, 1, 2}
  # float64 keeps what `float` reads.
  wide = read_skeleton(path, np.float64)
  assert wide.joints.dtype == np.float64
  np.testing.assert_array_equal(wide.joints.astype(np.float32),
                                skeleton.joints)


def test_two_bodies_keep_distinct_int64_ids(ntu_samples_dir):
  skeleton = read_skeleton(ntu_samples_dir / 'S001C003P008R002A058.skeleton')
  assert tuple(dict.fromkeys(skeleton.body_ids.tolist())) == (
      72057594037944738, 72057594037944734)
  # Both IDs are the same float64, so they must not go through floats.
  assert float(72057594037944738) == float(72057594037944734)
  present, xyz = track(skeleton, 72057594037944734)
  assert present.all() and xyz.shape == (70, 25, 3)
  np.testing.assert_array_equal(xyz[5], skeleton.xyz[_rows_of_frame(
      skeleton, 5)[1]])


def test_empty_file_has_frames_without_bodies(ntu_samples_dir):
  skeleton = read_skeleton(ntu_samples_dir / 'S001C002P006R001A008.skeleton')
  assert skeleton.num_frames == 71
  assert skeleton.xyz.shape == (0, 25, 3) and skeleton.joints.shape == (
      0, 25, 12)
  assert len(skeleton.body_ids) == 0
  present, xyz = track(skeleton, 1)
  assert not present.any() and xyz.shape == (71, 25, 3)


def test_scientific_notation(ntu_samples_dir):
  path = ntu_samples_dir / 'S003C001P015R001A034.skeleton'
  text = path.read_text()
  assert '6.026204E-05' in text
  skeleton = read_skeleton(path)
  values = skeleton.joints[..., 7:11].ravel()
  assert np.any(np.isclose(values, 6.026204e-05, rtol=1e-6, atol=0))


def test_lf_and_crlf_read_the_same(ntu_samples_dir, tmp_path):
  path = ntu_samples_dir / 'S001C001P001R001A011.skeleton'
  data = path.read_bytes()
  assert b'\r\n' in data
  lf = tmp_path / 'lf.skeleton'
  lf.write_bytes(data.replace(b'\r\n', b'\n'))
  a, b = read_skeleton(path), read_skeleton(lf)
  np.testing.assert_array_equal(a.joints, b.joints)
  np.testing.assert_array_equal(a.body_ids, b.body_ids)


def test_integer_tokens_and_odd_spacing(tmp_path):
  body = '7 0 1 1 1 1 0 0 0 2\n25\n' + '1 -2 3 4 5 6 7 1 0 0 0 2\n' * 25
  path = tmp_path / 'ints.skeleton'
  path.write_text('2\n1\n' + body + '0\n')
  skeleton = read_skeleton(path)
  np.testing.assert_array_equal(skeleton.frame_index, [0])
  assert skeleton.num_frames == 2
  np.testing.assert_array_equal(skeleton.xyz[0, 3], [1, -2, 3])
  # Extra spaces, tabs and a missing final newline are still the same lines.
  path.write_text(('2 \n\t1\n' + body + '0').replace(' 2\n', '  2 \n'))
  again = read_skeleton(path)
  np.testing.assert_array_equal(again.joints, skeleton.joints)


def test_numbers_decode_exactly_like_float():
  tokens = [b'0', b'-0', b'7', b'-7.5', b'0.7201789', b'-0.008176846',
            b'1184.537', b'123456789012345', b'.5', b'5.', b'-.25',
            b'6.026204E-05', b'-7.257856e-05', b'1e3', b'+2.5',
            b'72057594037944738', b'000123.4500', b'999999999999999.9']
  rng = np.random.default_rng(0)
  values = rng.standard_normal(5000) * 10.0 ** rng.integers(-6, 5, 5000)
  tokens += [f'{v:.{p}g}'.encode() for v, p in zip(
      values, rng.integers(1, 9, 5000))]
  values = rng.standard_normal(4000) * 10.0 ** rng.integers(-3, 6, 4000)
  tokens += [f'{v:.{p}f}'.encode() for v, p in zip(
      values, rng.integers(0, 7, 4000))]
  tokens += [b'-.5', b'-5.', b'1234567.8901234', b'-.00000000000001']
  data = _file_of(tokens)
  want = np.zeros((-(-len(tokens) // 275) * 275,))
  want[:len(tokens)] = [float(t) for t in tokens]
  want = want.reshape(-1, 25, 11)
  full = skeleton_lib.parse_skeleton(data, 'x', np.float64)
  assert full.joints[..., :11].tobytes() == want.tobytes()
  quick = skeleton_lib.parse_skeleton(data, 'x', np.float64, xyz_only=True)
  assert quick.xyz.tobytes() == np.ascontiguousarray(want[..., :3]).tobytes()
  for junk in (b'1.2.3', b'1..2', b'.', b'-', b'--1', b'1-2', b'-.', b'1e',
               b'0x10', b'1_000', b'12345678901234.5.6'):
    for xyz_only in (False, True):
      with pytest.raises(SkeletonFormatError) as info:
        skeleton_lib.parse_skeleton(_file_of([b'1', junk, b'2']), 'x',
                                    xyz_only=xyz_only)
      assert info.value.reason == f'non-numeric token {junk.decode()!r}'
      assert info.value.line == 5  # the first joint line


# ---- Malformed files ---------------------------------------------------------

def _lines(ntu_samples_dir):
  data = (ntu_samples_dir / 'S001C001P001R001A011.skeleton').read_bytes()
  return data.split(b'\r\n')


def _join(lines):
  return b'\r\n'.join(lines)


def _replace_token(line: bytes, index: int, token: bytes) -> bytes:
  parts = line.split(b' ')
  parts[index] = token
  return b' '.join(parts)


# Line numbers (1-based) in S001C001P001R001A011: 1 frame count, 2 body count,
# 3 body line, 4 joint count, 5-29 joints of frame 1, 30 body count of frame 2.
def _corruptions(lines):
  cut = _join(lines)
  yield 'truncated mid-line', cut[:len(cut) // 2], None, 'ends'
  yield ('truncated at a line end', _join(lines[:1000]), None, 'ends')
  yield 'wrong joint count', _join(
      lines[:3] + [b'24'] + lines[4:]), 4, 'expected 25 joints, got 24'
  yield 'missing joint line', _join(lines[:10] + lines[11:]), None, ''
  yield 'non-numeric token', _join(
      lines[:7] + [_replace_token(lines[7], 2, b'abc')] + lines[8:]), 8, \
      'non-numeric'
  yield 'comma decimal', _join(
      lines[:7] + [_replace_token(lines[7], 0, b'0,72')] + lines[8:]), 8, \
      'non-numeric'
  yield 'negative body count', _join(lines[:1] + [b'-1'] + lines[2:]), 2, \
      'non-negative'
  yield 'negative frame count', _join([b'-82'] + lines[1:]), 1, \
      'non-negative'
  yield 'absurd frame count', _join([b'100000000'] + lines[1:]), 1, 'absurd'
  yield 'absurd body count', _join(lines[:1] + [b'99'] + lines[2:]), 2, \
      'absurd'
  yield 'fractional count', _join(lines[:1] + [b'1.5'] + lines[2:]), 2, \
      'integer'
  yield 'frame count too small', _join([b'81'] + lines[1:]), None, \
      'after the last frame'
  yield 'frame count too big', _join([b'83'] + lines[1:]), None, 'ends'
  yield 'trailing garbage', cut + b'garbage\r\n', None, 'after the last frame'
  yield 'empty file', b'', 1, 'empty'
  yield 'blank file', b'\r\n \r\n', 1, 'blank'
  yield 'binary junk', b'\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR' + cut[:500], 1, \
      'binary'
  yield 'undecodable byte', _join(
      lines[:7] + [_replace_token(lines[7], 1, b'0.4\xff')] + lines[8:]), 8, \
      'binary'
  yield 'nul byte', _join(
      lines[:7] + [_replace_token(lines[7], 1, b'0.4\x002')] + lines[8:]), 8, \
      'binary'
  yield 'short joint line', _join(
      lines[:7] + [lines[7].rsplit(b' ', 1)[0]] + lines[8:]), 8, \
      'joint line: expected 12 values, got 11'
  yield 'long joint line', _join(
      lines[:7] + [lines[7] + b' 1'] + lines[8:]), 8, \
      'joint line: expected 12 values, got 13'
  yield 'short body line', _join(
      lines[:2] + [lines[2].rsplit(b' ', 1)[0]] + lines[3:]), 3, \
      'body line: expected 10 values, got 9'
  yield 'joined lines', _join(
      lines[:7] + [lines[7] + b' ' + lines[8]] + lines[9:]), 8, \
      'expected 12 values, got 24'
  yield 'blank line inside', _join(lines[:7] + [b''] + lines[7:]), 8, 'blank'
  yield 'nan coordinate', _join(
      lines[:7] + [_replace_token(lines[7], 0, b'nan')] + lines[8:]), 8, \
      'non-finite'
  yield 'inf coordinate', _join(
      lines[:7] + [_replace_token(lines[7], 2, b'-inf')] + lines[8:]), 8, \
      'non-finite'
  yield 'overflowing coordinate', _join(
      lines[:7] + [_replace_token(lines[7], 2, b'1e999')] + lines[8:]), 8, \
      'non-finite'
  yield 'bad tracking state', _join(
      lines[:7] + [_replace_token(lines[7], 11, b'7')] + lines[8:]), 8, \
      'tracking state'
  yield 'non-integer body id', _join(
      lines[:2] + [_replace_token(lines[2], 0, b'1.5')] + lines[3:]), 3, \
      'body ID'


def _corpus(ntu_samples_dir):
  return list(_corruptions(_lines(ntu_samples_dir)))


def test_corpus_is_large(ntu_samples_dir):
  assert len(_corpus(ntu_samples_dir)) >= 25


@pytest.mark.parametrize('case', range(29))
def test_malformed_file_raises_with_file_and_line(ntu_samples_dir, tmp_path,
                                                  case):
  name, data, line, reason = _corpus(ntu_samples_dir)[case]
  path = tmp_path / 'broken.skeleton'
  path.write_bytes(data)
  with pytest.raises(SkeletonFormatError) as info:
    read_skeleton(path)
  error = info.value
  assert error.path == str(path), name
  assert isinstance(error.line, int) and error.line >= 1, name
  if line is not None:
    assert error.line == line, (name, str(error))
  assert reason in error.reason, (name, str(error))
  assert re.match(re.escape(str(path)) + r':\d+: ', str(error)), name
  # The error survives a trip between processes with its attributes.
  copy = pickle.loads(pickle.dumps(error))
  assert (copy.path, copy.line, copy.reason) == (error.path, error.line,
                                                 error.reason)


def test_every_corruption_of_a_small_file_is_caught(tmp_path):
  """Deleting or doubling any one line, or cutting the file anywhere, of a
  small well-formed file is always reported as a SkeletonFormatError."""
  body = '7 0 1 1 1 1 0 0.5 -0.25 2\n25\n' + ''.join(
      f'{j}.5 -{j}.25 3.0 100 200 300 400 1 0 0 0 2\n' for j in range(25))
  lines = ('3\n1\n' + body + '0\n2\n' + body + body).split('\n')[:-1]
  path = tmp_path / 'small.skeleton'
  for i in range(len(lines)):
    for broken in (lines[:i] + lines[i + 1:],
                   lines[:i] + [lines[i]] + lines[i:]):
      path.write_text('\n'.join(broken) + '\n')
      with pytest.raises(SkeletonFormatError):
        read_skeleton(path)
  text = '\n'.join(lines)
  for cut in range(1, len(text) - 1, 7):
    if text[cut - 1] in ' \n' or text[cut] in ' \n':
      continue  # a cut between tokens can still leave a whole token stream
    path.write_text(text[:cut])
    with pytest.raises(SkeletonFormatError):
      read_skeleton(path)


def test_missing_file_is_a_format_error(tmp_path):
  with pytest.raises(SkeletonFormatError, match='cannot read'):
    read_skeleton(tmp_path / 'nope.skeleton')


# ---- Coordinates only (xyz_only) ---------------------------------------------

def _assert_same_xyz(quick, skeleton):
  """`quick` (read xyz_only) holds exactly `skeleton`'s rows, bit for bit."""
  assert quick.path == skeleton.path
  assert quick.num_frames == skeleton.num_frames
  assert quick.joints is None and quick.body_info is None
  for got, want in ((quick.frame_index, skeleton.frame_index),
                    (quick.body_ids, skeleton.body_ids),
                    (quick.xyz, np.ascontiguousarray(skeleton.xyz))):
    assert got.dtype == want.dtype and got.shape == want.shape
    assert got.tobytes() == want.tobytes()


def _plain(data):
  buf = np.frombuffer(data, np.uint8)
  space = np.r_[True, buf <= 32, True]
  starts, ends = np.flatnonzero(space[1:] != space[:-1]).reshape(-1, 2).T
  return skeleton_lib._plain(data, buf, starts, ends)


@pytest.mark.parametrize('name', sorted(REAL))
def test_xyz_only_is_read_skeleton_bit_for_bit_on_real_files(
    ntu_samples_dir, name):
  path = ntu_samples_dir / f'{name}.skeleton'
  # Every real file is plain numbers: x, y, z are decoded alone.
  assert _plain(path.read_bytes())
  _assert_same_xyz(read_skeleton(path, xyz_only=True), read_skeleton(path))


def test_xyz_only_is_read_skeleton_bit_for_bit_on_synthetic_files(tmp_path):
  from stbln_jax.data import synthetic
  paths = synthetic.write_synthetic_dataset(
      tmp_path, num_classes=12, subjects=(1, 2), cameras=(1,),
      replications=(1,), frames=(90, 110), seed=3)
  assert any(len(set(read_skeleton(p).body_ids.tolist())) == 2 for p in paths)
  for path in paths:
    assert _plain(path.read_bytes()), path
    _assert_same_xyz(read_skeleton(path, xyz_only=True), read_skeleton(path))


def _small_file(x='0.5', tracking='2', body_id='7'):
  body = (f'{body_id} 0 1 1 1 1 0 0.5 -0.25 2\n25\n' + ''.join(
      f'{x if j == 3 else f"{j}.5"} -{j}.25 3.{j} 100 200 300 400 1 0 0 0 '
      f'{tracking}\n' for j in range(25)))
  return ('3\n1\n' + body + '0\n2\n' + body.replace(f'{body_id} ', '8 ', 1)
          + body).encode()


@pytest.mark.parametrize('x', ['6.026204E-05', '-7.3e+02', '12345678901234567',
                               '-.5', '5.', '007', '-0', '0.0000000000001'])
def test_xyz_only_decodes_every_number_form(tmp_path, x):
  path = tmp_path / 'forms.skeleton'
  path.write_bytes(_small_file(x=x))
  assert _plain(path.read_bytes())
  quick = read_skeleton(path, xyz_only=True)
  _assert_same_xyz(quick, read_skeleton(path))
  assert quick.xyz[0, 3, 0] == np.float32(float(x))


@pytest.mark.parametrize('case', range(29))
def test_xyz_only_rejects_the_corpus_like_read_skeleton(ntu_samples_dir,
                                                        tmp_path, case):
  name, data, _, _ = _corpus(ntu_samples_dir)[case]
  path = tmp_path / 'broken.skeleton'
  path.write_bytes(data)
  with pytest.raises(SkeletonFormatError) as full:
    read_skeleton(path)
  with pytest.raises(SkeletonFormatError) as quick:
    read_skeleton(path, xyz_only=True)
  assert (quick.value.path, quick.value.line, quick.value.reason) == (
      full.value.path, full.value.line, full.value.reason), name


def test_xyz_only_agrees_with_read_skeleton_on_mutated_files(tmp_path):
  """Any one byte of a small file replaced by a byte that numbers, counts or
  lines are made of: xyz_only accepts exactly the files `read_skeleton`
  accepts, with the same numbers, and fails with the same error otherwise;
  accepted files read like the line-by-line reader."""
  data = _small_file()
  assert _plain(data)
  path = tmp_path / 'mutated.skeleton'
  rng = np.random.default_rng(0)
  positions = rng.choice(len(data), 400, replace=False)
  replacements = b'0123456789.-+eE \t\n\rx'
  accepted = rejected = 0
  for pos in positions.tolist():
    for new in rng.choice(list(replacements), 3, replace=False).tolist():
      mutated = data[:pos] + bytes([new]) + data[pos + 1:]
      path.write_bytes(mutated)
      try:
        skeleton = read_skeleton(path)
      except SkeletonFormatError as e:
        rejected += 1
        assert isinstance(e.line, int) and e.line >= 1
        with pytest.raises(SkeletonFormatError) as info:
          read_skeleton(path, xyz_only=True)
        assert (info.value.line, info.value.reason) == (e.line, e.reason)
      else:
        accepted += 1
        _assert_same_xyz(read_skeleton(path, xyz_only=True), skeleton)
        bodies = [b for frame in _reference_parse(mutated) for b in frame]
        np.testing.assert_array_equal(
            skeleton.joints, np.asarray([j for _, _, j in bodies],
                                        np.float32).reshape(-1, 25, 12))
  assert accepted > 100 and rejected > 100


# ---- Sample names ------------------------------------------------------------

def test_parse_sample_name():
  sample = ntu.parse_sample_name('/a/b/S017C003P020R002A120.skeleton')
  assert (sample.setup, sample.camera, sample.subject, sample.replication,
          sample.action) == (17, 3, 20, 2, 120)
  assert sample.name == 'S017C003P020R002A120'
  assert ntu.parse_sample_name('S001C002P003R002A013').action == 13
  # The reader's module offers the same function.
  assert skeleton_lib.parse_sample_name is ntu.parse_sample_name


@pytest.mark.parametrize('bad', ['S001C002P003R002', 'S1C2P3R2A13',
                                 'S001C002P003R002A013x', 'x.skeleton',
                                 'S000C002P003R002A013'])
def test_parse_sample_name_rejects(bad):
  with pytest.raises(ValueError, match='S001C002P003R002A013|start at 1'):
    ntu.parse_sample_name(bad)
