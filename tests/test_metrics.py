"""Host metrics (stbln_jax.metrics): mean class accuracy next to top-1."""

import numpy as np

from stbln_jax import metrics


def test_mean_class_accuracy_is_the_mean_recall_of_the_classes_present():
  # Unequal classes: 10 of class 0 (9 right), 2 of class 1 (0 right), 4 of class 3
  # (2 right); class 2 never occurs (it is only predicted) and does not count.
  labels = np.array([0] * 10 + [1] * 2 + [3] * 4)
  predictions = np.array([0] * 9 + [2] + [0, 2] + [3, 3, 0, 1])
  cm = metrics.confusion_matrix(labels, predictions, num_classes=4)
  assert cm.sum() == 16 and cm[2].sum() == 0
  expected = np.mean([9 / 10, 0 / 2, 2 / 4])
  assert metrics.mean_class_accuracy(cm) == expected
  top1 = np.mean(labels == predictions)
  assert top1 == 11 / 16 and abs(top1 - expected) > 0.2  # a different number

  logits = np.eye(4)[predictions] * 5.0
  summary = metrics.summarize(logits, labels, num_classes=4)
  assert summary['mean_class_accuracy'] == expected
  assert summary['top1'] == top1
  assert summary['per_class_accuracy'] == [0.9, 0.0, None, 0.5]


def test_mean_class_accuracy_of_an_empty_matrix_is_nan():
  assert np.isnan(metrics.mean_class_accuracy(np.zeros((3, 3), np.int64)))
