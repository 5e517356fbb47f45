"""Streaming recognition: each window's prediction is `predict`'s on a file of its frames."""

import io
import os
import pickle
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from stbln_jax import checkpoint
from stbln_jax import export
from stbln_jax import models
from stbln_jax import predict
from stbln_jax import serving
from stbln_jax import sharding
from stbln_jax import stream
from stbln_jax.data import annotations
from stbln_jax.data import preprocess
from stbln_jax.data import skeleton as skeleton_lib
from test_export import tiny_config, write_workdir

WINDOW, HOP = 24, 20


def cut_frames(src, dst, start, stop):
  """Writes the frames [start, stop) of `.skeleton` file `src` as file `dst`."""
  lines = open(src).read().splitlines()
  frames, at = [], 1
  for _ in range(int(lines[0])):
    bodies = int(lines[at])
    size = 1 + bodies * (2 + 25)
    frames.append(lines[at:at + size])
    at += size
  kept = frames[start:stop]
  with open(dst, 'w') as f:
    f.write('\n'.join([str(len(kept))] + [line for frame in kept for line in frame]) + '\n')


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
  root = tmp_path_factory.mktemp('stream')
  config = tiny_config(aggregate_at=2)
  config.num_frames = WINDOW  # `predict` then pads a file of one window to the window
  write_workdir(root / 'run', config, seed=5)
  output = str(root / 'model.stablehlo')
  export.export_run(str(root / 'run'), output)
  return str(root / 'run'), config, serving.load(output)


@pytest.mark.parametrize('name', ['S001C001P001R001A011',  # one person
                                  'S001C003P008R002A058'])  # two people
def test_every_window_predicts_as_predict_on_its_frames(exported, name, ntu_samples_dir,
                                                        tmp_path):
  workdir, config, model = exported
  path = str(ntu_samples_dir / f'{name}.skeleton')
  predictions = stream.replay(model, path, window=WINDOW, hop=HOP, fps=0, top_k=3,
                              out=io.StringIO(), progress=None)
  num_frames = skeleton_lib.read_skeleton(path).num_frames
  assert [p.frame for p in predictions] == list(range(WINDOW - 1, num_frames, HOP))

  variables, _, _ = checkpoint.restore_variables(workdir,
                                                 sharding.replicated(sharding.make_mesh()))
  flax_model = models.create_model(config.model)
  for p in predictions:
    cut = str(tmp_path / f'{name}_{p.frame}.skeleton')
    cut_frames(path, cut, p.frame + 1 - WINDOW, p.frame + 1)
    inputs, good, errors = predict.load_inputs([cut], config)
    assert not errors and inputs.shape == (1, WINDOW, 2, 25, 3)
    expected = np.asarray(flax_model.apply(variables, jnp.asarray(inputs), train=False))[0]
    np.testing.assert_allclose(p.logits, expected, atol=1e-4, rtol=1e-4)
    assert p.actions[0][0] == f'action {int(np.argmax(expected))}'
    assert len(p.actions) == 3


def test_frames_without_bodies_and_wrong_frames(exported):
  _, _, model = exported
  recognizer = stream.Recognizer(model, window=4, hop=2)
  assert [recognizer.push(np.zeros((0, 25, 3))) for _ in range(3)] == [None] * 3
  p = recognizer.push(np.zeros((0, 25, 3)))
  assert p.frame == 3 and p.actions == [] and p.logits is None
  with pytest.raises(ValueError, match=r'<stream>: frame 4: 1 bodies but 2 body IDs'):
    recognizer.push(np.ones((1, 25, 3)), body_ids=[1, 2])
  fixed = serving.ExportedModel(model.path, model.exported,
                                dict(model.meta, input_shape=['N', 16, 2, 25, 3]))
  with pytest.raises(ValueError, match=r'model\.stablehlo: exported for 16 frames'):
    stream.Recognizer(fixed, window=8)


def test_replay_command_prints_predictions_and_progress(exported, ntu_samples_dir):
  _, _, model = exported
  path = str(ntu_samples_dir / 'S001C001P001R001A011.skeleton')
  root = os.path.dirname(os.path.dirname(__file__))
  result = subprocess.run(
      [sys.executable, '-m', 'stbln_jax.stream', f'--export={model.path}', f'--window={WINDOW}',
       '--hop=40', '--fps=0', '--top_k=2', path],
      capture_output=True, text=True, cwd=root, check=True,
      env=dict(os.environ, JAX_PLATFORMS='cpu'))
  lines = result.stdout.splitlines()
  assert [int(line.split()[1]) for line in lines] == [23, 63]
  assert all(line.count('action ') == 2 for line in lines), lines
  assert 'frame 82/82, 2 predictions' in result.stderr


@pytest.fixture(scope='module')
def coco_export(tmp_path_factory):
  """A lean bilinear network on COCO-17 keypoints with scores, the bone stream."""
  root = tmp_path_factory.mktemp('coco')
  config = tiny_config(arch='lean', layout='coco17', num_joints=17)
  config.dataset, config.stream = 'pose_annotations/coco17_2d', 'bone'
  variables = write_workdir(root / 'run', config, seed=6)
  output = str(root / 'model.stablehlo')
  meta = export.export_run(str(root / 'run'), output, channels='xys')
  return config, variables, meta, serving.load(output)


def test_coco17_windows_predict_as_the_export_on_their_frames(coco_export):
  config, variables, meta, model = coco_export
  assert (meta['layout'], meta['channels'], meta['preprocessing']) == ('coco17', 'xys', None)
  assert meta['input_shape'] == ['N', 'T', 2, 17, 3]
  window, hop, h, w = 10, 5, 480, 640
  rng = np.random.default_rng(7)
  frames = 16
  pixels = rng.uniform(0, [w, h], size=(3, frames, 17, 2))
  scores = np.broadcast_to(np.array([0.9, 0.6, 0.2])[:, None, None, None], (3, frames, 17, 1))
  people = np.concatenate([pixels, scores], axis=-1).astype(np.float32)
  present = np.ones((3, frames), bool)
  present[1, 2:9] = False  # person 1 is out of view in frames 2-8
  people[0, 4, 3, 2] = 0.005  # an undetected keypoint: x = y = 0 once normalised
  recognizer = stream.Recognizer(model, window=window, hop=hop, img_shape=(h, w))
  predictions = []
  for t in range(frames):
    ids = np.flatnonzero(present[:, t])
    p = recognizer.push(people[ids, t], body_ids=100 + ids)
    if p is not None:
      predictions.append(p)
  assert [p.frame for p in predictions] == [9, 14]

  flax_model = models.create_model(config.model).clone(temporal_conv='xla')
  # Frames 0-9: person 1 shows in 3 frames (total score 3·17·0.6 < 10·17·0.2), so the
  # persons are 0 and 2; frames 5-14: person 1 shows in 6 and outscores person 2.
  for p, chosen in zip(predictions, ([0, 2], [0, 1])):
    frames_in = slice(p.frame + 1 - window, p.frame + 1)
    tracks = people[chosen, frames_in].copy()
    tracks[..., 0] = (tracks[..., 0] - w / 2) / (w / 2)
    tracks[..., 1] = (tracks[..., 1] - h / 2) / (h / 2)
    tracks[~present[chosen, frames_in]] = 0  # absent: score 0, so x = y = 0
    tracks[..., :2][tracks[..., 2] <= 0.01] = 0
    x = preprocess.select_stream(np.swapaxes(tracks, 0, 1)[None], 'bone', 'coco17', 'xys')
    np.testing.assert_allclose(p.logits, model(x)[0], rtol=1e-6, atol=1e-6)
    expected = flax_model.apply(variables, jnp.asarray(x), train=False)[0]
    np.testing.assert_allclose(p.logits, expected, rtol=1e-5, atol=1e-5)


def test_keypoint_frames_of_the_wrong_shape_or_nobody(coco_export):
  *_, model = coco_export
  recognizer = stream.Recognizer(model, window=2, hop=1)
  with pytest.raises(ValueError, match=r'<stream>: frame 0: people of shape \(25, 3\), '
                     r'expected \(17, 3\)'):
    recognizer.push(np.zeros((1, 25, 3)))
  assert recognizer.push([]) is None
  p = recognizer.push(np.zeros((0, 17, 3)))
  assert p.frame == 1 and p.actions == [] and p.logits is None
  with pytest.raises(ValueError, match=r'only NTU exports replay \.skeleton files'):
    stream.replay(model, 'S001C001P001R001A011.skeleton', progress=None)


def test_without_scores_the_most_active_keypoint_tracks_are_the_persons(coco_export):
  *_, model = coco_export
  xy = serving.ExportedModel(model.path, model.exported,
                             dict(model.meta, channels='xy', input_shape=['N', 'T', 2, 17, 2]))
  # An image of 2 × 2 pixels: x and y move by -1 when normalised.
  recognizer = stream.Recognizer(xy, window=7, hop=1, img_shape=(2, 2))  # 6 frames: no call
  rng = np.random.default_rng(8)
  spread = np.array([0.01, 1.0, 0.1])[:, None, None, None]  # person 1 moves most, then 2
  people = 1 + spread * rng.normal(size=(3, 6, 17, 2))
  for t in range(6):
    recognizer.push(people[:, t])
  np.testing.assert_allclose(recognizer.window_keypoints(),
                             np.swapaxes(people[[1, 2]] - 1, 0, 1), rtol=1e-5, atol=1e-6)


def test_annotation_files_replay_as_the_builder_makes_their_windows(coco_export, tmp_path):
  *_, model = coco_export
  rng = np.random.default_rng(3)
  frames, h, w = 12, 480, 640
  annotation = dict(frame_dir='clip', label=0, total_frames=frames, img_shape=(h, w),
                    keypoint=rng.uniform(0, [w, h], size=(2, frames, 17, 2)).astype(np.float32),
                    keypoint_score=rng.uniform(0.3, 1, size=(2, frames, 17)).astype(np.float32))
  annotation['keypoint'][1, :4] = 0  # the second person comes into view at frame 4
  annotation['keypoint_score'][1, :4] = 0
  path = tmp_path / 'clips.pkl'
  path.write_bytes(pickle.dumps(dict(split={'test': ['clip']}, annotations=[annotation])))
  out = io.StringIO()
  results = stream.replay_annotations(model, str(path), window=frames, hop=4, fps=0,
                                      out=out, progress=None)
  (prediction,) = results['clip']  # one window: the whole clip
  x = preprocess.select_stream(annotations.to_sample(annotation, 'coco17', '2d')[None],
                               'bone', 'coco17', 'xys')
  np.testing.assert_allclose(prediction.logits, model(x)[0], rtol=1e-6, atol=1e-6)
  assert out.getvalue().splitlines()[0] == 'clip'
  with pytest.raises(ValueError, match="no annotation has frame_dir 'other'"):
    stream.replay_annotations(model, str(path), ['other'], progress=None)
