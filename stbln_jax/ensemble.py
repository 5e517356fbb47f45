r"""Score fusion of several streams (joint, bone, their motions), as in 2s-AGCN.

  python -m stbln_jax.ensemble --workdirs=/tmp/cv_joint,/tmp/cv_bone --weights=1,1
  python -m stbln_jax.ensemble --workdirs=J,B,JM,BM --weights=2,2,1,1

Each workdir holds `scores_<split>.npz` written by evaluation (`--mode=eval`, or the
end of training): per-sample names, labels and logits; the split is the runs' evaluation
split (`eval_split` of the first workdir's config.json) unless `--split` names another.
Samples are matched by name.
The fused score of a sample is Σ_s w_s · softmax(logits_s) by default: probabilities
put the streams on one scale whatever their logit magnitudes. `--scores=logits`
sums raw logits instead, which is what 2s-AGCN's ensemble script does.
"""

from typing import Sequence

from absl import app
from absl import flags
import numpy as np

from stbln_jax import cli
from stbln_jax import metrics
from stbln_jax import workdir as workdir_lib

FLAGS = flags.FLAGS


def _define_flags():
  # Defined only when run as a command, so that importing the module defines none.
  flags.DEFINE_list('workdirs', None, 'Workdirs of the streams to fuse.',
                    required=True)
  flags.DEFINE_list('weights', None, 'One weight per workdir (default: all 1).')
  flags.DEFINE_string('split', None,
                      "Which scores_<split>.npz to fuse (default: the first run's eval_split).")
  flags.DEFINE_enum('scores', 'softmax', ['softmax', 'logits'],
                    'Fuse class probabilities or raw logits.')


def _aligned(streams: Sequence[dict], workdirs: Sequence[str]) -> list[dict]:
  """The streams reordered to the first one's sample order; names must agree."""
  reference = streams[0]
  names = list(reference['names'])
  aligned = [reference]
  for stream, workdir in zip(streams[1:], workdirs[1:]):
    position = {name: i for i, name in enumerate(stream['names'])}
    missing = [n for n in names if n not in position]
    if missing or len(position) != len(names):
      raise cli.InputError(
          f'{workdir} scored {len(position)} samples and {workdirs[0]} {len(names)}, '
          f'{len(missing)} of them not in both (e.g. {missing[:3]}); fuse evaluations '
          f'of the same split of the same dataset')
    order = np.asarray([position[n] for n in names])
    stream = {k: v[order] for k, v in stream.items()}
    if not np.array_equal(stream['labels'], reference['labels']):
      raise cli.InputError(f'{workdir} and {workdirs[0]} disagree on the labels of the same '
                       f'samples')
    if stream['logits'].shape != reference['logits'].shape:
      raise cli.InputError(f'{workdir} has {stream["logits"].shape[-1]} classes, '
                       f'{workdirs[0]} {reference["logits"].shape[-1]}')
    aligned.append(stream)
  return aligned


def _scores(workdir: str, split: str) -> dict:
  """The run's scores of `split`, or an InputError naming the splits it has scores of."""
  try:
    return workdir_lib.load_scores(workdir, split)
  except FileNotFoundError:
    have = workdir_lib.scored_splits(workdir)
    hint = (f'it has scores of {", ".join(have)} (--split)' if have else
            f'evaluate it first: python -m stbln_jax.main --mode=eval --workdir={workdir} '
            f'--split={split}')
    raise cli.InputError(f'{workdir_lib.scores_path(workdir, split)} not found; {hint}'
                         ) from None


def fuse(workdirs: Sequence[str], weights: Sequence[float] | None = None, *,
         split: str | None = None, scores: str = 'softmax') -> dict:
  """top-1, top-5 and mean class accuracy of each stream and of their weighted fusion.

  Returns:
    {'streams': [{'workdir', 'weight', 'top1', 'top5', 'mean_class_accuracy'}, ...],
     'fused': {'top1', 'top5', 'mean_class_accuracy'}, 'num_examples': N}.
  """
  if not workdirs:
    raise cli.InputError('name at least one workdir')
  try:
    weights = [1.0] * len(workdirs) if weights is None else [float(w) for w in weights]
  except ValueError as e:
    raise cli.InputError(f'weights must be numbers: {e}') from None
  if len(weights) != len(workdirs):
    raise cli.InputError(f'{len(weights)} weights for {len(workdirs)} workdirs')
  if scores not in ('softmax', 'logits'):
    raise cli.InputError(f"scores={scores!r} must be 'softmax' or 'logits'")
  if split is None:
    split = workdir_lib.load_config(workdirs[0]).eval_split
  streams = _aligned([_scores(w, split) for w in workdirs], workdirs)
  labels = streams[0]['labels']

  def score(stream):
    logits = stream['logits'].astype(np.float64)
    return metrics.softmax(logits) if scores == 'softmax' else logits

  def accuracies(s):
    cm = metrics.confusion_matrix(labels, s.argmax(axis=-1), s.shape[-1])
    return {'top1': float(metrics.topk_correct(s, labels, 1).mean()),
            'top5': float(metrics.topk_correct(s, labels, 5).mean()),
            'mean_class_accuracy': metrics.mean_class_accuracy(cm)}

  report = {'streams': [], 'num_examples': int(len(labels)), 'split': split}
  fused = 0.0
  for workdir, weight, stream in zip(workdirs, weights, streams):
    s = score(stream)
    fused = fused + weight * s
    report['streams'].append({'workdir': workdir, 'weight': weight, **accuracies(s)})
  report['fused'] = accuracies(fused)
  return report


def format_report(report: dict) -> str:
  lines = [f'{report["num_examples"]} samples of {report["split"]}']
  for s in report['streams']:
    lines.append(f'  weight {s["weight"]:g}  top-1 {100 * s["top1"]:6.2f}%  '
                 f'top-5 {100 * s["top5"]:6.2f}%  mean class {100 * s["mean_class_accuracy"]:6.2f}%'
                 f'  {s["workdir"]}')
  f = report['fused']
  lines.append(f'  fused     top-1 {100 * f["top1"]:6.2f}%  top-5 {100 * f["top5"]:6.2f}%  '
               f'mean class {100 * f["mean_class_accuracy"]:6.2f}%')
  return '\n'.join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  report = fuse(FLAGS.workdirs, FLAGS.weights, split=FLAGS.split, scores=FLAGS.scores)
  print(format_report(report))


if __name__ == '__main__':
  _define_flags()
  cli.run(main)
