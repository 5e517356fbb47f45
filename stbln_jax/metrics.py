"""Classification metrics on the host: top-k, per-class and mean class accuracy, confusion.

Pure NumPy on gathered logits and labels, shared by evaluation (`evaluate`) and
score fusion (`ensemble`). The jitted steps reduce their own running sums; these
functions produce the final, per-class and per-sample summaries.
"""

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
  """Class probabilities from logits (N, K), computed stably in float64."""
  z = np.asarray(logits, np.float64)
  z = z - z.max(axis=-1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(axis=-1, keepdims=True)


def topk_correct(scores: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
  """Whether each label is among the k highest scores: bool (N,)."""
  k = min(k, scores.shape[-1])
  # A label is in the top k when fewer than k classes score strictly higher; this
  # counts ties in the label's favour, the same as `jax.lax.top_k` on distinct scores.
  label_score = np.take_along_axis(scores, labels[:, None], axis=-1)
  return (scores > label_score).sum(axis=-1) < k


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray,
                     num_classes: int) -> np.ndarray:
  """Counts (K, K): row = true class, column = predicted class."""
  cm = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(cm, (labels, predictions), 1)
  return cm


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
  """Recall of each class from a confusion matrix; NaN for classes with no examples."""
  totals = cm.sum(axis=1)
  with np.errstate(invalid='ignore', divide='ignore'):
    return np.where(totals > 0, np.diag(cm) / np.maximum(totals, 1), np.nan)


def mean_class_accuracy(cm: np.ndarray) -> float:
  """Mean over the classes present (a non-empty row of `cm`) of their recall."""
  per_class = per_class_accuracy(cm)
  present = ~np.isnan(per_class)
  return float(per_class[present].mean()) if present.any() else float('nan')


def summarize(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> dict:
  """top-1, top-5, mean class accuracy, mean cross-entropy, per-class accuracy and
  the confusion matrix.

  Args:
    logits: (N, K) scores of the N real (unpadded) examples.
    labels: (N,) integer classes.
    num_classes: K.

  Returns:
    A JSON-ready dict (floats, ints and nested lists).
  """
  logits = np.asarray(logits, np.float64)
  labels = np.asarray(labels, np.int64)
  n = len(labels)
  log_probs = np.log(np.maximum(softmax(logits), 1e-300))
  loss = float(-log_probs[np.arange(n), labels].mean()) if n else float('nan')
  cm = confusion_matrix(labels, logits.argmax(axis=-1), num_classes)
  per_class = per_class_accuracy(cm)
  return {
      'num_examples': int(n),
      'top1': float(topk_correct(logits, labels, 1).mean()) if n else float('nan'),
      'top5': float(topk_correct(logits, labels, 5).mean()) if n else float('nan'),
      'mean_class_accuracy': mean_class_accuracy(cm),
      'loss': loss,
      # NaN (a class absent from the split) is not valid JSON; write it as null.
      'per_class_accuracy': [None if np.isnan(a) else float(a) for a in per_class],
      'confusion_matrix': cm.tolist(),
  }


def plot_confusion_matrix(cm: np.ndarray, path, class_names=None, title: str = '') -> None:
  """Saves a row-normalised confusion matrix as an image (matplotlib, Agg backend).

  Only classes that occur (as truth or prediction) are drawn, so a split using a
  few of the label space's classes (the synthetic demo) stays readable.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  cm = np.asarray(cm, np.float64)
  shown = np.flatnonzero((cm.sum(axis=0) + cm.sum(axis=1)) > 0)
  cm = cm[np.ix_(shown, shown)]
  if class_names is not None:
    class_names = [class_names[i] for i in shown]
  rows = np.maximum(cm.sum(axis=1, keepdims=True), 1)
  k = cm.shape[0]
  size = min(4 + 0.15 * k, 24)
  fig, ax = plt.subplots(figsize=(size, size))
  image = ax.imshow(cm / rows, cmap='Blues', vmin=0.0, vmax=1.0)
  fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label='fraction of true class')
  ax.set_xlabel('predicted class')
  ax.set_ylabel('true class')
  if title:
    ax.set_title(title)
  if class_names is not None and k <= 30:
    # Names are readable only for small label sets; NTU-60/120 keep the indices.
    ax.set_xticks(range(k), class_names, rotation=90, fontsize=7)
    ax.set_yticks(range(k), class_names, fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
