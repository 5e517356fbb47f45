"""Keypoints of a skeleton of one's own, end to end as a user runs it.

The worked example of docs/own_skeletons.md writes annotations.pkl, classes.txt and
layout.json for an 8-joint stick figure (one person a clip, from synthetic motions); its
two commands build and train them with the base config's smoke run and two overrides; the
run then exports, serves with jax, numpy and flatbuffers alone, predicts and streams,
and they agree. A config that contradicts the data stops with one line before training.
3D keypoints built with a normalisation are prepared the same way by prediction,
serving and streaming.
"""

import json
import pathlib
import pickle
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest

from configs import annotations as annotations_config
from stbln_jax import evaluate
from stbln_jax import export
from stbln_jax import input_pipeline
from stbln_jax import predict
from stbln_jax import serving
from stbln_jax import stream
from stbln_jax.data import annotations
from stbln_jax.data import layouts
from test_export import write_workdir
from tiny_run import REPO, subprocess_env

PAGE = REPO / 'docs' / 'own_skeletons.md'
CLASSES = ['wave', 'clap', 'bow']
# What the serving process may not import: the training stack.
HEAVY = ('flax', 'optax', 'orbax', 'tensorflow', 'tensorflow_datasets', 'grain',
         'ml_collections', 'absl', 'tensorboardX', 'matplotlib', 'array_record')


def page_block(after: str, language: str) -> str:
  text = PAGE.read_text()
  start = text.index(after)
  return re.search(rf'```{language}\n(.*?)```', text[start:], re.S).group(1)


def page_commands(paths: dict[str, str]) -> list[list[str]]:
  """The page's build and train commands, its paths replaced by `paths`."""
  block = page_block('A dataset of your own is one folder of three files', 'bash')
  commands = []
  for line in block.replace('\\\n', ' ').splitlines():
    for old, new in paths.items():
      line = line.replace(old, new)
    argv = shlex.split(line)
    commands.append([sys.executable] + argv[1:])
  return commands


def stick_clips(num_clips=90, seed=0):
  """(name, label, keypoint (1, T, 8, 2) pixels, score (1, T, 8)): a waved right hand,
  clapped hands or a bow, at random places in a 1920 × 1080 frame."""
  rng = np.random.default_rng(seed)
  # pelvis, chest, head, l_hand, r_hand, l_foot, r_foot, neck
  rest = np.array([[0, 0], [0, -60], [0, -110], [-50, -20], [50, -20], [-20, 90], [20, 90],
                   [0, -85]], np.float64)
  clips = []
  for i in range(num_clips):
    label, t = i % 3, int(rng.integers(10, 24))
    phase = np.linspace(0, 2 * np.pi, t)[:, None]
    pose = np.repeat(rest[None], t, 0)
    if label == 0:
      pose[:, 4, 1] -= 60 * (1 + np.sin(phase[:, 0]))
    elif label == 1:
      pose[:, 3, 0] += 40 * (1 + np.sin(phase[:, 0]))
      pose[:, 4, 0] -= 40 * (1 + np.sin(phase[:, 0]))
    else:
      pose[:, [1, 2, 7], 1] += 30 * (1 + np.sin(phase))
    where = rng.uniform([300, 300], [1600, 800])
    keypoint = (pose * rng.uniform(0.8, 1.2) + where + rng.normal(0, 2, pose.shape))[None]
    clips.append((f'clip_{i:03d}', label, keypoint, rng.uniform(0.3, 1, (1, t, 8))))
  return clips


@pytest.fixture(scope='module')
def route(tmp_path_factory):
  """The page's files and commands: {'raw', 'tfds', 'run', 'build', 'train'}."""
  root = tmp_path_factory.mktemp('own')
  paths = {name: root / name for name in ('raw', 'tfds', 'run')}
  paths['raw'].mkdir()
  code = page_block('A worked example, with the keypoints of a 2D pose estimator',
                      'python').replace('/data/my_actions', str(paths['raw']))
  exec(code, {'my_clips': stick_clips()})  # pylint: disable=exec-used
  build, train = page_commands({'/data/my_actions': str(paths['raw']),
                                  '/data/tfds': str(paths['tfds']),
                                  'runs/mine': str(paths['run']),
                                  'configs/annotations.py': 'configs/annotations.py:smoke'})
  assert sum(a.startswith('--config.') for a in train) == 2  # dataset and data_dir
  env = subprocess_env(num_devices=1)
  for name, argv in (('build', build), ('train', train)):
    result = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600,
                            env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    paths[name] = result
  return paths


def run(*argv, env=None):
  return subprocess.run([sys.executable, *map(str, argv)], cwd=REPO, capture_output=True,
                        text=True, timeout=600, env=env or subprocess_env(num_devices=1))


def test_the_documented_route_builds_and_trains_one_person_of_its_own_skeleton(route):
  out = route['build'].stdout
  assert 'pose_annotations/custom_2d' in out and 'examples: test 10, train 80' in out
  assert 'Downloading and preparing' not in out
  config = json.loads((route['run'] / 'config.json').read_text())
  model = config['model']
  assert (model['layout'], model['num_persons'], model['num_joints'], model['in_channels'],
          model['num_classes']) == ('stick8', 1, 8, 3, 3)
  assert model['custom_layout'] == json.loads((route['raw'] / 'layout.json').read_text())
  assert config['preprocessing'] is None and model['strides'] is None
  assert json.loads((route['run'] / 'class_names.json').read_text()) == CLASSES
  report = json.loads((route['run'] / 'eval_test.json').read_text())
  assert report['num_examples'] == 10 and len(report['confusion_matrix']) == 3


SERVE = '''
import importlib.abc, json, pickle, sys
blocked = set(sys.argv[1].split(','))

class Block(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path=None, target=None):
    if name.split('.')[0] in blocked:
      raise ModuleNotFoundError(f'No module named {name!r}', name=name)

sys.meta_path.insert(0, Block())
from stbln_jax import serving
from stbln_jax.data import annotations
try:
  model = serving.load(sys.argv[2])
except serving.ExportError as e:
  print(json.dumps({'error': str(e)}))
  sys.exit(0)
with open(sys.argv[3], 'rb') as f:
  clip = {a['frame_dir']: a for a in pickle.load(f)['annotations']}[sys.argv[4]]
record = annotations.to_sample(clip, model.layout, '2d', model.input_shape[2])
print(json.dumps({'classify': model.classify(record, 3),
                  'input': model.prepare(record).shape,
                  'heavy': sorted(m for m in sys.modules if m.split('.')[0] in blocked)}))
'''


def test_export_serving_predict_and_stream_agree(route, tmp_path):
  output = tmp_path / 'mine.stablehlo'
  result = run('-m', 'stbln_jax.export', f'--workdir={route["run"]}', f'--output={output}',
               '--checkpoint_step=best')
  assert result.returncode == 0, result.stderr[-3000:]
  meta = json.loads(pathlib.Path(serving.sidecar_path(str(output))).read_text())
  assert meta['class_names'] == CLASSES and meta['layout'] == 'stick8'
  assert meta['custom_layout']['centre'] == 'pelvis' and meta['input_shape'][2:] == [1, 8, 3]
  pkl = route['raw'] / 'annotations.pkl'

  served = run('-c', SERVE, ','.join(HEAVY), output, pkl, 'clip_081')
  assert served.returncode == 0, served.stderr[-3000:]
  served = json.loads(served.stdout.strip().splitlines()[-1])
  assert served['heavy'] == [] and served['input'] == [1, 16, 1, 8, 3]

  predicted = run('-m', 'stbln_jax.predict', f'--workdir={route["run"]}',
                  '--checkpoint_step=best', '--top_k=3', f'--annotations={pkl}', 'clip_081')
  assert predicted.returncode == 0, predicted.stderr[-3000:]
  lines = predicted.stdout.splitlines()
  assert lines[0].startswith('clip_081')
  printed = [(line.split()[1], float(line.split()[2])) for line in lines[1:4]]
  assert [name for name, _ in printed] == [name for name, _ in served['classify']]
  np.testing.assert_allclose([p for _, p in printed], [p for _, p in served['classify']],
                             atol=1e-4)

  streamed = run('-m', 'stbln_jax.stream', f'--export={output}', '--window=8', '--hop=4',
                 '--fps=0', f'--annotations={pkl}', 'clip_081')
  assert streamed.returncode == 0, streamed.stderr[-3000:]
  predictions = [line for line in streamed.stdout.splitlines() if line.startswith('frame')]
  assert predictions and all(any(c in line for c in CLASSES) for line in predictions)

  # Without flatbuffers, the package is named.
  missing = run('-c', SERVE, ','.join(HEAVY + ('flatbuffers',)), output, pkl, 'clip_081')
  assert json.loads(missing.stdout.strip().splitlines()[-1])['error'].endswith(
      "needs the package 'flatbuffers', which is not installed: pip install flatbuffers")


def test_predict_with_more_actions_than_classes_is_one_line(route):
  result = run('-m', 'stbln_jax.predict', f'--workdir={route["run"]}', '--top_k=5',
               f'--annotations={route["raw"] / "annotations.pkl"}', 'clip_081')
  assert result.returncode == 2
  assert result.stderr.strip() == ('error: --top_k=5, but the run knows 3 classes; ask for '
                                   'at most 3')


def test_a_config_that_contradicts_the_data_is_one_line_before_training(route, tmp_path):
  train = [a for a in route['train'].args[1:] if not a.startswith('--workdir=')]
  result = run(*train, f'--workdir={tmp_path / "run"}', '--config.model.num_classes=60',
               '--config.model.num_persons=2', '--config.model.layout=coco17',
               '--config.batch_size=128')
  assert result.returncode == 2
  assert result.stderr.count('\n') == 1, result.stderr
  line = result.stderr.strip()
  assert line.startswith('error: the config does not fit dataset pose_annotations/custom_2d: ')
  for fragment in ('model.num_classes=60, but it has 3 classes',
                   'model.num_persons=2, but its samples hold 1 person;',
                   "model.layout='coco17', but its skeletons are 'stick8'",
                   'batch_size=128 is larger than the 80 examples of train'):
    assert fragment in line
  assert not (tmp_path / 'run' / 'checkpoints').exists()


# ---- 3D keypoints, normalised when built -------------------------------------------

def test_3d_normalisation_reaches_prediction_serving_and_streaming(tmp_path):
  raw = tmp_path / 'raw'
  raw.mkdir()
  layout = layouts.from_json(json.loads(page_block('Any other skeleton is a', 'json')))
  (raw / 'layout.json').write_text(json.dumps(layout.to_json()))
  rng = np.random.default_rng(3)
  clips = [dict(frame_dir=f'c{i}', label=i % 2, total_frames=12,
                keypoint=rng.normal([0.5, 1.0, 4.0], 0.3, (1, 12, 8, 3)).astype(np.float32))
           for i in range(6)]
  with open(raw / 'clips.pkl', 'wb') as f:
    pickle.dump({'split': {'train': ['c0', 'c1', 'c2', 'c3'], 'test': ['c4', 'c5']},
                 'annotations': clips}, f)
  result = run('-m', 'data_prep.build', 'pose_annotations/custom_3d', f'--manual_dir={raw}',
               f'--data_dir={tmp_path / "tfds"}', '--centre=every_frame')
  assert result.returncode == 0, result.stderr[-3000:]

  config = annotations_config.get_config('smoke')
  config.dataset, config.data_dir = 'pose_annotations/custom_3d', str(tmp_path / 'tfds')
  dataset = input_pipeline.open_dataset(config)
  config = evaluate.fit_to_dataset(config, dataset)
  assert config.preprocessing == 'centre=every_frame:pelvis'
  # Prediction converts a raw annotation as the build did: centred on the pelvis.
  (name, record, error), = predict.annotation_records(str(raw / 'clips.pkl'), ['c4'], config)
  expected = clips[4]['keypoint'][0] - clips[4]['keypoint'][0][:, :1]
  np.testing.assert_allclose(record[:, 0], expected, atol=1e-6)
  index = dataset.sample_names('test').index('c4')
  stored = input_pipeline.decode_record(dataset.reader('test').read([index])[0],
                                        dataset.sample_shape)[0]
  np.testing.assert_array_equal(stored, record)

  # So does a stream of the export, from the sidecar, and serving brings it to T frames.
  write_workdir(tmp_path / 'run', config)
  output = str(tmp_path / 'm.stablehlo')
  meta = export.export_run(str(tmp_path / 'run'), output)
  assert meta['preprocessing'] == 'centre=every_frame:pelvis'
  model = serving.load(output)
  recognizer = stream.Recognizer(model, window=12, hop=12, top_k=2)
  for people, ids in stream.annotation_frames(clips[4], 'xyz'):
    prediction = recognizer.push(people, ids)
  window = recognizer.window_keypoints()
  np.testing.assert_allclose(window, record, atol=1e-6)
  assert prediction is not None and len(prediction.actions) == 2
  assert model.prepare(record).shape == (1, config.num_frames, 1, 8, 3)
