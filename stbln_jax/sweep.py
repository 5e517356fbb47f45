r"""The paper's experiments as sweeps: Table I, Table II and Figs. 4-5, one run per member.

  python -m stbln_jax.sweep --sweep=table1 --config=configs/cv.py --workdir=runs/table1
  python -m stbln_jax.sweep --sweep=table2 --config=configs/demo.py --workdir=/tmp/t2 \
      --depths=1,2,3,4 --config.num_epochs=4
  python -m stbln_jax.sweep --sweep=fig4 --config=configs/cv.py --workdir=runs/fig4 \
      --emit=slurm > fig4.sbatch

Members:
  table1  the mixers (Â+M, Â+LLᵀ, U) at the config's depth, no aggregation;
  table2  the mixers × depths 1..L (the first k layers), no aggregation;
  fig4    the bilinear network aggregating at λ = 1..L, and without aggregation.

Each member is `python -m stbln_jax.main` in <workdir>/<member>, with the sweep's own
`--config.*` overrides and the member's. Run sequentially (the default), a member whose
eval_<split>.json exists is skipped and one with a checkpoint resumes; its output is
appended to <workdir>/<member>/train.log. `--emit=commands` prints the members' commands,
`--emit=slurm` an sbatch array script with one member per task; rerun with
`--collect_only` afterwards. The sweep then writes <workdir>/<sweep>.md and .csv (our
top-1 beside the paper's, parameters and FLOPs of each member; every accuracy in %) and
<sweep>.png.

A config that sets model.aggregate_at (configs/demo.py) is wrapped in a generated
<workdir>/sweep_config.py that unsets it (a flag cannot set a field to None), so the
Â-based mixers can run; λ is then set per member.
"""

import csv
import dataclasses
import json
import os
import shlex
import subprocess
import sys
from typing import Any, Sequence

from absl import app
from absl import flags
from absl import logging
import ml_collections
from ml_collections import config_flags

from stbln_jax import checkpoint
from stbln_jax import cli
from stbln_jax import models
from stbln_jax import paper_results
from stbln_jax import workdir as workdir_lib

SWEEPS = ('table1', 'table2', 'fig4')
TABLE_MIXERS = ('additive', 'symmetric', 'bilinear')

FLAGS = flags.FLAGS


def _define_flags():
  # Defined only when run as a program, so importing this module (tests, other
  # commands) never clashes with another command's flags of the same name.
  flags.DEFINE_enum('sweep', None, SWEEPS, 'Which experiment of the paper.')
  flags.DEFINE_string('workdir', None, 'Root directory: one subdirectory per member.')
  flags.DEFINE_enum('emit', None, ['commands', 'slurm'],
                    'Print the members as shell commands or as a SLURM array script instead '
                    'of running them.')
  flags.DEFINE_bool('collect_only', False, 'Run nothing; only collect the finished members.')
  flags.DEFINE_list('mixers', None,
                    f'table1/table2: the mixers (default: {",".join(TABLE_MIXERS)}).')
  flags.DEFINE_list('depths', None, 'table2: the depths (default: 1..L).')
  flags.DEFINE_list('lambdas', None,
                    "fig4: the λ values, 'none' for no aggregation (default: 1..L,none).")
  flags.DEFINE_list('slurm_options', ['--gres=gpu:1', '--time=24:00:00'],
                    '--emit=slurm: #SBATCH lines added to the script.')
  config_flags.DEFINE_config_file('config', None, 'Base config file (configs/*.py).',
                                  lock_config=True)


_SHIM_NAME = 'sweep_config.py'


@dataclasses.dataclass(frozen=True)
class Member:
  """One run of a sweep: its name (the subdirectory) and its config changes."""
  name: str
  mixer: str
  num_layers: int
  aggregate_at: int | None
  overrides: tuple[tuple[str, Any], ...]  # (config field, value), applied in order


def _parse_ints(values: Sequence[str] | None, default: Sequence[int], what: str,
                allow_none: bool = False) -> list:
  if values is None:
    return list(default)
  out = []
  for v in values:
    if allow_none and v.lower() == 'none':
      out.append(None)
    elif v.isdigit():
      out.append(int(v))
    else:
      raise app.UsageError(f'--{what}: {v!r} is not a positive integer'
                           + (" or 'none'" if allow_none else ''))
  return out


def members(sweep: str, config: ml_collections.ConfigDict, *,
            mixers: Sequence[str] | None = None, depths: Sequence[int] | None = None,
            lambdas: Sequence[int | None] | None = None) -> list[Member]:
  """The members of `sweep` for a base config (see the module docstring)."""
  total = len(config.model.channels)
  mixers = list(mixers or TABLE_MIXERS)
  if sweep == 'table1':
    k = config.model.num_layers
    return [Member(m, m, k, None, (('model.mixer', m),)) for m in mixers]
  if sweep == 'table2':
    depths = list(depths or range(1, total + 1))
    return [Member(f'{m}_L{k}', m, k, None, (('model.mixer', m), ('model.num_layers', k)))
            for m in mixers for k in depths]
  if sweep == 'fig4':
    k = config.model.num_layers
    lambdas = list(lambdas) if lambdas is not None else list(range(1, k + 1)) + [None]
    out = []
    for lam in lambdas:
      overrides = [('model.mixer', 'bilinear')]
      if lam is not None:
        overrides.append(('model.aggregate_at', lam))
      out.append(Member(f'lambda_{lam if lam is not None else "none"}', 'bilinear', k, lam,
                        tuple(overrides)))
    return out
  raise ValueError(f'unknown sweep {sweep!r}; choose one of {SWEEPS}')


def member_config(config: ml_collections.ConfigDict, member: Member) -> ml_collections.ConfigDict:
  """The config `member` trains with: the base config, λ unset, the member's changes."""
  cfg = ml_collections.ConfigDict(config.to_dict())  # unlocked copy
  cfg.model.aggregate_at = None
  for field, value in member.overrides:
    *path, key = field.split('.')
    node = cfg
    for p in path:
      node = node[p]
    node[key] = value
  return cfg


def _format_value(value: Any) -> str:
  """A value as `--config.<field>=` reads it back."""
  if isinstance(value, (tuple, list)):
    return '(' + ','.join(_format_value(v) for v in value) + (',)' if len(value) == 1 else ')')
  return str(value)


def member_command(member: Member, *, config_path: str, workdir: str,
                   base_overrides: Sequence[str] = ()) -> list[str]:
  """The training command of one member (argv, run from the repository root)."""
  return [sys.executable, '-m', 'stbln_jax.main', f'--config={config_path}',
          f'--workdir={os.path.join(workdir, member.name)}', *base_overrides,
          *(f'--config.{f}={_format_value(v)}' for f, v in member.overrides)]


def config_overrides(argv: Sequence[str]) -> list[str]:
  """The `--config.<field>=<value>` arguments of a command line, as `--config.f=v`."""
  out, i = [], 0
  while i < len(argv):
    arg = argv[i]
    if arg.startswith('--config.'):
      if '=' not in arg:
        if i + 1 >= len(argv):
          raise app.UsageError(f'{arg} has no value')
        arg = f'{arg}={argv[i + 1]}'
        i += 1
      out.append(arg)
    i += 1
  return out


def write_config_shim(config_path: str, workdir: str) -> str:
  """Writes <workdir>/sweep_config.py: `config_path`'s config with model.aggregate_at unset."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(os.path.abspath(workdir), _SHIM_NAME)
  source = (
      f'"""{os.path.abspath(config_path)} with model.aggregate_at unset (written by '
      f'stbln_jax.sweep)."""\n\n'
      'import importlib.util\n\n'
      f'_BASE = {os.path.abspath(config_path)!r}\n\n\n'
      'def get_config():\n'
      "  spec = importlib.util.spec_from_file_location('sweep_base_config', _BASE)\n"
      '  module = importlib.util.module_from_spec(spec)\n'
      '  spec.loader.exec_module(module)\n'
      '  config = module.get_config()\n'
      '  config.model.aggregate_at = None\n'
      '  return config\n')
  with open(path, 'w') as f:
    f.write(source)
  return path


@dataclasses.dataclass
class Plan:
  """A sweep ready to run: its members, their commands and where each one lives."""
  sweep: str
  workdir: str
  config: ml_collections.ConfigDict
  members: list[Member]
  commands: list[list[str]]

  def member_dir(self, member: Member) -> str:
    return os.path.join(self.workdir, member.name)

  def report_path(self, member: Member) -> str:
    return os.path.join(self.member_dir(member), f'eval_{self.config.eval_split}.json')


def make_plan(sweep: str, config: ml_collections.ConfigDict, config_path: str, workdir: str,
              base_overrides: Sequence[str] = (), **member_kwargs) -> Plan:
  """Members and commands of a sweep; prepares what the members share.

  The synthetic data of a demo config is built once under <workdir>/data for all.
  """
  workdir = os.path.abspath(workdir)
  base_overrides = list(base_overrides)
  config_path = os.path.abspath(config_path)
  if config.model.aggregate_at is not None:
    config_path = write_config_shim(config_path, workdir)
  if config.synthetic.enabled and config.data_dir is None:
    config = ml_collections.ConfigDict(config.to_dict())
    config.data_dir = os.path.join(workdir, 'data')
    base_overrides.append(f'--config.data_dir={config.data_dir}')
  ms = members(sweep, config, **member_kwargs)
  commands = [member_command(m, config_path=config_path, workdir=workdir,
                             base_overrides=base_overrides) for m in ms]
  return Plan(sweep, workdir, config, ms, commands)


def prepare_data(plan: Plan) -> None:
  """Builds a synthetic dataset once before the members run (they would each build it)."""
  if plan.config.synthetic.enabled:
    from stbln_jax import demo  # pylint: disable=g-import-not-at-top
    demo.prepare_data(plan.config, plan.workdir)


# ---- Running ------------------------------------------------------------------

def is_finished(plan: Plan, member: Member) -> bool:
  return os.path.exists(plan.report_path(member))


def has_checkpoint(plan: Plan, member: Member) -> bool:
  path = checkpoint.checkpoint_dir(plan.member_dir(member))
  return os.path.isdir(path) and any(name.isdigit() for name in os.listdir(path))


def run_members(plan: Plan) -> dict[str, str]:
  """Runs the unfinished members one after the other; {member: what happened}.

  'done' (finished before), 'trained', 'resumed' (from its checkpoint) or
  'failed (exit N, see LOG)'.
  """
  outcome = {}
  for member, command in zip(plan.members, plan.commands):
    if is_finished(plan, member):
      outcome[member.name] = 'done'
      continue
    resumed = has_checkpoint(plan, member)
    os.makedirs(plan.member_dir(member), exist_ok=True)
    log_path = os.path.join(plan.member_dir(member), 'train.log')
    logging.info('%s %s: %s', 'Resuming' if resumed else 'Training', member.name,
                 shlex.join(command))
    with open(log_path, 'a') as log:
      rc = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False).returncode
    if rc == 0 and is_finished(plan, member):
      outcome[member.name] = 'resumed' if resumed else 'trained'
    else:
      outcome[member.name] = f'failed (exit {rc}, see {log_path})'
      logging.error('%s failed with exit code %d; its log: %s', member.name, rc, log_path)
  return outcome


def emit_commands(plan: Plan) -> str:
  """The members' commands, one shell line each, run from the repository root."""
  lines = [f'cd {shlex.quote(os.getcwd())}']
  lines += [shlex.join(c) for c in plan.commands]
  return '\n'.join(lines) + '\n'


def emit_slurm(plan: Plan, options: Sequence[str] = ()) -> str:
  """An sbatch script: a job array with one member per task (finished ones exit at once)."""
  n = len(plan.members)
  lines = ['#!/bin/bash',
           f'#SBATCH --job-name=stbln_{plan.sweep}',
           f'#SBATCH --array=0-{n - 1}',
           f'#SBATCH --output={os.path.join(plan.workdir, "slurm-%A_%a.out")}',
           *(f'#SBATCH {o}' for o in options),
           f'# {plan.sweep}: {n} members under {plan.workdir}. Afterwards, collect with',
           f'# python -m stbln_jax.sweep --sweep={plan.sweep} --config=... '
           f'--workdir={plan.workdir} --collect_only',
           'set -e',
           f'cd {shlex.quote(os.getcwd())}',
           'case "$SLURM_ARRAY_TASK_ID" in']
  for i, (member, command) in enumerate(zip(plan.members, plan.commands)):
    lines.append(f'  {i})  # {member.name}')
    lines.append(f'    test -f {shlex.quote(plan.report_path(member))} && exit 0')
    lines.append(f'    {shlex.join(command)} ;;')
  lines += ['  *) echo "no member $SLURM_ARRAY_TASK_ID" >&2; exit 1 ;;', 'esac']
  return '\n'.join(lines) + '\n'


# ---- Collecting ----------------------------------------------------------------

def _benchmark(config) -> str | None:
  return paper_results.BENCHMARKS.get(config.dataset)


def collect(plan: Plan, outcome: dict[str, str] | None = None) -> list[dict]:
  """One row per member: its report's numbers (None if unfinished), the paper's, its cost."""
  from stbln_jax import flops  # pylint: disable=g-import-not-at-top  (imports JAX)
  benchmark = _benchmark(plan.config)
  rows = []
  for member in plan.members:
    row = {'sweep': plan.sweep, 'member': member.name, 'mixer': member.mixer,
           'num_layers': member.num_layers, 'aggregate_at': member.aggregate_at,
           'status': (outcome or {}).get(member.name), 'top1': None, 'final_top1': None,
           'top5': None, 'num_examples': None, 'step': None}
    if is_finished(plan, member):
      with open(plan.report_path(member)) as f:
        report = json.load(f)
      row.update({k: report[k] for k in ('top5', 'num_examples', 'step')})
      # The paper reports the best of the per-epoch evaluations; the final one is kept too.
      row['final_top1'] = report['top1']
      row['top1'] = report.get('best_epoch', {}).get('top1', report['top1'])
      row['status'] = row['status'] or 'done'
    else:
      row['status'] = row['status'] or ('unfinished' if has_checkpoint(plan, member)
                                        else 'not run')
    if plan.sweep == 'table1':
      row['paper_top1'] = paper_results.table1(member.mixer, benchmark)
      row['paper_cs'] = paper_results.table1(member.mixer, 'CS')
      row['paper_cv'] = paper_results.table1(member.mixer, 'CV')
    elif plan.sweep == 'table2':
      row['paper_top1'] = paper_results.table2(member.mixer, member.num_layers, benchmark)
    else:
      row['paper_top1'] = paper_results.fig4(member.aggregate_at, benchmark)
    model = _member_model(plan, member)
    cost = (flops.model_cost(model, plan.config.num_frames) if model is not None
            else dict.fromkeys(('params', 'gflops', 'gmacs')))
    row.update({k: cost[k] for k in ('params', 'gflops', 'gmacs')})
    rows.append(row)
  if plan.sweep == 'fig4':
    last = next((r for r in rows if r['aggregate_at'] == plan.config.model.num_layers), None)
    for r in rows:
      r['speedup_vs_last_layer'] = (last['gflops'] / r['gflops']
                                    if last and last['gflops'] and r['gflops'] else None)
      r['paper_speedup'] = paper_results.FIG5_SPEEDUP.get(r['aggregate_at'])
      r['paper_gflops'] = (paper_results.FIG5_GFLOPS.get(r['aggregate_at'])
                           if plan.config.model.num_layers == 10 else None)
  return rows


def _member_model(plan: Plan, member: Member) -> ml_collections.ConfigDict | None:
  """The member's model: as its run saved it (the dataset's fields filled in), else as
  the plan gives it; None while fields the dataset decides are unknown."""
  path = os.path.join(plan.member_dir(member), workdir_lib.CONFIG_FILE)
  model = (workdir_lib.load_config(plan.member_dir(member)).model if os.path.exists(path)
           else member_config(plan.config, member).model)
  return None if any(model.get(f) is None for f in models.DATASET_FIELDS) else model


def _count(x: int | None) -> str:
  return '—' if x is None else f'{x:,}'


def _pct(x: float | None) -> str:
  return '—' if x is None else f'{100 * x:.2f}'


def _num(x: float | None, fmt: str = '.2f') -> str:
  return '—' if x is None else format(x, fmt)


def _gflops(x: float | None) -> str:
  return '—' if x is None else (f'{x:.2f}' if x >= 1 else f'{x:.3g}')


def _markdown(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  lines += ['| ' + ' | '.join(r) + ' |' for r in body]
  return '\n'.join(lines) + '\n'


def format_markdown(plan: Plan, rows: list[dict]) -> str:
  """The table laid out as the paper's (top-1 in %; the paper's figures are NTU RGB+D 60)."""
  cfg = plan.config
  benchmark = _benchmark(cfg)
  where = f'{cfg.dataset}/{cfg.eval_split}' + (' (synthetic data)' if cfg.synthetic.enabled
                                               else '')
  cost_note = f'forward pass of one sample at T={cfg.num_frames}, M={cfg.model.num_persons}'
  paper = 'paper' if benchmark else 'paper (CV)'
  if plan.sweep == 'table1':
    title = f'Table I: top-1 (%) on {where}; paper: NTU RGB+D 60 joints, CS and CV'
    header = ['Attention/Mapping', 'ours', 'paper CS', 'paper CV', 'params', 'GFLOPs', 'status']
    body = [[paper_results.MIXER_LABELS[r['mixer']], _pct(r['top1']), _num(r['paper_cs']),
             _num(r['paper_cv']), _count(r['params']), _gflops(r['gflops']), r['status']]
            for r in rows]
  elif plan.sweep == 'table2':
    title = (f'Table II: top-1 (%) on {where} by depth; paper: NTU RGB+D 60 CV joints'
             + ('' if benchmark == 'CV' else ' (another benchmark: no paper column values)'))
    mixers = list(dict.fromkeys(r['mixer'] for r in rows))
    depths = sorted(set(r['num_layers'] for r in rows))
    by_key = {(r['mixer'], r['num_layers']): r for r in rows}
    header = ['#Layers']
    for m in mixers:
      label = paper_results.MIXER_LABELS[m]
      header += [f'{label} ours', f'{label} paper']
    header += ['GFLOPs (' + ' / '.join(paper_results.MIXER_LABELS[m] for m in mixers) + ')']
    body = []
    for k in depths:
      line, costs = [str(k)], []
      for m in mixers:
        r = by_key.get((m, k))
        line += [_pct(r and r['top1']), _num(r and r['paper_top1'])]
        costs.append(_gflops(r and r['gflops']))
      line.append(costs[0] if len(set(costs)) == 1 else ' / '.join(costs))
      body.append(line)
    unfinished = [r['member'] for r in rows if r['top1'] is None]
    if unfinished:
      title += f'; not finished: {", ".join(unfinished)}'
  else:
    best = paper_results.FIG4_BEST.get(benchmark or 'CV')
    title = (f'Figs. 4-5: the bilinear network aggregating at layer λ, top-1 (%) on {where}; '
             f'paper: NTU RGB+D 60 {benchmark or "CV"} (the text gives its best point, '
             f'λ = {best[0]}: {best[1]}) and FLOPs')
    header = ['λ', 'ours', paper, 'params', 'GFLOPs', 'GMACs', '× cheaper than λ=L',
              'paper ×', 'paper G', 'status']
    body = [['none' if r['aggregate_at'] is None else str(r['aggregate_at']), _pct(r['top1']),
             _num(r['paper_top1']), _count(r['params']), _gflops(r['gflops']), _gflops(r['gmacs']),
             _num(r['speedup_vs_last_layer']), _num(r['paper_speedup']),
             _num(r['paper_gflops']), r['status']] for r in rows]
  return (f'{title}.\nOurs: the best per-epoch evaluation of each run, as the paper reports '
          f'(the final one is in the CSV).\n'
          f'FLOPs: {cost_note}, XLA cost analysis (1 multiply-add = 2 FLOPs).\n\n') + \
      _markdown(header, body)


# Our accuracies, fractions in the rows; the CSV gives them in % as the paper's.
_FRACTIONS = ('top1', 'final_top1', 'top5')


def write_csv(rows: list[dict], path: str) -> None:
  """One row per member, every accuracy in % (ours and the paper's)."""
  fields = list(dict.fromkeys(k for r in rows for k in r))
  with open(path, 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=fields)
    writer.writeheader()
    for r in rows:
      writer.writerow({k: '' if r.get(k) is None else
                       round(100 * r[k], 4) if k in _FRACTIONS else r[k] for k in fields})


def plot(plan: Plan, rows: list[dict], path: str) -> bool:
  """Table II: accuracy vs depth per mixer; Figs. 4-5: accuracy and FLOPs vs λ. False if none."""
  if plan.sweep == 'table1':
    return False
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  from matplotlib import ticker  # pylint: disable=g-import-not-at-top
  if plan.sweep == 'table2':
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, m in enumerate(dict.fromkeys(r['mixer'] for r in rows)):
      color = f'C{i}'
      mine = sorted((r['num_layers'], 100 * r['top1']) for r in rows
                    if r['mixer'] == m and r['top1'] is not None)
      label = paper_results.MIXER_LABELS[m]
      if mine:
        ax.plot(*zip(*mine), 'o-', color=color, label=f'{label} (ours)')
      theirs = sorted((r['num_layers'], r['paper_top1']) for r in rows
                      if r['mixer'] == m and r['paper_top1'] is not None)
      if theirs:
        ax.plot(*zip(*theirs), 'x--', color=color, alpha=0.6, label=f'{label} (paper)')
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    ax.set_xlabel('number of layers')
    ax.set_ylabel('top-1 (%)')
    ax.set_title('Table II: accuracy vs depth')
    ax.legend(fontsize=8)
  else:
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    lam_rows = [r for r in rows if r['aggregate_at'] is not None]
    none_rows = [r for r in rows if r['aggregate_at'] is None]
    mine = [(r['aggregate_at'], 100 * r['top1']) for r in lam_rows if r['top1'] is not None]
    if mine:
      ax.plot(*zip(*mine), 'o-', label='ours')
    for r in none_rows:
      if r['top1'] is not None:
        ax.axhline(100 * r['top1'], ls=':', color='gray', label='ours, no aggregation')
    theirs = [(r['aggregate_at'], r['paper_top1']) for r in lam_rows if r['paper_top1']]
    if theirs:
      ax.plot(*zip(*theirs), 'r*', ms=12, label='paper (best λ)')
    ax.set_xlabel('λ (layer that aggregates the joints)')
    ax.set_ylabel('top-1 (%)')
    ax.set_title('Fig. 4: accuracy vs λ')
    ax.legend(fontsize=8)
    ax2.plot([r['aggregate_at'] for r in lam_rows], [r['gflops'] for r in lam_rows], 'o-',
             label='ours (GFLOPs)')
    last = plan.config.model.num_layers
    for r in none_rows:
      ax2.plot([last + 1], [r['gflops']], 'ko', label='ours, no aggregation')
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    if none_rows:
      ticks = list(range(1, last + 2))
      ax2.set_xticks(ticks, [str(t) for t in ticks[:-1]] + ['none'])
    else:
      ax2.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    ax2.set_xlabel('λ')
    ax2.set_ylabel('GFLOPs per sample')
    ax2.set_title('Fig. 5: FLOPs vs λ')
    ax2.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return True


def write_results(plan: Plan, rows: list[dict]) -> dict[str, str]:
  """Writes <workdir>/<sweep>.md, .csv and (Table II, Fig. 4) .png; their paths."""
  base = os.path.join(plan.workdir, plan.sweep)
  paths = {'md': base + '.md', 'csv': base + '.csv'}
  with open(paths['md'], 'w') as f:
    f.write(format_markdown(plan, rows))
  write_csv(rows, paths['csv'])
  if plot(plan, rows, base + '.png'):
    paths['png'] = base + '.png'
  return paths


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if FLAGS.sweep is None or FLAGS.workdir is None or FLAGS.config is None:
    raise app.UsageError('--sweep, --config and --workdir are required')
  config = FLAGS.config
  config_path = config_flags.get_config_filename(FLAGS['config'])
  for m in FLAGS.mixers or ():
    if m not in paper_results.MIXER_LABELS:
      raise app.UsageError(f'--mixers: {m!r} is not a mixer; choose from '
                           f'{", ".join(paper_results.MIXER_LABELS)}')
  total = len(config.model.channels)
  plan = make_plan(
      FLAGS.sweep, config, config_path, FLAGS.workdir, config_overrides(sys.argv[1:]),
      mixers=FLAGS.mixers,
      depths=_parse_ints(FLAGS.depths, range(1, total + 1), 'depths'),
      lambdas=(None if FLAGS.lambdas is None else
               _parse_ints(FLAGS.lambdas, (), 'lambdas', allow_none=True)))
  if FLAGS.emit == 'commands':
    prepare_data(plan)
    print(emit_commands(plan), end='')
    return
  if FLAGS.emit == 'slurm':
    prepare_data(plan)
    print(emit_slurm(plan, FLAGS.slurm_options), end='')
    return
  outcome = None
  if not FLAGS.collect_only:
    prepare_data(plan)
    outcome = run_members(plan)
    for name, what in outcome.items():
      print(f'{name}: {what}')
  rows = collect(plan, outcome)
  paths = write_results(plan, rows)
  print(open(paths['md']).read())
  print('Wrote ' + ', '.join(paths.values()))
  failed = [name for name, what in (outcome or {}).items() if what.startswith('failed')]
  if failed:
    sys.exit(f'error: {len(failed)} member(s) failed: {", ".join(failed)} (see their train.log)')


if __name__ == '__main__':
  _define_flags()
  cli.run(main)
