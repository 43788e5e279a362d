"""A hand-derived training step for the FCN under cross-entropy and SGD.

For the default ERM setting (an :class:`~sbbench.models.FCN`, plain cross-entropy, SGD with
optional momentum and weight decay) the step is a short, fixed sequence of matrix products.
Computing it directly, into preallocated gradient buffers, skips autograd's graph
bookkeeping and the optimiser's per-parameter dispatch, which dominate the cost of such small
layers on a CPU. The update is the same as autograd + ``torch.optim.SGD`` up to
floating-point rounding (``tests/test_fcn_sgd.py`` checks it).

With layers ``a_0 = x``, ``a_l = relu(a_{l-1} W_l^T + b_l)`` and logits ``a_L`` (no ReLU), the
mean cross-entropy has ``dL/da_L = (softmax(a_L) - onehot(y)) / B`` and, going down,
``dL/dW_l = g_l^T a_{l-1}``, ``dL/db_l = sum_rows g_l``,
``g_{l-1} = (g_l W_l) * [a_{l-1} > 0]``. SGD then applies ``d = grad + wd * p``,
``buf = momentum * buf + d`` (``buf = d`` at the first step) and ``p -= lr * buf``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sbbench.models.fcn import FCN


def supports_fused_step(model: nn.Module) -> bool:
    """True for an :class:`FCN` whose body holds only Flatten, Linear and ReLU layers."""
    return type(model) is FCN and all(isinstance(m, (nn.Flatten, nn.Linear, nn.ReLU)) for m in model.body)


class FusedFCNSGDStep:
    """An :class:`~sbbench.training.loop.Update` for ERM on an FCN with SGD.

    Args:
        model: the FCN being trained (its parameters are updated in place).
        lr, momentum, weight_decay: as in ``torch.optim.SGD`` (no dampening, no Nesterov).
    """

    def __init__(self, model: FCN, lr: float, momentum: float, weight_decay: float) -> None:
        self.layers = [m for m in model.body if isinstance(m, nn.Linear)] + [model.head]
        self.params = [p for layer in self.layers for p in (layer.weight, layer.bias)]
        for param in self.params:
            param.grad = torch.zeros_like(param)
        self.grads = [p.grad for p in self.params]
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.buffers: list[Tensor] | None = None
        self.rows: dict[int, Tensor] = {}

    @torch.no_grad()
    def __call__(self, model: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor,
                 y: Tensor) -> tuple[Tensor, Tensor]:
        activations = [x.reshape(len(x), -1)]
        for layer in self.layers[:-1]:
            activations.append(torch.addmm(layer.bias, activations[-1], layer.weight.t()).relu_())
        logits = torch.addmm(self.layers[-1].bias, activations[-1], self.layers[-1].weight.t())
        log_probs = torch.log_softmax(logits, dim=1)
        loss = F.nll_loss(log_probs, y)
        grad = log_probs.exp_()
        rows = self.rows.get(len(y))
        if rows is None:
            rows = self.rows[len(y)] = torch.arange(len(y), device=y.device)
        grad[rows, y] -= 1.0
        grad.div_(len(y))
        for index in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[index]
            torch.mm(grad.t(), activations[index], out=layer.weight.grad)
            torch.sum(grad, dim=0, out=layer.bias.grad)
            if index > 0:
                grad = torch.ops.aten.threshold_backward(grad.mm(layer.weight), activations[index], 0)
        self._sgd()
        return loss, logits

    def _sgd(self) -> None:
        if self.weight_decay:
            torch._foreach_add_(self.grads, self.params, alpha=self.weight_decay)
        direction = self.grads
        if self.momentum:
            if self.buffers is None:
                self.buffers = [g.clone() for g in self.grads]
            else:
                torch._foreach_mul_(self.buffers, self.momentum)
                torch._foreach_add_(self.buffers, self.grads)
            direction = self.buffers
        torch._foreach_add_(self.params, direction, alpha=-self.lr)
