"""Property-based tests of the raw-data readers.

The `.skeleton` reader (`read_skeleton`): any bytes either parse or raise
`SkeletonFormatError`, never another exception. A small valid file with one token
changed either raises `SkeletonFormatError` or, when the change is a coordinate
replaced by another number, parses to the same sequence with exactly that
coordinate changed: no mutation passes silently as a different valid sequence.

Annotations (`annotations.to_sample`) and OpenPose JSON (`openpose.parse_frame`):
any input either gives a valid sample (frames) or raises `AnnotationError`.
"""

import atexit
import json
import os
import shutil
import tempfile

from hypothesis import given, settings, strategies as st, HealthCheck
import numpy as np
import pytest

from stbln_jax.data import annotations
from stbln_jax.data import layouts
from stbln_jax.data import openpose
from stbln_jax.data import skeleton

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
_DIR = tempfile.mkdtemp(prefix='fuzz_skeleton_')
atexit.register(shutil.rmtree, _DIR, ignore_errors=True)


def read_bytes(data: bytes):
  path = os.path.join(_DIR, 'S001C001P001R001A001.skeleton')
  with open(path, 'wb') as f:
    f.write(data)
  return skeleton.read_skeleton(path)


def content(parsed):
  """(num_frames, frame of each body row, body IDs, xyz rows) of a parsed file."""
  rows = getattr(parsed, 'rows', parsed)  # flat rows, on the Skeleton or beside it
  return (parsed.num_frames, np.asarray(rows.frame_index), np.asarray(rows.body_ids),
          np.asarray(rows.xyz, np.float32))


# ---- Valid files, token by token -------------------------------------------------

# A token's role: what it is and, for coordinates, where it lands (row, joint, axis).
COUNT, BODY_ID, INFO, XYZ, OTHER = 'count', 'body_id', 'info', 'xyz', 'other'


@st.composite
def valid_files(draw):
  """A small valid file (1-3 frames of 0-2 bodies, one body at least): lines of
  (token, role, place) triples.

  Hypothesis draws the structure (frames, bodies per frame) and a seed; the values
  come from the seed (hundreds per body).
  """
  num_frames = draw(st.integers(1, 3))
  bodies = [draw(st.integers(0, 2)) for _ in range(num_frames)]
  # At least one body: '1 0' (a frame, nobody) less its first token is '0', a valid
  # file of no frames, which holds no skeleton either.
  bodies[draw(st.integers(0, num_frames - 1))] |= 1
  rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
  number = lambda: f'{rng.uniform(-5, 5):.6f}'
  state = lambda: str(rng.integers(0, 3))
  lines = [[(str(num_frames), COUNT, None)]]
  row = 0
  for num_bodies in bodies:
    lines.append([(str(num_bodies), COUNT, None)])
    for _ in range(num_bodies):
      body_id = str(rng.integers(7 * 10**16, 8 * 10**16))
      info = ['0', f'{rng.uniform():.6f}', state(), f'{rng.uniform():.6f}', state(), '0',
              number(), number(), '2']
      lines.append([(body_id, BODY_ID, None)] + [(v, INFO, None) for v in info])
      lines.append([('25', COUNT, None)])
      for joint in range(25):
        xyz = [(number(), XYZ, (row, joint, axis)) for axis in range(3)]
        rest = [(number(), OTHER, None) for _ in range(8)] + [(state(), OTHER, None)]
        lines.append(xyz + rest)
      row += 1
  return lines


def render(lines, newline='\r\n') -> bytes:
  return (newline.join(' '.join(t for t, _, _ in line) for line in lines)
          + newline).encode()


def tokens_of(lines):
  return [(i, j) for i, line in enumerate(lines) for j in range(len(line))]


def replaced(lines, at, token):
  i, j = at
  lines = [list(line) for line in lines]
  lines[i][j] = (token, *lines[i][j][1:])
  return lines


def is_finite_number(text: str) -> bool:
  try:
    return bool(np.isfinite(float(text)))
  except ValueError:
    return False


# Printable ASCII without whitespace; what `float` cannot read as a finite number.
JUNK = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1,
               max_size=8).filter(lambda t: not is_finite_number(t))


@SETTINGS
@given(lines=valid_files(), newline=st.sampled_from(['\n', '\r\n']))
def test_valid_files_parse_to_what_was_written(lines, newline):
  num_frames, frame_index, body_ids, xyz = content(read_bytes(render(lines, newline)))
  assert num_frames == int(lines[0][0][0])
  expected_ids = [int(line[0][0]) for line in lines if line[0][1] == BODY_ID]
  assert body_ids.tolist() == expected_ids
  expected_xyz = np.zeros((len(expected_ids), 25, 3), np.float32)
  for line in lines:
    for token, role, place in line:
      if role == XYZ:
        expected_xyz[place] = np.float32(float(token))
  np.testing.assert_array_equal(xyz, expected_xyz)
  assert len(frame_index) == len(expected_ids)


@SETTINGS
@given(data=st.data(), lines=valid_files())
def test_a_token_replaced_by_junk_is_an_error(data, lines):
  at = data.draw(st.sampled_from(tokens_of(lines)))
  with pytest.raises(skeleton.SkeletonFormatError):
    read_bytes(render(replaced(lines, at, data.draw(JUNK))))


@SETTINGS
@given(data=st.data(), lines=valid_files())
def test_a_token_removed_or_repeated_is_an_error(data, lines):
  i, j = data.draw(st.sampled_from(tokens_of(lines)))
  line = list(lines[i])
  if data.draw(st.booleans()):
    del line[j]
  else:
    line.insert(j, line[j])
  mutated = lines[:i] + ([line] if line else []) + lines[i + 1:]
  with pytest.raises(skeleton.SkeletonFormatError):
    read_bytes(render(mutated))


@SETTINGS
@given(data=st.data(), lines=valid_files())
def test_a_count_changed_is_an_error(data, lines):
  counts = [at for at in tokens_of(lines) if lines[at[0]][at[1]][1] == COUNT]
  at = data.draw(st.sampled_from(counts))
  old = int(lines[at[0]][at[1]][0])
  new = data.draw(st.integers(0, 30).filter(lambda n: n != old))
  with pytest.raises(skeleton.SkeletonFormatError):
    read_bytes(render(replaced(lines, at, str(new))))


@SETTINGS
@given(data=st.data(), lines=valid_files())
def test_a_coordinate_replaced_by_a_number_changes_that_coordinate_alone(data, lines):
  coordinates = [at for at in tokens_of(lines) if lines[at[0]][at[1]][1] == XYZ]
  at = data.draw(st.sampled_from(coordinates))
  value = data.draw(st.floats(-1e4, 1e4, allow_nan=False))
  token = data.draw(st.sampled_from([f'{value:.6f}', f'{value:.6e}', repr(value)]))
  _, _, _, before = content(read_bytes(render(lines)))
  num_frames, _, ids, after = content(read_bytes(render(replaced(lines, at, token))))
  expected = before.copy()
  expected[lines[at[0]][at[1]][2]] = np.float32(float(token))
  np.testing.assert_array_equal(after, expected)
  assert num_frames == int(lines[0][0][0]) and len(ids) == len(before)


# ---- Any bytes -------------------------------------------------------------------

def parses_or_format_error(data: bytes) -> None:
  try:
    read_bytes(data)
  except skeleton.SkeletonFormatError:
    pass


@SETTINGS
@given(data=st.binary(max_size=2000))
def test_any_bytes_parse_or_raise_the_format_error(data):
  parses_or_format_error(data)


# Text close to the format, so that the reader gets past its first checks.
NEAR_TEXT = st.lists(st.sampled_from(['0', '1', '2', '25', '-1', '0.5', '1e3', 'nan', 'x',
                                      ' ', ' ', ' ', '\n', '\r\n', '\t', '\x00', '\xff']),
                     max_size=400).map(lambda parts: ''.join(parts).encode('latin-1'))


@SETTINGS
@given(data=NEAR_TEXT)
def test_near_text_parses_or_raises_the_format_error(data):
  parses_or_format_error(data)


@SETTINGS
@given(data=st.data(), lines=valid_files())
def test_cut_or_flipped_valid_files_parse_or_raise_the_format_error(data, lines):
  raw = bytearray(render(lines))
  if data.draw(st.booleans()):
    raw = raw[:data.draw(st.integers(0, len(raw) - 1))]
    # A valid file cut before its last value can never parse: data is missing.
    if len(raw) < len(render(lines).rstrip()):
      with pytest.raises(skeleton.SkeletonFormatError):
        read_bytes(bytes(raw))
      return
  else:
    at = data.draw(st.integers(0, len(raw) - 1))
    raw[at] = data.draw(st.integers(0, 255))
  parses_or_format_error(bytes(raw))


# ---- Annotations (PYSKL/MMAction2) ----------------------------------------------

NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32),
                    st.floats(-1e40, 1e40), st.integers(-2**70, 2**70),
                    st.sampled_from([0, 1, 0.005]))
ODD_VALUES = st.one_of(st.none(), st.booleans(), st.text(max_size=5), NUMBERS,
                       st.lists(NUMBERS, max_size=3),
                       st.dictionaries(st.text(max_size=3), NUMBERS, max_size=2))


def often(usual, rare):
  """`usual` three times in four, else `rare`."""
  return st.integers(0, 3).flatmap(lambda i: rare if i == 3 else usual)


@st.composite
def arrays(draw, shape):
  """An array of `shape` (mostly) or a nearby one, of a drawn dtype, or a list."""
  shape = list(shape)
  if draw(st.integers(0, 7)) == 7:
    shape = draw(st.lists(st.integers(0, 4), max_size=5))
  elif draw(st.integers(0, 7)) == 7:
    axis = draw(st.integers(0, len(shape) - 1))
    shape[axis] = max(0, shape[axis] + draw(st.sampled_from([-1, 1])))
  rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
  values = np.array(rng.uniform(-1, 1, shape) * draw(st.sampled_from([1, 1e3, 1e30])))
  if values.size and draw(st.integers(0, 3)) == 3:
    values.flat[draw(st.integers(0, values.size - 1))] = draw(NUMBERS)
  dtype = draw(st.sampled_from([np.float32, np.float16, np.float64, np.int64, object]))
  with np.errstate(all='ignore'):
    array = values.astype(dtype)
  return array.tolist() if draw(st.integers(0, 4)) == 4 else array


@st.composite
def annotation_dicts(draw):
  """(annotation, layout, kind): an annotation near the schema, with valid parts,
  some replaced by odd values or removed."""
  layout = draw(st.sampled_from(sorted(layouts.LAYOUTS)))
  kind = draw(st.sampled_from(annotations.KINDS))
  m, t = draw(often(st.integers(1, 3), st.just(0))), draw(st.integers(1, 4))
  v = layouts.get_layout(layout).num_joints
  annotation = {
      'frame_dir': draw(often(st.sampled_from(['clip', 'S001C001P001R001A001',
                                               'x' * 64]),
                              st.text(max_size=70))),
      'total_frames': t,
      'label': draw(often(st.integers(0, 5), st.just(-1))),
      'keypoint': draw(arrays((m, t, v, annotations.INPUT_CHANNELS[kind]))),
      'keypoint_score': draw(arrays((m, t, v))),
      'img_shape': draw(often(st.sampled_from([(480, 640), (1e-40, 1e-40),
                                               (1, 1e300)]),
                              st.tuples(NUMBERS, NUMBERS) | ODD_VALUES)),
  }
  num_changes = draw(st.sampled_from([0, 0, 1, 2]))
  for key in draw(st.lists(st.sampled_from(sorted(annotation)), min_size=num_changes,
                           max_size=num_changes, unique=True)):
    if draw(st.booleans()):
      del annotation[key]
    else:
      annotation[key] = draw(ODD_VALUES)
  return annotation, layout, kind


@SETTINGS
@given(drawn=annotation_dicts(), num_persons=st.integers(1, 3),
       num_classes=st.sampled_from([None, 3]))
def test_to_sample_gives_a_valid_sample_or_the_annotation_error(drawn, num_persons,
                                                               num_classes):
  annotation, layout, kind = drawn
  try:
    sample = annotations.to_sample(annotation, layout, kind, num_persons,
                                   num_classes=num_classes)
  except annotations.AnnotationError:
    return
  assert sample.dtype == np.float32
  assert sample.shape == (annotation['total_frames'], num_persons,
                          layouts.get_layout(layout).num_joints,
                          len(annotations.CHANNELS[kind]))
  assert np.isfinite(sample).all()
  assert 0 <= annotation['label'] < (num_classes or 6)


@SETTINGS
@given(value=ODD_VALUES | st.binary(max_size=20))
def test_to_sample_of_a_non_dict_is_the_annotation_error(value):
  with pytest.raises(annotations.AnnotationError):
    annotations.to_sample(value, 'coco17', '2d')


# ---- OpenPose JSON ------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False)
    | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(['people', 'pose_keypoints_2d', 'x']), inner, max_size=3),
    max_leaves=20)


@st.composite
def openpose_frames(draw):
  """A frame's JSON text near OpenPose's output (NaN and Infinity as Python's
  json writes them), sometimes cut short."""
  people = []
  for _ in range(draw(st.integers(0, 3))):
    size = 3 * draw(st.sampled_from([25, 18, 18, 0, 1, 24]))
    values = draw(st.lists(NUMBERS | st.integers(0, 2000), min_size=size,
                           max_size=size))
    person = {'person_id': [-1], 'pose_keypoints_2d': values}
    people.append(draw(JSON) if draw(st.integers(0, 5)) == 0 else person)
  frame = {'version': 1.3, 'people': people}
  text = json.dumps(draw(JSON) if draw(st.integers(0, 5)) == 0 else frame)
  if draw(st.integers(0, 4)) == 0:
    text = text[:draw(st.integers(0, len(text)))]
  return text


def parses_or_annotation_error(text) -> None:
  try:
    people = openpose.parse_frame(text, 'frame.json')
  except annotations.AnnotationError:
    return
  assert len({len(p) for p in people}) <= 1
  for pose in people:
    assert pose.shape in ((25, 3), (18, 3)) and np.isfinite(pose).all()


@SETTINGS
@given(text=openpose_frames())
def test_openpose_frames_parse_or_raise_the_annotation_error(text):
  parses_or_annotation_error(text)


@SETTINGS
@given(data=st.binary(max_size=500) | JSON.map(json.dumps))
def test_any_json_or_bytes_parse_or_raise_the_annotation_error(data):
  parses_or_annotation_error(data)


POSE = st.lists(st.floats(0, 1000), min_size=3 * 18, max_size=3 * 18).map(
    lambda values: np.array(values).reshape(18, 3))


@SETTINGS
@given(frames=st.lists(st.lists(POSE, max_size=3), min_size=1, max_size=5))
def test_tracks_hold_each_detected_pose_once(frames):
  tracks = openpose.track_people(frames)
  for t, people in enumerate(frames):
    detected = [p for p in people if (p[:, 2] > 0).any()]
    held = [track[t] for track in tracks if (track[t] != 0).any()]
    assert len(held) == len([p for p in detected if (p != 0).any()])
    for pose in detected:
      assert sum((pose == track[t]).all() for track in tracks) >= 1
