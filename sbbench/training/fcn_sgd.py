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

The backward pass runs on ``B g_l`` (``softmax - onehot`` unscaled), so the gradient buffers,
and the parameters' ``.grad``, hold the batch's *summed* gradient; the ``1 / B`` is folded into
the update's scalars, which saves a kernel per step.
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
        linears = [m for m in model.body if isinstance(m, nn.Linear)] + [model.head]
        params = [p for layer in linears for p in (layer.weight, layer.bias)]
        self.flat_params = torch.cat([p.detach().reshape(-1) for p in params])
        self.flat_grads = torch.zeros_like(self.flat_params)
        sizes = [p.numel() for p in params]
        values = [v.view_as(p) for v, p in zip(self.flat_params.split(sizes), params, strict=True)]
        grads = [g.view_as(p) for g, p in zip(self.flat_grads.split(sizes), params, strict=True)]
        for param, value, grad in zip(params, values, grads, strict=True):
            param.data, param.grad = value, grad
        # The step works on these plain-tensor views of the flat buffers, never on the
        # nn.Parameter objects: every op on a Tensor subclass pays Python-level dispatch, which
        # costs more than the small kernels themselves. The views stay valid because every
        # update writes into the same storage.
        self.layers = [_LayerViews(*values[i:i + 2], *grads[i:i + 2]) for i in range(0, len(values), 2)]
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.momentum_buffer: Tensor | None = None
        self.workspaces: dict[int, _Workspace] = {}

    def __call__(self, model: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor,
                 y: Tensor) -> tuple[Tensor, Tensor]:
        """One step; the returned logits live in a buffer the next step overwrites.

        No ``torch.no_grad()`` is needed (entering it costs as much as a small kernel): every
        tensor touched is a plain view of the flat buffers or of the batch, none requires grad.
        """
        space = self._workspace(len(y))
        activations = [x if x.dim() == 2 else x.reshape(len(x), -1), *space.hidden]
        for index, layer in enumerate(self.layers[:-1]):
            torch.addmm(layer.bias, activations[index], layer.weight_t, out=activations[index + 1]).relu_()
        torch.addmm(self.layers[-1].bias, activations[-1], self.layers[-1].weight_t, out=space.logits)
        log_probs = torch.log_softmax(space.logits, dim=1)
        loss = F.nll_loss(log_probs, y)
        grad = torch.exp(log_probs, out=space.grads[-1])
        grad.scatter_add_(1, y.unsqueeze(1), space.minus_ones)
        for index in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[index]
            torch.mm(space.grads_t[index], activations[index], out=layer.weight_grad)
            torch.sum(space.grads[index], dim=0, out=layer.bias_grad)
            if index > 0:
                torch.mm(space.grads[index], layer.weight, out=space.grads[index - 1])
                # ReLU's derivative: the activation is >= 0, so its sign is the 0/1 mask.
                space.grads[index - 1].mul_(activations[index].sign_())
        self._sgd(len(y))
        return loss, space.logits

    def _workspace(self, batch_size: int) -> _Workspace:
        if batch_size not in self.workspaces:
            self.workspaces[batch_size] = _Workspace(self.layers, batch_size, self.flat_params)
        return self.workspaces[batch_size]

    def _sgd(self, batch_size: int) -> None:
        """The SGD update from the batch's summed gradients (``flat_grads`` is ``B`` times the mean's)."""
        if self.weight_decay:
            self.flat_grads.add_(self.flat_params, alpha=self.weight_decay * batch_size)
        if not self.momentum:
            self.flat_params.add_(self.flat_grads, alpha=-self.lr / batch_size)
            return
        if self.momentum_buffer is None:
            self.momentum_buffer = self.flat_grads / batch_size
        else:
            self.momentum_buffer.mul_(self.momentum).add_(self.flat_grads, alpha=1 / batch_size)
        self.flat_params.add_(self.momentum_buffer, alpha=-self.lr)


class _LayerViews:
    """One linear layer's weight ``(out, in)``, bias, their gradients, and the weight's transpose."""

    def __init__(self, weight: Tensor, bias: Tensor, weight_grad: Tensor, bias_grad: Tensor) -> None:
        self.weight, self.bias, self.weight_grad, self.bias_grad = weight, bias, weight_grad, bias_grad
        self.weight_t = weight.t()


class _Workspace:
    """Preallocated activations and gradients of one batch size, reused by every step.

    ``hidden[l]`` holds the output of hidden layer ``l`` ``(B, width)``, ``grads[l]`` the loss
    gradient at the output of layer ``l`` (``grads[-1]`` is the logits' gradient ``(B, 2)``),
    ``grads_t`` their transposes as views. Writing into buffers avoids one allocation per
    kernel, a sizeable share of a small layer's cost on a CPU.
    """

    def __init__(self, layers: list[_LayerViews], batch_size: int, like: Tensor) -> None:
        def buffer(*shape: int) -> Tensor:
            return like.new_empty(shape)

        self.hidden = [buffer(batch_size, len(layer.weight)) for layer in layers[:-1]]
        self.logits = buffer(batch_size, len(layers[-1].weight))
        self.grads = [buffer(batch_size, len(layer.weight)) for layer in layers]
        self.grads_t = [grad.t() for grad in self.grads]
        self.minus_ones = like.new_full((batch_size, 1), -1.0)
