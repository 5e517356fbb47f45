"""Sweeps on tiny synthetic members: the table, skipping, resuming a killed member, SLURM.

One sweep of two members (Table II at depths 1 and 2, the additive mixer, on the demo
config, which sets λ and so also exercises the generated config) is run through the
command line; its first member is killed after its first checkpoint beforehand.
"""

import csv
import json
import os
import pathlib
import re
import shlex
import signal
import subprocess
import sys
import time

import pytest

from stbln_jax import paper_results
from stbln_jax import sweep

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY = [
    '--config.synthetic.num_subjects=2', '--config.synthetic.num_classes=4',
    '--config.num_frames=16', '--config.model.channels=(8,8,8,8)',
    '--config.batch_size=8', '--config.base_batch_size=8', '--config.eval_batch_size=16',
    # Many short epochs with no evaluation before the last: a member lives long enough
    # after its first checkpoint to be killed half-way.
    '--config.num_epochs=20', '--config.eval_every_epochs=100', '--config.lr_decay_epochs=(15,18)',
    '--config.log_every_steps=1000',
]


def run_sweep(root, *extra):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  env.pop('XLA_FLAGS', None)  # members run on one CPU device, as a user's would
  result = subprocess.run(
      [sys.executable, '-m', 'stbln_jax.sweep', '--sweep=table2', '--config=configs/demo.py',
       f'--workdir={root}', '--mixers=additive', '--depths=1,2', *TINY, *extra],
      cwd=REPO, env=env, capture_output=True, text=True, check=False, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stdout


def emitted_commands(text):
  lines = text.strip().splitlines()
  assert lines[0].startswith('cd ')
  return [shlex.split(line) for line in lines[1:]]


@pytest.fixture(scope='module')
def swept(tmp_path_factory):
  root = tmp_path_factory.mktemp('sweep')
  commands = emitted_commands(run_sweep(root, '--emit=commands'))  # also builds the data
  member_dir = root / 'additive_L1'
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  env.pop('XLA_FLAGS', None)
  # Kill the first member once it has saved a checkpoint.
  with open(os.devnull, 'w') as devnull:
    process = subprocess.Popen(commands[0], cwd=REPO, env=env, stdout=devnull,
                               stderr=devnull)
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
      ckpt = member_dir / 'checkpoints'
      if ckpt.is_dir() and any(p.name.isdigit() for p in ckpt.iterdir()):
        break
      time.sleep(0.05)
    assert process.poll() is None, 'the member ended before it could be killed'
    process.send_signal(signal.SIGKILL)
    process.wait()
  killed_at = sorted(int(p.name) for p in (member_dir / 'checkpoints').iterdir()
                     if p.name.isdigit())
  first = run_sweep(root)
  logs = {name: (root / name / 'train.log').read_text() for name in ('additive_L1', 'additive_L2')}
  second = run_sweep(root)
  logs_after = {name: (root / name / 'train.log').read_text() for name in logs}
  return dict(root=root, commands=commands, killed_at=killed_at, first=first, second=second,
              logs=logs, logs_after=logs_after)


def table_rows(markdown):
  return [line for line in markdown.splitlines() if re.match(r'\| \d+ \|', line)]


def test_sweep_table_has_both_members_with_ours_and_the_papers(swept):
  rows = table_rows(swept['first'])
  assert [r.split('|')[1].strip() for r in rows] == ['1', '2']
  for depth, row in zip((1, 2), rows):
    cells = [c.strip() for c in row.strip('|').split('|')]
    ours, paper = float(cells[1]), float(cells[2])
    assert 0 <= ours <= 100
    assert paper == paper_results.TABLE2_CV['additive'][depth - 1]
  with open(swept['root'] / 'table2.csv') as f:
    csv_rows = list(csv.DictReader(f))
  assert [r['member'] for r in csv_rows] == ['additive_L1', 'additive_L2']
  assert all(float(r['gflops']) > 0 and int(r['params']) > 0 for r in csv_rows)
  # The deeper network costs more.
  assert float(csv_rows[1]['gflops']) > float(csv_rows[0]['gflops'])
  assert {r['status'] for r in csv_rows} == {'done'}  # the CSV of the second call
  # One unit: our accuracies in % as the paper's.
  for depth, (row, csv_row) in enumerate(zip(rows, csv_rows), start=1):
    report = json.loads((swept['root'] / f'additive_L{depth}' / 'eval_test.json').read_text())
    assert float(csv_row['final_top1']) == pytest.approx(100 * report['top1'])
    assert float(csv_row['top1']) == pytest.approx(float(row.split('|')[2]), abs=0.005)
    assert float(csv_row['paper_top1']) == paper_results.TABLE2_CV['additive'][depth - 1]
  png = (swept['root'] / 'table2.png').read_bytes()
  assert png.startswith(b'\x89PNG\r\n\x1a\n')


def test_killed_member_resumes_and_second_call_runs_nothing(swept):
  assert swept['killed_at'], 'the killed member left no checkpoint'
  log = swept['logs']['additive_L1']
  assert f'Resumed from step {swept["killed_at"][-1]}' in log
  assert 'Resumed' not in swept['logs']['additive_L2']
  assert 'additive_L1: resumed' in swept['first']
  assert 'additive_L2: trained' in swept['first']
  # Both finished, so the second call changes no log and reports both as done.
  assert swept['logs_after'] == swept['logs']
  assert 'additive_L1: done' in swept['second'] and 'additive_L2: done' in swept['second']
  with open(swept['root'] / 'table2.csv') as f:
    assert [r['status'] for r in csv.DictReader(f)] == ['done', 'done']


def test_slurm_array_runs_one_member_per_task_with_the_same_commands(swept):
  script = run_sweep(swept['root'], '--emit=slurm', '--slurm_options=--time=1:00:00')
  assert '#SBATCH --array=0-1' in script
  assert '#SBATCH --time=1:00:00' in script
  tasks = re.findall(r'^  (\d+)\)  # (\S+)\n    test -f (\S+) && exit 0\n    (.+) ;;$',
                     script, re.M)
  assert [(int(i), name) for i, name, _, _ in tasks] == [(0, 'additive_L1'),
                                                         (1, 'additive_L2')]
  assert [shlex.split(cmd) for *_, cmd in tasks] == swept['commands']
  for _, name, report, _ in tasks:
    assert report == str(swept['root'] / name / 'eval_test.json')
  # Each command trains its own member directory.
  for (_, name, _, _), command in zip(tasks, swept['commands']):
    assert f'--workdir={swept["root"] / name}' in command
  # The script is valid bash.
  subprocess.run(['bash', '-n'], input=script, text=True, check=True)


def test_members_of_each_sweep():
  from configs import cv
  config = cv.get_config()
  t1 = sweep.members('table1', config)
  assert [m.name for m in t1] == ['additive', 'symmetric', 'bilinear']
  t2 = sweep.members('table2', config)
  assert len(t2) == 30 and t2[0].name == 'additive_L1' and t2[-1].name == 'bilinear_L10'
  fig4 = sweep.members('fig4', config)
  assert [m.aggregate_at for m in fig4] == list(range(1, 11)) + [None]
  member_cfg = sweep.member_config(config, fig4[5])
  assert (member_cfg.model.mixer, member_cfg.model.aggregate_at) == ('bilinear', 6)
  assert sweep.member_config(config, t2[3]).model.num_layers == 4
  with pytest.raises(ValueError, match='unknown sweep'):
    sweep.members('table3', config)


def test_collected_tables_before_any_member_ran(tmp_path):
  from configs import cv
  config = cv.get_config()
  config.model.channels = (8,) * 10
  config.num_frames = 16
  fig4 = sweep.make_plan('fig4', config, str(REPO / 'configs' / 'cv.py'), str(tmp_path))
  rows = sweep.collect(fig4)
  assert [r['status'] for r in rows] == ['not run'] * 11
  by_lambda = {r['aggregate_at']: r for r in rows}
  assert by_lambda[10]['speedup_vs_last_layer'] == pytest.approx(1.0)
  assert by_lambda[1]['gflops'] < by_lambda[10]['gflops'] < by_lambda[None]['gflops']
  paths = sweep.write_results(fig4, rows)
  table = open(paths['md']).read()
  lines = {line.split('|')[1].strip(): line for line in table.splitlines()
           if line.startswith('| ') and not line.startswith('| λ')}
  assert '| 2.78 |' in lines['6'] and '| 2.14 |' in lines['7']
  assert '| 24.59 |' in lines['10'] and '| 24.93 |' in lines['none']
  assert '93.06' in lines['6'] and '93.06' not in lines['7']  # Fig. 4's best CV point
  assert open(paths['png'], 'rb').read().startswith(b'\x89PNG')

  table1 = sweep.make_plan('table1', config, str(REPO / 'configs' / 'cv.py'), str(tmp_path))
  text = sweep.format_markdown(table1, sweep.collect(table1))
  assert '| Â+LLᵀ | — | 87.14 | 93.86 |' in text
