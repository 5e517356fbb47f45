"""Streaming recognition: each window's prediction is `predict`'s on a file of its frames."""

import io
import os
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
