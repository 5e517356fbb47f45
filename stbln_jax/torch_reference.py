"""The authors' ST-BLN in PyTorch, as their public implementation computes it, for timing.

`python -m stbln_jax.benchmark --reference` times this network next to ours, on the same
inputs and in the same process, alternating repeats, so that the ratio is measured under
the same machine conditions. Nothing else in stbln_jax uses it; it needs PyTorch
(`pip install torch`), which stbln_jax does not depend on.

The computation, layer for layer (10 layers, channels and strides as ours), and where it
differs from the paper-faithful network in `models.py`:
- spatial step: for each of the 3 partitions, the features (N, C·T, V) times the free
  (V × V) matrix U_p, then a 1×1 convolution with bias; the three summed, BN; plus a
  1×1 convolution + BN of the layer input in every layer (ours: the identity where C is
  unchanged); ReLU.
- temporal step: a 9×1 convolution with bias (stride s), BN; plus a residual that is a
  full 9×1 convolution (stride s) + BN of the layer input in layers 2-10 (ours: the
  identity, or a 1×1 map where C or T change); ReLU.
- input BN over (persons, joints, coordinates), persons folded into the batch; mean over
  frames and joints, then persons; a dense layer.
This makes 5.24M parameters and 55.9 forward GFLOPs per sample at T = 300, M = 2 (ours:
3.14M and 34.19), the figures of the reference measurements in BENCHMARKS.md.
"""

from typing import Callable

try:
  import torch
  from torch import nn
except ImportError as e:  # pragma: no cover - depends on the environment
  raise ImportError('the PyTorch reference needs PyTorch, which stbln_jax does not install: '
                    'pip install torch (a CPU build is enough)') from e

CHANNELS = (64, 64, 64, 64, 128, 128, 128, 256, 256, 256)
STRIDES = (1, 1, 1, 1, 2, 1, 1, 2, 1, 1)
PARTITIONS = 3


def _conv_bn(c_in: int, c_out: int, taps: int = 1, stride: int = 1) -> nn.Sequential:
  """A taps×1 convolution over frames (with bias, 'same' padding) followed by BN."""
  return nn.Sequential(
      nn.Conv2d(c_in, c_out, (taps, 1), stride=(stride, 1), padding=((taps - 1) // 2, 0)),
      nn.BatchNorm2d(c_out))


class _Layer(nn.Module):
  """One ST-BLN layer on (N·M, C, T, V) as the reference computes it."""

  def __init__(self, c_in: int, c_out: int, stride: int, residual: bool, joints: int):
    super().__init__()
    self.u = nn.Parameter(torch.rand(PARTITIONS, joints, joints))
    self.w = nn.ModuleList(nn.Conv2d(c_in, c_out, 1) for _ in range(PARTITIONS))
    self.spatial_bn = nn.BatchNorm2d(c_out)
    self.spatial_residual = _conv_bn(c_in, c_out)
    self.temporal = _conv_bn(c_out, c_out, 9, stride)
    self.temporal_residual = _conv_bn(c_in, c_out, 9, stride) if residual else None

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    n, c, t, v = x.shape
    rows = x.reshape(n, c * t, v)
    mixed = sum(w(torch.matmul(rows, self.u[p]).reshape(n, c, t, v))
                for p, w in enumerate(self.w))
    h = torch.relu(self.spatial_bn(mixed) + self.spatial_residual(x))
    y = self.temporal(h)
    if self.temporal_residual is not None:
      y = y + self.temporal_residual(x)
    return torch.relu(y)


class ReferenceSTBLN(nn.Module):
  """The reference network; input (N, T, M, V, C) like ours, logits (N, classes)."""

  def __init__(self, num_classes: int = 60, persons: int = 2, joints: int = 25,
               coordinates: int = 3):
    super().__init__()
    self.data_bn = nn.BatchNorm1d(persons * joints * coordinates)
    layers, c_in = [], coordinates
    for i, (c_out, stride) in enumerate(zip(CHANNELS, STRIDES)):
      layers.append(_Layer(c_in, c_out, stride, residual=i > 0, joints=joints))
      c_in = c_out
    self.layers = nn.Sequential(*layers)
    self.head = nn.Linear(c_in, num_classes)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    n, t, m, v, c = x.shape
    x = self.data_bn(x.permute(0, 2, 3, 4, 1).reshape(n, m * v * c, t))
    x = x.reshape(n, m, v, c, t).permute(0, 1, 3, 4, 2).reshape(n * m, c, t, v)
    x = self.layers(x)
    x = x.reshape(n, m, x.shape[1], -1).mean(3).mean(1)
    return self.head(x)


def num_params(model: nn.Module) -> int:
  return sum(p.numel() for p in model.parameters())


def forward_flops(model: nn.Module, x: torch.Tensor) -> float:
  """FLOPs of one forward pass (a multiply-add is 2), as PyTorch's FLOP counter sees them."""
  from torch.utils.flop_counter import FlopCounterMode
  counter = FlopCounterMode(display=False)
  with counter, torch.no_grad():
    model(x)
  return float(counter.get_total_flops())


def make_steps(batch: int, frames: int, persons: int, num_classes: int = 60, seed: int = 0
               ) -> tuple[nn.Module, Callable[[], None], Callable[[], None], dict]:
  """(model, train_call, infer_call, info) on random inputs, like `benchmark.run_variant`.

  train_call: forward + backward + SGD update (Nesterov momentum 0.9, weight decay 1e-4)
  in training mode; infer_call: forward in evaluation mode without autograd. Both return
  None once the work is done (PyTorch on CPU runs synchronously).
  """
  torch.manual_seed(seed)
  model = ReferenceSTBLN(num_classes, persons)
  x = torch.randn(batch, frames, persons, 25, 3)
  labels = torch.randint(0, num_classes, (batch,))
  optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True,
                              weight_decay=1e-4)
  loss_fn = nn.CrossEntropyLoss()

  def train_call():
    model.train()
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(model(x), labels)
    loss.backward()
    optimizer.step()

  def infer_call():
    model.eval()
    with torch.inference_mode():
      model(x)

  model.eval()
  info = {'params': num_params(model), 'threads': torch.get_num_threads(),
          'torch': torch.__version__,
          'infer_gflops_per_sample': forward_flops(model, x) / batch / 1e9}
  return model, train_call, infer_call, info
