"""The authors' released networks in PyTorch: ST-BLN, 2s-AGCN (with C_k) and ST-GCN.

Written from the layout of negarhdr/skeleton-based-action-recognition (`model/stbln.py`,
`model/agcn.py`, `model/stgcn.py`; OpenDR holds the same modules): the same layers, the
same initialisation and the same `state_dict` names, so the authors' checkpoints load with
`load_state_dict` and `stbln_jax.import_torch` converts these networks' weights. Input
(N, C, T, V, M), logits (N, classes).

    network  mixer            spatial step of a layer                          parameters*
    STBLN    bilinear         Σ_p g_conv_p(H·U_p), U_p free, init U[0, 1)       5,236,198
    AGCN     additive         Σ_p g_conv_p(H·(A_p + B_p + C_p(H))), B_p = 1e-6  3,469,510
    STGCN    multiplicative   Σ_p g_conv_p(H·(A_p ⊙ M_p)), M_p = 1              3,141,478
    (* 60 classes, M = 2, 10 layers)

then BN (γ = 1e-6) plus a residual of the layer input, ReLU; the temporal step is a 9×1
convolution with bias + BN plus a residual, ReLU. Residuals: STBLN a 1×1 conv + BN in the
spatial step of every layer and a 9×1 conv + BN in the temporal step of layers 2-10;
AGCN/STGCN a 1×1 conv + BN where the channels (spatial step) or the channels or frames
(temporal step) change, the identity elsewhere, none in layer 1's temporal step.

`benchmarks.model --reference` times these next to the Flax network of the same mixer.
Needs PyTorch, which stbln_jax does not install.
"""

import math
import multiprocessing
import traceback
from typing import Callable

import numpy as np

try:
  import torch
  from torch import nn
except ImportError as e:  # pragma: no cover - depends on the environment
  raise ImportError('the PyTorch reference needs PyTorch, which stbln_jax does not install: '
                    'pip install torch (a CPU build is enough)') from e

CHANNELS = (64, 64, 64, 64, 128, 128, 128, 256, 256, 256)
STRIDES = (1, 1, 1, 1, 2, 1, 1, 2, 1, 1)
PARTITIONS = 3
TEMPORAL_KERNEL = 9

# ---- The NTU graph as the authors' graph/ntu_rgb_d.py builds it ------------------

NUM_JOINTS = 25
# (child, parent), 1-based, parent nearer the centre (joint 21, spine shoulder).
NTU_INWARD_1BASED = (
    (1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21),
    (10, 9), (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1),
    (18, 17), (19, 18), (20, 19), (22, 23), (23, 8), (24, 25), (25, 12),
)


def ntu_graph() -> np.ndarray:
  """The (3, 25, 25) partitions A_p of AGCN and STGCN: self links, inward, outward.

  For each link (i, j) of a partition A[j, i] = 1, then every column divided by its
  sum (zero columns stay zero); the layers compute H·A_p, so column j of A_p says
  what joint j gathers.
  """
  inward = [(i - 1, j - 1) for i, j in NTU_INWARD_1BASED]
  partitions = ([(i, i) for i in range(NUM_JOINTS)], inward, [(j, i) for i, j in inward])
  out = np.zeros((PARTITIONS, NUM_JOINTS, NUM_JOINTS))
  for p, links in enumerate(partitions):
    for i, j in links:
      out[p, j, i] = 1.0
    if p > 0:
      sums = out[p].sum(axis=0)
      out[p] = out[p] / np.where(sums > 0, sums, 1.0)
  return out.astype(np.float32)


# ---- Layers ----------------------------------------------------------------------

def _init(module: nn.Module, scale: float = 1.0) -> None:
  """The authors' initialisation (their `weights_init(module, bs=scale)`).

  Conv2d: He normal (fan out) for scale 1, else N(0, 2 / (out·in·taps·scale)); bias 0.
  BatchNorm2d: γ = scale, β = 0. Linear: weight N(0, 2 / scale), bias left as PyTorch's.
  """
  if isinstance(module, nn.Conv2d):
    if scale == 1:
      nn.init.kaiming_normal_(module.weight, mode='fan_out')
    else:
      fan = module.weight.shape[0] * module.weight.shape[1] * module.weight.shape[2]
      nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / (fan * scale)))
    nn.init.zeros_(module.bias)
  elif isinstance(module, nn.BatchNorm2d):
    nn.init.constant_(module.weight, scale)
    nn.init.zeros_(module.bias)
  elif isinstance(module, nn.Linear):
    nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / scale))


def _conv_bn(c_in: int, c_out: int, init: bool = True) -> nn.Sequential:
  """A 1×1 convolution with bias and BN: keys `0.*` and `1.*`."""
  block = nn.Sequential(nn.Conv2d(c_in, c_out, 1), nn.BatchNorm2d(c_out))
  if init:
    _init(block[0])
    _init(block[1])
  return block


class TemporalConvolution(nn.Module):
  """A taps×1 convolution over frames with bias ('same' padding, stride s), then BN."""

  def __init__(self, c_in: int, c_out: int, taps: int = TEMPORAL_KERNEL, stride: int = 1):
    super().__init__()
    self.t_conv = nn.Conv2d(c_in, c_out, (taps, 1), stride=(stride, 1),
                            padding=((taps - 1) // 2, 0))
    self.bn = nn.BatchNorm2d(c_out)
    _init(self.t_conv)
    _init(self.bn)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.bn(self.t_conv(x))


class _SpatialStep(nn.Module):
  """ReLU(BN(Σ_p g_conv_p(H·A_p)) + shortcut(H)) on (N, C, T, V); A_p from `matrices`."""

  def __init__(self, c_in: int, c_out: int):
    super().__init__()
    self.g_conv = nn.ModuleList(nn.Conv2d(c_in, c_out, 1) for _ in range(PARTITIONS))
    for conv in self.g_conv:
      _init(conv, PARTITIONS)
    self.bn = nn.BatchNorm2d(c_out)
    _init(self.bn, 1e-6)

  def matrices(self, x: torch.Tensor) -> list[torch.Tensor]:
    """The P mixing matrices, each (V, V) or per sample (N, V, V)."""
    raise NotImplementedError

  def shortcut(self, x: torch.Tensor) -> torch.Tensor:
    raise NotImplementedError

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    n, c, t, v = x.shape
    rows = x.reshape(n, c * t, v)
    mixed = sum(conv(torch.matmul(rows, a).reshape(n, c, t, v))
                for conv, a in zip(self.g_conv, self.matrices(x)))
    return torch.relu(self.bn(mixed) + self.shortcut(x))


class BilinearMapping(_SpatialStep):
  """ST-BLN's spatial step (Eq. 4): free U_p (`rand_graph`), a 1×1 conv + BN shortcut."""

  def __init__(self, c_in: int, c_out: int, joints: int = NUM_JOINTS):
    super().__init__(c_in, c_out)
    self.rand_graph = nn.Parameter(torch.rand(PARTITIONS, joints, joints))
    # Their shortcut keeps PyTorch's default initialisation.
    self.bln_residual = _conv_bn(c_in, c_out, init=False)

  def matrices(self, x):
    return list(self.rand_graph)

  def shortcut(self, x):
    return self.bln_residual(x)


class GraphConvolution(_SpatialStep):
  """2s-AGCN's (Eq. 2 with C_k) or ST-GCN's (Eq. 1) spatial step on the fixed `graph`.

  additive:       A_p + B_p (`graph_attn`, init 1e-6) + C_p(H), where C_p(H) is the
                  softmax over the first joint axis of θ_p(H)ᵀφ_p(H) / (C/4·T), θ_p and
                  φ_p 1×1 convolutions to C_out/4 channels (`a_conv`, `b_conv`);
  multiplicative: A_p ⊙ M_p (`graph_attn`, init 1).
  The shortcut is a 1×1 conv + BN where the channels change, else the identity.
  """

  def __init__(self, c_in: int, c_out: int, graph: np.ndarray, additive: bool):
    super().__init__(c_in, c_out)
    self.additive = additive
    self.register_buffer('A', torch.from_numpy(np.asarray(graph, np.float32)),
                         persistent=False)
    self.graph_attn = nn.Parameter(torch.full(self.A.shape, 1e-6 if additive else 1.0))
    if additive:
      self.inter_channels = c_out // 4
      self.a_conv = nn.ModuleList(nn.Conv2d(c_in, self.inter_channels, 1)
                                  for _ in range(PARTITIONS))
      self.b_conv = nn.ModuleList(nn.Conv2d(c_in, self.inter_channels, 1)
                                  for _ in range(PARTITIONS))
      for conv in (*self.a_conv, *self.b_conv):
        _init(conv)
    self.gcn_residual = _conv_bn(c_in, c_out) if c_in != c_out else nn.Identity()

  def matrices(self, x):
    if not self.additive:
      return list(self.A * self.graph_attn)
    n, _, t, v = x.shape
    fixed = self.A + self.graph_attn
    out = []
    for p in range(PARTITIONS):
      theta = self.a_conv[p](x).permute(0, 3, 1, 2).reshape(n, v, self.inter_channels * t)
      phi = self.b_conv[p](x).reshape(n, self.inter_channels * t, v)
      c_p = torch.softmax(torch.matmul(theta, phi) / theta.shape[-1], dim=-2)
      out.append(c_p + fixed[p])
    return out

  def shortcut(self, x):
    return self.gcn_residual(x)


class Block(nn.Module):
  """One layer: ReLU(tcn(spatial(H)) + residual(H)); the spatial step under `name`."""

  def __init__(self, name: str, spatial: nn.Module, c_out: int, stride: int,
               residual: nn.Module | None):
    super().__init__()
    self.add_module(name, spatial)
    self._spatial = name
    self.tcn = TemporalConvolution(c_out, c_out, stride=stride)
    self.residual = residual

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    y = self.tcn(getattr(self, self._spatial)(x))
    if self.residual is not None:
      y = y + self.residual(x)
    return torch.relu(y)


# ---- Networks --------------------------------------------------------------------

class _Network(nn.Module):
  """data_bn over (persons, joints, coordinates), `layers.layer1..L`, means, `fc`."""

  def __init__(self, num_class: int, num_point: int, num_person: int, in_channels: int,
               num_layers: int):
    super().__init__()
    if not 1 <= num_layers <= len(CHANNELS):
      raise ValueError(f'num_layers={num_layers} must be in 1..{len(CHANNELS)}')
    self.data_bn = nn.BatchNorm1d(num_person * in_channels * num_point)
    layers, c_in = {}, in_channels
    for i, (c_out, stride) in enumerate(zip(CHANNELS[:num_layers], STRIDES)):
      layers[f'layer{i + 1}'] = self.block(i, c_in, c_out, stride, num_point)
      c_in = c_out
    self.layers = nn.ModuleDict(layers)
    self.fc = nn.Linear(c_in, num_class)
    _init(self.fc, num_class)

  def block(self, index: int, c_in: int, c_out: int, stride: int, joints: int) -> Block:
    raise NotImplementedError

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    n, c, t, v, m = x.shape
    x = self.data_bn(x.permute(0, 4, 3, 1, 2).reshape(n, m * v * c, t))
    x = x.reshape(n, m, v, c, t).permute(0, 1, 3, 4, 2).reshape(n * m, c, t, v)
    for layer in self.layers.values():
      x = layer(x)
    return self.fc(x.reshape(n, m, x.shape[1], -1).mean(3).mean(1))


class STBLN(_Network):
  """ST-BLN as released (model/stbln.py, symmetric=False)."""

  def __init__(self, num_class: int = 60, num_point: int = NUM_JOINTS, num_person: int = 2,
               in_channels: int = 3, num_layers: int = len(CHANNELS)):
    super().__init__(num_class, num_point, num_person, in_channels, num_layers)

  def block(self, index, c_in, c_out, stride, joints):
    residual = TemporalConvolution(c_in, c_out, stride=stride) if index > 0 else None
    return Block('bln', BilinearMapping(c_in, c_out, joints), c_out, stride, residual)


class _GraphNetwork(_Network):
  additive = False

  def __init__(self, num_class: int = 60, num_point: int = NUM_JOINTS, num_person: int = 2,
               in_channels: int = 3, num_layers: int = len(CHANNELS),
               graph: np.ndarray | None = None):
    self._graph = ntu_graph() if graph is None else graph
    super().__init__(num_class, num_point, num_person, in_channels, num_layers)

  def block(self, index, c_in, c_out, stride, joints):
    if index == 0:
      residual = None
    elif c_in == c_out and stride == 1:
      residual = nn.Identity()
    else:
      residual = TemporalConvolution(c_in, c_out, taps=1, stride=stride)
    spatial = GraphConvolution(c_in, c_out, self._graph, self.additive)
    return Block('gcn', spatial, c_out, stride, residual)


class AGCN(_GraphNetwork):
  """2s-AGCN as released (model/agcn.py): Â + B + C_k."""
  additive = True


class STGCN(_GraphNetwork):
  """ST-GCN as released (model/stgcn.py): Â ⊙ M."""


# The released network of each of stbln_jax's mixers (the symmetric one has none).
NETWORKS = {'bilinear': STBLN, 'additive': AGCN, 'multiplicative': STGCN}


def create(mixer: str, **kwargs) -> _Network:
  """The released PyTorch network of a stbln_jax mixer, e.g. create('bilinear')."""
  if mixer not in NETWORKS:
    raise ValueError(f'no released PyTorch network for mixer {mixer!r}; '
                     f'there is one for {sorted(NETWORKS)}')
  return NETWORKS[mixer](**kwargs)


# ---- Timing ----------------------------------------------------------------------

def num_params(model: nn.Module) -> int:
  return sum(p.numel() for p in model.parameters())


def forward_flops(model: nn.Module, x: torch.Tensor) -> float:
  """FLOPs of one forward pass (a multiply-add is 2), as PyTorch's FLOP counter sees them."""
  from torch.utils.flop_counter import FlopCounterMode
  counter = FlopCounterMode(display=False)
  with counter, torch.no_grad():
    model(x)
  return float(counter.get_total_flops())


def make_steps(mixer: str, batch: int, frames: int, persons: int, num_classes: int = 60,
               num_layers: int = len(CHANNELS), learning_rate: float = 0.1,
               weight_decay: float = 1e-4, seed: int = 0, dtype: str = 'float32'
               ) -> tuple[nn.Module, Callable[[], None], Callable[[], None], dict]:
  """(model, train_call, infer_call, info) of `mixer`'s network on random inputs.

  train_call: forward + backward + SGD update (Nesterov momentum 0.9, L2 weight decay)
  in training mode; infer_call: forward in evaluation mode without autograd. Both return
  None once the work is done (PyTorch on CPU runs synchronously). dtype 'bfloat16' runs
  the forward passes under CPU autocast to bfloat16 (float32 weights and optimizer).
  """
  if dtype not in ('float32', 'bfloat16'):
    raise ValueError(f"dtype {dtype!r}: 'float32' or 'bfloat16'")
  torch.manual_seed(seed)
  model = create(mixer, num_class=num_classes, num_person=persons, num_layers=num_layers)
  x = torch.randn(batch, 3, frames, NUM_JOINTS, persons)
  labels = torch.randint(0, num_classes, (batch,))
  optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate, momentum=0.9,
                              nesterov=True, weight_decay=weight_decay)
  loss_fn = nn.CrossEntropyLoss()
  autocast = torch.autocast('cpu', dtype=torch.bfloat16, enabled=dtype == 'bfloat16')

  def train_call():
    model.train()
    optimizer.zero_grad(set_to_none=True)
    with autocast:
      loss = loss_fn(model(x), labels)
    loss.backward()
    optimizer.step()

  def infer_call():
    model.eval()
    with torch.inference_mode(), autocast:
      model(x)

  model.eval()
  info = {'network': type(model).__name__, 'params': num_params(model),
          'threads': torch.get_num_threads(), 'torch': torch.__version__, 'dtype': dtype,
          'infer_gflops_per_sample': forward_flops(model, x) / batch / 1e9}
  return model, train_call, infer_call, info


def _serve(conn, kwargs: dict) -> None:
  """The child of `StepsInProcess`: builds the steps, then runs one per request."""
  try:
    _, train_call, infer_call, info = make_steps(**kwargs)
    conn.send(info)
    calls = {'train': train_call, 'infer': infer_call}
    while (request := conn.recv()) is not None:
      calls[request]()
      conn.send(None)
  except Exception:  # pylint: disable=broad-except
    conn.send(RuntimeError('the PyTorch reference failed:\n' + traceback.format_exc()))
  finally:
    conn.close()


class StepsInProcess:
  """`make_steps(**kwargs)` in a process of its own; `train()` and `infer()` run one step.

  The benchmark times the reference next to XLA in another process because in one
  process they share glibc's heap: with freed memory kept (launch/cpu.sh), PyTorch's
  allocations between two of our steps take parts of the block XLA freed, and the next
  step grows the heap by its whole temporaries again (BENCHMARKS.md).
  """

  def __init__(self, **kwargs):
    context = multiprocessing.get_context('spawn')
    self._conn, child = context.Pipe()
    self._process = context.Process(target=_serve, args=(child, kwargs), daemon=True)
    self._process.start()
    child.close()
    self.info = self._receive()

  def _receive(self):
    reply = self._conn.recv()
    if isinstance(reply, Exception):
      self.close()
      raise reply
    return reply

  def train(self) -> None:
    self._conn.send('train')
    self._receive()

  def infer(self) -> None:
    self._conn.send('infer')
    self._receive()

  def close(self) -> None:
    if self._process.is_alive():
      try:
        self._conn.send(None)
      except OSError:
        pass
      self._process.join(timeout=30)
    self._conn.close()
