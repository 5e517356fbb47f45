r"""Every view-3 evaluation input of the full NW-UCLA set against the step-by-step reference.

    python -m benchmarks.nw_ucla_inputs --manual_dir=<folder of all_sqe/*.json> \
        --data_dir=<data_dir holding the built nw_ucla records>

The tests check this on the fifteen clips in tests/data/nw_ucla; this is the same check
on all 464 test clips (the set is not a test dependency). It prints, per stream, the
number of clips compared and the largest absolute difference to tests/nw_ucla_reference.py.
"""

import json
import pathlib
import sys

from absl import app
from absl import flags
import numpy as np

from configs import ucla
from stbln_jax import cli
from stbln_jax import input_pipeline

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / 'tests'))
import nw_ucla_reference  # noqa: E402  pylint: disable=wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_string('manual_dir', None, 'Folder of the NW-UCLA json files (all_sqe).',
                    required=True)
flags.DEFINE_string('data_dir', None, 'TFDS data_dir holding the built nw_ucla records.',
                    required=True)


def largest_difference(stream: str, manual_dir: pathlib.Path, data_dir: str):
  """(clips compared, max |ours - reference|) over the test split of one stream."""
  config = ucla.get_config(stream)
  config.data_dir = data_dir
  paths = {path.stem: path for path in manual_dir.rglob('*.json')}
  worst, count = 0.0, 0
  for batch in input_pipeline.eval_batches(config, process_index=0, process_count=1):
    names = input_pipeline.decode_names(batch['name'])
    for name, x, valid in zip(names, batch['skeleton'], batch['mask']):
      if not valid:
        continue
      if name not in paths:
        raise cli.InputError(f'--manual_dir={manual_dir}: no {name}.json, a clip of the records')
      path = paths[name]
      expected = nw_ucla_reference.eval_input(json.loads(path.read_text())['skeletons'],
                                              stream)
      worst = max(worst, float(np.abs(x[:, 0] - expected).max()))
      count += 1
  return count, worst


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  cli.show_only_own_info_logs()
  manual_dir = pathlib.Path(FLAGS.manual_dir)
  if not manual_dir.is_dir():
    raise cli.InputError(f'--manual_dir={manual_dir}: not a folder')
  print(f'{"stream":8} {"clips":>6} {"max |ours - reference|":>24}')
  for stream in ('joint', 'bone'):
    count, worst = largest_difference(stream, manual_dir, FLAGS.data_dir)
    print(f'{stream:8} {count:6d} {worst:24.3g}')


if __name__ == '__main__':
  cli.run(main)
