"""The benchmark workloads in plain PyTorch (``torch.func``), for side-by-side timing.

Two variants of every meta-step, both with ``torch.func.functional_call`` and ``torch.func.grad``:

* ``loop``: a Python loop over tasks, each task's meta-gradient by ``grad(task_loss)``
  (second order through the inner ``grad`` unless first-order), summed, one Adam step.
* ``vmap``: ``torch.func.vmap(grad(task_loss))`` over the task axis.

Models mirror metajax's (``metajax.models.mlp_model``, ``conv4_model`` and ``resnet12_model``): NCHW
layout, the same asymmetric 'SAME' padding as XLA, BatchNorm on batch statistics, and weights copied
from the metajax model (:func:`params_from_metajax`), so the first meta-step's loss matches
metajax's. Needs the ``bench`` extra (``pip install torch``; the CPU build is enough). Every
function takes a ``device`` (``"cpu"`` or ``"cuda"``); :func:`make_meta_step`'s ``bf16=True`` runs
the forward and backward passes under ``torch.autocast(dtype=torch.bfloat16)`` (weights and
optimizer state stay float32), the counterpart of ``run_all.py --bf16`` on the JAX side.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from torch.func import functional_call, grad, vmap


def same_pads(size: int, stride: int, kernel: int = 3) -> tuple[int, int]:
  """XLA's 'SAME' padding (the odd pixel at the end), so values match metajax's."""
  out = -(-size // stride)
  total = max((out - 1) * stride + kernel - size, 0)
  return total // 2, total - total // 2


class MLP(nn.Module):
  def __init__(self, sizes):
    super().__init__()
    self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-2], sizes[1:-1]))
    self.head = nn.Linear(sizes[-2], sizes[-1])

  def forward(self, x):
    for layer in self.layers:
      x = torch.relu(layer(x))
    return self.head(x)


class Conv4(nn.Module):
  """3x3 conv -> BatchNorm (batch statistics) -> ReLU -> 2x2 max-pool (or stride 2), x4."""

  def __init__(self, outputs, input_shape=(28, 28, 1), filters=64, pooling="max"):
    super().__init__()
    size, _, channels = input_shape
    self.stride = 2 if pooling == "stride" else 1
    self.pool = pooling == "max"
    self.convs = nn.ModuleList(nn.Conv2d(a, filters, 3) for a in [channels] + [filters] * 3)
    self.norms = nn.ModuleList(
        nn.BatchNorm2d(filters, track_running_stats=False) for _ in range(4))
    self.pads = []
    for _ in range(4):
      self.pads.append(same_pads(size, self.stride))
      size = size // 2 if self.pool else -(-size // 2)
    self.head = None if outputs is None else nn.Linear(size * size * filters, outputs)

  def forward(self, x):
    for conv, norm, (lo, hi) in zip(self.convs, self.norms, self.pads):
      x = F.conv2d(F.pad(x, (lo, hi, lo, hi)), conv.weight, conv.bias, stride=self.stride)
      x = torch.relu(norm(x))
      if self.pool:
        x = F.max_pool2d(x, 2)
    x = x.permute(0, 2, 3, 1).flatten(1)  # NHWC flattening order, as metajax's head sees it.
    return x if self.head is None else self.head(x)


class ResidualBlock(nn.Module):
  """metajax's ResNet-12 block: three 3x3 conv (no bias) -> BatchNorm (-> leaky ReLU), a 1x1
  conv + BatchNorm shortcut, the sum, a leaky ReLU and a 2x2 max-pool."""

  def __init__(self, in_channels, channels, slope=0.1):
    super().__init__()
    sizes = [in_channels, channels, channels, channels]
    self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1, bias=False)
                               for a, b in zip(sizes[:-1], sizes[1:]))
    self.norms = nn.ModuleList(
        nn.BatchNorm2d(channels, track_running_stats=False) for _ in range(3))
    self.shortcut = nn.Conv2d(in_channels, channels, 1, bias=False)
    self.shortcut_norm = nn.BatchNorm2d(channels, track_running_stats=False)
    self.slope = slope

  def forward(self, x):
    residual = self.shortcut_norm(self.shortcut(x))
    for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
      x = norm(conv(x))  # stride 1, 'SAME' pads (1, 1) on both sides: the same as XLA's
      if i < 2:
        x = F.leaky_relu(x, self.slope)
    return F.max_pool2d(F.leaky_relu(x + residual, self.slope), 2)  # 'VALID': floor(h / 2)


class ResNet12(nn.Module):
  """Four residual blocks and an optional linear head, as ``metajax.models.ResNet12`` with its
  defaults (flattened ``[n, 5*5*640]`` embedding at 84x84, NHWC flattening order)."""

  def __init__(self, outputs, input_shape=(84, 84, 3), widths=(64, 160, 320, 640), slope=0.1):
    super().__init__()
    size, _, channels = input_shape
    sizes = [channels, *widths]
    self.blocks = nn.ModuleList(ResidualBlock(a, b, slope) for a, b in zip(sizes[:-1], sizes[1:]))
    for _ in range(4):
      size //= 2
    self.head = None if outputs is None else nn.Linear(size * size * widths[-1], outputs)

  def forward(self, x):
    for block in self.blocks:
      x = block(x)
    x = x.permute(0, 2, 3, 1).flatten(1)
    return x if self.head is None else self.head(x)


def default_device() -> str:
  """``"cuda"`` when PyTorch sees a GPU, else ``"cpu"``."""
  return "cuda" if torch.cuda.is_available() else "cpu"


def synchronize(device: str) -> None:
  """Waits for queued GPU work (timing must not stop at an asynchronous launch)."""
  if str(device).startswith("cuda"):
    torch.cuda.synchronize()


def params_from_metajax(module: nn.Module, params, device: str = "cpu") -> dict[str, torch.Tensor]:
  """Copies a metajax MLP/Conv4/ResNet12 parameter dict into ``module``'s naming and layouts."""
  out = {}
  for name, tensor in module.named_parameters():
    parts = name.split(".")
    node = params
    for part in parts[:-1]:
      node = node[int(part)] if part.isdigit() else node[part]
    kind = parts[-1]
    if kind == "weight" and "scale" in node:  # a BatchNorm (Conv-4 "norms", ResNet-12 "*norm*")
      value = node["scale"]
    elif kind == "weight":
      value = node["kernel"]
    else:
      value = node["bias"]
    value = np.asarray(value)
    if value.ndim == 4:  # HWIO -> OIHW
      value = value.transpose(3, 2, 0, 1)
    elif value.ndim == 2:  # [in, out] -> [out, in]
      value = value.T
    assert value.shape == tuple(tensor.shape), (name, value.shape, tensor.shape)
    out[name] = torch.tensor(np.ascontiguousarray(value), device=device)
  return out


def to_torch_tasks(tasks, *, images: bool, device: str = "cpu"):
  """A metajax Task batch (NHWC) as torch tensors (NCHW for images)."""
  sx, sy, qx, qy = (np.asarray(a) for a in (tasks.support_x, tasks.support_y, tasks.query_x,
                                             tasks.query_y))
  if images:
    sx, qx = sx.transpose(0, 1, 4, 2, 3), qx.transpose(0, 1, 4, 2, 3)
  if images:
    sy, qy = sy.astype(np.int64), qy.astype(np.int64)
  return tuple(torch.tensor(np.ascontiguousarray(a), device=device) for a in (sx, sy, qx, qy))


def make_meta_step(module, params, tasks, *, algorithm, inner_lr, steps, loss, variant,
                   outer_lr=1e-3, bf16=False):
  """``step() -> loss`` running one meta-step on fixed ``tasks``, updating ``params`` in place.

  Args:
    module: the network (its own parameters are ignored; ``params`` are used).
    params: dict of leaf tensors (see :func:`params_from_metajax`).
    tasks: ``(support_x, support_y, query_x, query_y)`` with a leading task axis.
    algorithm: ``"maml"``, ``"fomaml"``, ``"reptile"`` or ``"protonet"``.
    inner_lr: inner SGD step size.
    steps: inner steps.
    loss: ``"mse"`` or ``"cross_entropy"``.
    variant: ``"loop"`` or ``"vmap"``.
    outer_lr: Adam step size.
    bf16: run forward and backward under bfloat16 autocast (on the tensors' device).
  """
  loss_fn = F.mse_loss if loss == "mse" else F.cross_entropy
  first_order = algorithm in ("fomaml", "reptile")

  device_type = tasks[0].device.type

  def forward(p, x):
    if bf16:
      with torch.autocast(device_type=device_type, dtype=torch.bfloat16):
        return functional_call(module, p, (x,)).float()
    return functional_call(module, p, (x,))

  def adapt(p, sx, sy):
    for _ in range(steps):
      grads = grad(lambda q: loss_fn(forward(q, sx), sy))(p)
      if first_order:
        grads = {k: g.detach() for k, g in grads.items()}
      p = {k: p[k] - inner_lr * grads[k] for k in p}
    return p

  def maml_loss(p, sx, sy, qx, qy):
    return loss_fn(forward(adapt(p, sx, sy), qx), qy)

  def proto_loss(p, sx, sy, qx, qy):
    embedded = forward(p, torch.cat([sx, qx]))
    support, query = embedded[: sx.shape[0]], embedded[sx.shape[0]:]
    one_hot = F.one_hot(sy, n_ways).to(support.dtype)
    means = (one_hot.T @ support) / one_hot.sum(0)[:, None]
    logits = -((query[:, None, :] - means[None]) ** 2).sum(-1)
    return F.cross_entropy(logits, qy)

  def reptile_grad(p, sx, sy, qx, qy):
    del qx, qy
    adapted = adapt({k: v.detach() for k, v in p.items()}, sx, sy)
    return {k: p[k].detach() - adapted[k].detach() for k in p}

  n_ways = int(tasks[1].max()) + 1
  if algorithm == "reptile":
    task_grad = reptile_grad
  else:
    task_grad = grad(proto_loss if algorithm == "protonet" else maml_loss)
  batched = vmap(task_grad, in_dims=(None, 0, 0, 0, 0), randomness="same")
  leaves = {k: v.clone().requires_grad_(False) for k, v in params.items()}
  optimizer = torch.optim.Adam(list(leaves.values()), lr=outer_lr)
  n_tasks = tasks[0].shape[0]

  def step():
    if variant == "vmap":
      grads = {k: g.mean(0) for k, g in batched(leaves, *tasks).items()}
    else:
      grads = {k: torch.zeros_like(v) for k, v in leaves.items()}
      for i in range(n_tasks):
        for k, g in task_grad(leaves, *(t[i] for t in tasks)).items():
          grads[k] += g / n_tasks
    for k, v in leaves.items():
      v.grad = grads[k]
    optimizer.step()
    return grads

  def first_loss():
    """Mean query loss (after adaptation) at the current parameters, before any step."""
    with torch.no_grad():
      if algorithm == "protonet":
        return float(np.mean([proto_loss(leaves, *(t[i] for t in tasks)).item()
                              for i in range(n_tasks)]))
      return float(np.mean([maml_loss(leaves, *(t[i] for t in tasks)).item()
                            for i in range(n_tasks)]))

  step.first_loss = first_loss
  return step
