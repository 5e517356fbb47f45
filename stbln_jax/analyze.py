r"""What a trained run's spatial mixers learned: the paper's two observations, measured.

  python -m stbln_jax.analyze --workdir=runs/cv_symmetric
  python -m stbln_jax.analyze --workdir=runs/cv_bilinear --checkpoint_step=best

Writes <workdir>/analysis/report.md and one PNG per layer: per partition p, heatmaps of
Â_p, the learned matrix (M_p, L_p L_pᵀ or U_p) and the effective U_p the layer applies
(Eqs. 1-4). The report's table gives, per layer and partition (and for Σ_p U_p):
  - the asymmetry index ‖X − Xᵀ‖_F / ‖X‖_F of the learned and the effective matrix
    (Section IV: unconstrained attention ends asymmetric; L Lᵀ is symmetric by design);
  - how far the effective matrix is from Â, ‖U_p − Â_p‖_F / ‖Â_p‖_F (Section V: Â serves
    only as an initialisation; for the bilinear mixer, which never sees Â, the same
    distance is the reference);
and, for a layer that aggregates joints (V_out < V_in, layer λ), which joints each new
node draws on. Â and the joint names are those of the run's skeleton layout
(`config.model.layout`, or a layout file's copied from its dataset; default 'ntu25'); the
heatmaps label every row and column with its joint's name.
"""

import dataclasses
import os
import re
from typing import Any

from absl import app
from absl import flags
import numpy as np

from stbln_jax import cli
from stbln_jax import graph
from stbln_jax import mixers
from stbln_jax import models
from stbln_jax.data import layouts

FLAGS = flags.FLAGS


def _define_flags():
  # Only when run as a program: `stbln_jax.sweep` and `stbln_jax.main` also define --workdir.
  flags.DEFINE_string('workdir', None, 'The --workdir of a training run.')
  from stbln_jax import checkpoint  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string('checkpoint_step', None, checkpoint.STEP_HELP)
  flags.DEFINE_string('out', None, 'Output directory (default: <workdir>/analysis).')
  flags.DEFINE_integer('top_joints', 5, 'Joints listed per aggregated node.')


def load_run(workdir: str, step: int | str | None = None) -> tuple[Any, dict, int]:
  """(config, params, step) of a run's checkpoint: the one place that reads a run."""
  from stbln_jax import checkpoint, sharding, workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  config = workdir_lib.load_config(workdir)
  mesh = sharding.make_mesh()
  variables, _, step = checkpoint.restore_variables(workdir, sharding.replicated(mesh), step)
  params = {k: v for k, v in variables['params'].items()}
  return config, params, step


# ---- The measures -------------------------------------------------------------

def asymmetry_index(x: np.ndarray) -> float:
  """‖X − Xᵀ‖_F / ‖X‖_F of a square matrix: 0 if symmetric, 2 if antisymmetric.

  A zero matrix counts as symmetric (0).
  """
  x = np.asarray(x, np.float64)
  if x.ndim != 2 or x.shape[0] != x.shape[1]:
    raise ValueError(f'asymmetry needs a square matrix, got shape {x.shape}')
  norm = np.linalg.norm(x)
  return 0.0 if norm == 0 else float(np.linalg.norm(x - x.T) / norm)


def relative_distance(x: np.ndarray, reference: np.ndarray) -> float:
  """‖X − R‖_F / ‖R‖_F."""
  x, reference = np.asarray(x, np.float64), np.asarray(reference, np.float64)
  return float(np.linalg.norm(x - reference) / np.linalg.norm(reference))


@dataclasses.dataclass
class LayerMatrices:
  """One layer's node maps, each (P, V_out, V_in), and the layout of its input joints."""
  layer: int
  mixer: str
  learned_name: str            # 'M', 'LLᵀ' or 'U'
  learned: np.ndarray
  effective: np.ndarray        # the U_p the layer applies
  a_hat: np.ndarray | None     # None for the bilinear mixer
  layout: str | layouts.Layout = 'ntu25'

  def joint_names(self) -> tuple[str, ...]:
    """Names of the V_in input nodes: the layout's joints, or 'node k' if V differs."""
    v_in = self.effective.shape[-1]
    names = layouts.get_layout(self.layout).joint_names
    return names if len(names) == v_in else tuple(f'node {j + 1}' for j in range(v_in))

  def reference(self) -> np.ndarray | None:
    """Â of the layer, or for the bilinear mixer the layout's Â where the shapes fit."""
    if self.a_hat is not None:
      return self.a_hat
    a_hat = graph.adjacency(self.layout)
    return a_hat if a_hat.shape == self.effective.shape else None


def layer_matrices(mixer: str, layer: int, mixer_params: dict,
                   a_hat: np.ndarray | None,
                   layout: str | layouts.Layout = 'ntu25') -> LayerMatrices:
  """The learned and effective matrices of one mixer's parameters (Eqs. 1-4)."""
  if 'U' in mixer_params:
    u = np.asarray(mixer_params['U'], np.float32)
    return LayerMatrices(layer, 'bilinear', 'U', u, u, None, layout)
  if 'L' in mixer_params:
    llt = np.asarray(mixers.symmetric_attention(np.asarray(mixer_params['L'])))
    return LayerMatrices(layer, 'symmetric', 'LLᵀ', llt,
                         np.asarray(mixers.symmetric_u(a_hat, np.asarray(mixer_params['L']))),
                         a_hat, layout)
  if 'M' in mixer_params:
    m = np.asarray(mixer_params['M'], np.float32)
    if mixer == 'multiplicative':
      return LayerMatrices(layer, mixer, 'M', m, np.asarray(mixers.multiplicative_u(a_hat, m)),
                           a_hat, layout)
    return LayerMatrices(layer, 'additive', 'M', m, np.asarray(mixers.additive_u(a_hat, m)),
                         a_hat, layout)
  raise ValueError(f'layer {layer}: mixer parameters {sorted(mixer_params)} hold none of '
                   f'U, L, M')


def network_matrices(config, params: dict) -> list[LayerMatrices]:
  """Every layer with a spatial mixer ('layer_<i>/mixer'), in layer order.

  Layers after λ have no node map (Fig. 3, 'lean') or a 1×1 one ('released'): left out.
  """
  mixer = config.model.mixer
  layout = models.layout_of(config.model)
  a_hat = None
  if mixer != 'bilinear':
    a_hat = graph.adjacency(layout, config.model.get('adjacency_normalization', 'mean'))
  layers = []
  for key, value in params.items():
    match = re.fullmatch(r'layer_(\d+)', key)
    if match and 'mixer' in value:
      lm = layer_matrices(mixer, int(match.group(1)), dict(value['mixer']), a_hat, layout)
      if lm.effective.shape[-1] > 1:  # one node in, nothing to mix
        layers.append(lm)
  return sorted(layers, key=lambda l: l.layer)


def layer_rows(lm: LayerMatrices) -> list[dict]:
  """The report's table rows of one layer: each partition, then Σ_p (square maps only)."""
  p, v_out, v_in = lm.effective.shape
  if v_out != v_in:
    return []
  reference = lm.reference()
  parts = [(str(i), lm.learned[i], lm.effective[i],
            None if reference is None else reference[i]) for i in range(p)]
  parts.append(('Σ', lm.learned.sum(0), lm.effective.sum(0),
                None if reference is None else reference.sum(0)))
  return [{
      'layer': lm.layer, 'partition': name,
      'asymmetry_learned': asymmetry_index(learned),
      'asymmetry_effective': asymmetry_index(effective),
      'asymmetry_a_hat': None if a is None else asymmetry_index(a),
      'distance_from_a_hat': None if a is None else relative_distance(effective, a),
  } for name, learned, effective, a in parts]


def aggregated_nodes(lm: LayerMatrices, top: int = 5) -> list[dict]:
  """For a layer with V_out < V_in: per new node and partition, the joints with most weight."""
  p, v_out, v_in = lm.effective.shape
  if v_out >= v_in:
    return []
  names = lm.joint_names()
  out = []
  for node in range(v_out):
    for part in range(p):
      w = lm.effective[part, node]
      order = np.argsort(-np.abs(w))[:top]
      share = np.abs(w) / max(np.abs(w).sum(), 1e-30)
      out.append({'layer': lm.layer, 'node': node, 'partition': part,
                  'joints': [(names[j], float(w[j]), float(share[j])) for j in order]})
  return out


# ---- Pictures -----------------------------------------------------------------

def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


# Inches per joint of a heatmap's side (room for its name), and the least a figure
# is wide: it stays legible at the report's width.
_INCHES_PER_JOINT = 0.17
_MIN_WIDTH = 7.0
_DPI = 110


def plot_layer(lm: LayerMatrices, path: str) -> None:
  """One PNG of `layer_figure`."""
  plt = _pyplot()
  fig = layer_figure(lm)
  fig.savefig(path, dpi=_DPI)
  plt.close(fig)


def layer_figure(lm: LayerMatrices):
  """A row per partition; Â_p, the learned matrix and the effective U_p, their rows and
  columns labelled with the joints' names.

  A layer that aggregates (V_out < V_in) shows its weights per input joint as bars.
  """
  plt = _pyplot()
  p, v_out, v_in = lm.effective.shape
  names = lm.joint_names()
  if v_out < v_in:
    fig, axes = plt.subplots(p, 1, figsize=(max(_MIN_WIDTH, 0.3 * v_in + 1), 2.4 * p),
                             squeeze=False)
    for part in range(p):
      ax = axes[part, 0]
      for node in range(v_out):
        ax.bar(np.arange(v_in) + node / (v_out + 1), lm.effective[part, node],
               width=1 / (v_out + 1), label=f'node {node + 1}')
      ax.set_xticks(np.arange(v_in))
      ax.set_xticklabels(names, rotation=70, fontsize=7)
      ax.set_title(f'layer {lm.layer}, partition {part}: U_p weights per joint', fontsize=9)
    fig.tight_layout()
    return fig
  columns = []
  if lm.a_hat is not None:
    columns.append(('Â_p', lm.a_hat))
  columns.append((f'learned {lm.learned_name}', lm.learned))
  if lm.mixer != 'bilinear':
    columns.append(('effective U_p', lm.effective))
  side = max(3.4, _INCHES_PER_JOINT * v_in + 2.0)
  fig, axes = plt.subplots(p, len(columns),
                           figsize=(max(_MIN_WIDTH, side * len(columns)), side * p),
                           squeeze=False)
  ticks = np.arange(v_in)
  for part in range(p):
    for c, (title, mats) in enumerate(columns):
      ax = axes[part, c]
      m = mats[part]
      bound = float(np.max(np.abs(m))) or 1.0
      image = ax.imshow(m, cmap='RdBu_r', vmin=-bound, vmax=bound)
      ax.set_title(f'{title}, p={part}', fontsize=9)
      ax.set_xlabel('input joint', fontsize=7)
      ax.set_ylabel('output joint', fontsize=7)
      ax.set_xticks(ticks, names, rotation=90)
      ax.set_yticks(ticks, names)
      ax.tick_params(labelsize=5)
      fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04).ax.tick_params(labelsize=6)
  fig.suptitle(f'layer {lm.layer} ({lm.mixer})', fontsize=10)
  fig.tight_layout()
  return fig


# ---- The report ---------------------------------------------------------------

def _f(x: float | None) -> str:
  return '—' if x is None else f'{x:.3f}'


def write_report(config, params: dict, out_dir: str, *, title: str = '',
                 top: int = 5) -> str:
  """Writes report.md and the layer PNGs into `out_dir`; returns the report's path."""
  os.makedirs(out_dir, exist_ok=True)
  layers = network_matrices(config, params)
  if not layers:
    raise ValueError('the parameters hold no layer_<i>/mixer: nothing to analyse')
  v = layers[0].effective.shape[-1]
  layout = models.layout_of(config.model).name
  lines = [f'# Spatial matrices of {title or "a trained network"}', '',
           f'Mixer: `{config.model.mixer}` ({len(layers)} layers with a node map; '
           f'λ = {config.model.aggregate_at}; layout `{layout}`). Asymmetry ‖X − Xᵀ‖_F / '
           f'‖X‖_F: 0 when symmetric, √2 = 1.414 for a directed graph with no edge both ways '
           f'(Â\'s inward and outward partitions), about {np.sqrt(2 * (v - 1) / v):.3f} for '
           f'{v}×{v} independent random entries; distance ‖U_p − Â_p‖_F / ‖Â_p‖_F of the '
           f'effective matrix from Â'
           + (f' (Â of the {layout} graph for reference: this mixer never uses it).'
              if config.model.mixer == 'bilinear' else '.'), '',
           '| layer | partition | asymmetry of learned | asymmetry of effective '
           '| asymmetry of Â | distance from Â |', '|---|---|---|---|---|---|']
  for lm in layers:
    for r in layer_rows(lm):
      lines.append(f"| {r['layer']} | {r['partition']} | {_f(r['asymmetry_learned'])} "
                   f"| {_f(r['asymmetry_effective'])} | {_f(r['asymmetry_a_hat'])} "
                   f"| {_f(r['distance_from_a_hat'])} |")
  aggregated = [a for lm in layers for a in aggregated_nodes(lm, top)]
  if aggregated:
    lines += ['', '## Aggregated nodes', '',
              'Joints each new node draws on most (weight of U_p, share of Σ_j |U_p,ij|):', '',
              '| layer | node | partition | joints |', '|---|---|---|---|']
    for a in aggregated:
      joints = ', '.join(f'{n} {w:+.3f} ({s:.0%})' for n, w, s in a['joints'])
      lines.append(f"| {a['layer']} | {a['node'] + 1} | {a['partition']} | {joints} |")
  lines += ['', '## Heatmaps', '']
  for lm in layers:
    name = f'layer_{lm.layer}.png'
    plot_layer(lm, os.path.join(out_dir, name))
    lines += [f'### Layer {lm.layer}', '', f'![layer {lm.layer}]({name})', '']
  path = os.path.join(out_dir, 'report.md')
  with open(path, 'w') as f:
    f.write('\n'.join(lines) + '\n')
  return path


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if FLAGS.workdir is None:
    raise app.UsageError('--workdir is required (the --workdir of a training run)')
  from stbln_jax import cli  # pylint: disable=g-import-not-at-top
  cli.show_only_own_info_logs()
  config, params, step = load_run(FLAGS.workdir, FLAGS.checkpoint_step)
  out = FLAGS.out or os.path.join(FLAGS.workdir, 'analysis')
  path = write_report(config, params, out, top=FLAGS.top_joints,
                      title=f'{os.path.abspath(FLAGS.workdir)}, step {step}')
  print(f'Wrote {path}')


if __name__ == '__main__':
  _define_flags()
  from stbln_jax import checkpoint  # pylint: disable=g-import-not-at-top
  cli.run(main, input_errors=(checkpoint.CheckpointError,))
