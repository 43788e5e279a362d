"""A hand-derived training step for the FCN under cross-entropy and SGD.

For the default ERM setting (an :class:`~sbbench.models.FCN`, plain cross-entropy, SGD with
optional momentum and weight decay) the step is a short, fixed sequence of matrix products.
Computing it directly, into preallocated gradient buffers, skips autograd's graph
bookkeeping and the optimiser's per-parameter dispatch, which dominate the cost of such small
layers on a CPU. The parameters and their gradients are views into one flat buffer each, so
the SGD update is two or three vector operations whatever the depth. The update is the same
as autograd + ``torch.optim.SGD`` up to floating-point rounding (``tests/test_fcn_sgd.py``
checks it).

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
        params = [p for layer in self.layers for p in (layer.weight, layer.bias)]
        self.flat_params = torch.cat([p.detach().reshape(-1) for p in params])
        self.flat_grads = torch.zeros_like(self.flat_params)
        sizes = [p.numel() for p in params]
        for param, value, grad in zip(params, self.flat_params.split(sizes), self.flat_grads.split(sizes), strict=True):
            param.data = value.view_as(param)
            param.grad = grad.view_as(param)
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.momentum_buffer: Tensor | None = None
        # Views stay valid: every update writes into the same flat storage.
        self.weights_t = [layer.weight.t() for layer in self.layers]
        self.minus_ones = torch.empty(0, 1)

    @torch.no_grad()
    def __call__(self, model: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor,
                 y: Tensor) -> tuple[Tensor, Tensor]:
        activations = [x.reshape(len(x), -1)]
        for layer, weight_t in zip(self.layers[:-1], self.weights_t, strict=False):
            activations.append(torch.addmm(layer.bias, activations[-1], weight_t).relu_())
        logits = torch.addmm(self.layers[-1].bias, activations[-1], self.weights_t[-1])
        log_probs = torch.log_softmax(logits, dim=1)
        loss = F.nll_loss(log_probs, y)
        grad = log_probs.exp_()
        if len(self.minus_ones) < len(y):
            self.minus_ones = torch.full((len(y), 1), -1.0, dtype=grad.dtype, device=grad.device)
        grad.scatter_add_(1, y.unsqueeze(1), self.minus_ones[:len(y)])
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
            self.flat_grads.add_(self.flat_params, alpha=self.weight_decay)
        direction = self.flat_grads
        if self.momentum:
            if self.momentum_buffer is None:
                self.momentum_buffer = self.flat_grads.clone()
            else:
                self.momentum_buffer.mul_(self.momentum).add_(self.flat_grads)
            direction = self.momentum_buffer
        self.flat_params.add_(direction, alpha=-self.lr)
