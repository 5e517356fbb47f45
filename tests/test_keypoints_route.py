"""Synthetic COCO-17 2D keypoints in a PYSKL-format pickle build, train, evaluate and
predict (the 2D demo); the README's own-skeleton route is tests/test_own_skeleton.py.
"""

import io
import json
import subprocess
import sys

import numpy as np
import pytest

from stbln_jax import metrics
from stbln_jax import predict
from stbln_jax.data import annotations
from tiny_run import REPO, subprocess_env


@pytest.fixture(scope='module')
def trained_2d(tmp_path_factory):
  """The 2D demo, run as its documented command on one CPU device (its batch of 8
  would be split over the tests' four)."""
  workdir = tmp_path_factory.mktemp('coco17_demo')
  result = subprocess.run(
      [sys.executable, '-m', 'stbln_jax.main', '--config=configs/coco17_demo.py',
       f'--workdir={workdir}'], cwd=REPO, capture_output=True, text=True, timeout=900,
      env=subprocess_env(num_devices=1))
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir, json.loads((workdir / 'eval_xview_val.json').read_text())


def test_synthetic_coco17_keypoints_train_to_85_percent_on_the_unseen_camera(trained_2d):
  _, summary = trained_2d
  assert summary['dataset'] == 'pose_annotations/coco17_2d'
  assert summary['split'] == 'xview_val' and summary['num_examples'] == 200
  assert summary['top1'] >= 0.85, summary['top1']
  cm = np.asarray(summary['confusion_matrix'])
  assert summary['mean_class_accuracy'] == pytest.approx(
      np.mean([cm[c, c] / cm[c].sum() for c in range(len(cm)) if cm[c].sum()]))


def test_predict_on_the_annotation_file_equals_evaluation(trained_2d):
  workdir, _ = trained_2d
  pickle_path = next((workdir / 'data').rglob('*.pkl'))
  scores = np.load(workdir / 'scores_xview_val.npz')
  names = [str(n) for n in scores['names'][:3]]
  out, err = io.StringIO(), io.StringIO()
  failed = predict.run(str(workdir), names + ['no_such_clip'], annotations=str(pickle_path),
                       top_k=1, out=out, err=err)
  assert failed == 1 and 'no_such_clip' in err.getvalue()
  probabilities = metrics.softmax(scores['logits'][:3])
  lines = out.getvalue().splitlines()
  for name, p in zip(names, probabilities):
    header = lines.index(next(line for line in lines if line.startswith(name)))
    assert f'{p.max():.4f}' in lines[header + 1]


def test_predict_rejects_annotations_for_a_skeleton_run(tmp_path):
  from configs import demo  # pylint: disable=g-import-not-at-top
  config = demo.get_config()
  with pytest.raises(ValueError, match='not on pose_annotations'):
    list(predict.annotation_records(str(tmp_path / 'x.pkl'), [], config))


def test_annotation_records_report_bad_annotations_and_go_on(tmp_path):
  from configs import coco17_demo  # pylint: disable=g-import-not-at-top
  good = dict(frame_dir='good', label=0, total_frames=4, img_shape=(1080, 1920),
              keypoint=np.full((1, 4, 17, 2), 500, np.float32),
              keypoint_score=np.ones((1, 4, 17), np.float32))
  bad = dict(good, frame_dir='bad', total_frames=5)
  path = tmp_path / 'clips.pkl'
  path.write_bytes(__import__('pickle').dumps(
      dict(split={'test': ['good', 'bad']}, annotations=[good, bad])))
  records = list(predict.annotation_records(str(path), [], coco17_demo.get_config()))
  assert [r[0] for r in records] == ['good', 'bad']
  assert records[0][1].shape == (4, 2, 17, 3) and records[0][2] is None
  assert records[1][1] is None and 'bad' in records[1][2] and 'total_frames' in records[1][2]
  np.testing.assert_allclose(records[0][1], annotations.to_sample(good, 'coco17', '2d'))
