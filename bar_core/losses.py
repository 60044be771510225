"""BAR's objective: L = L_D + λ · f(V, a, b) · L_S.

L_D is the data term (cross-entropy, or distillation from the frozen unpruned teacher); L_S the
expected volume (see volume.py); f the barrier evaluated at the current hard volume V and scheduled
budget b, a detached scalar that only scales the sparsity pressure.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def distillation_loss(student_logits: Tensor, teacher_logits: Tensor, targets: Tensor,
                      temperature: float = 4.0, alpha: float = 0.9) -> Tensor:
    """L_D = α·T²·KL(softmax(t/T) ‖ softmax(s/T)) + (1 − α)·CE(y, s).

    KL is summed over classes and averaged over the batch ("batchmean"); an element-wise mean would
    shrink it by the number of classes. T² keeps its gradients on the scale of the CE term.
    """
    t = temperature
    kl = F.kl_div(F.log_softmax(student_logits / t, dim=1), F.log_softmax(teacher_logits.detach() / t, dim=1),
                  reduction="batchmean", log_target=True)
    loss = alpha * t * t * kl
    if alpha < 1.0:
        loss = loss + (1.0 - alpha) * F.cross_entropy(student_logits, targets)
    return loss


# The objectives a run can train with (the `method` setting): name -> what it is, in a line
METHODS = {
    "bar": "BAR (Lemaire et al., CVPR 2019): L = L_D + λ·f(V, a, b)·L_S, the barrier holds V under a moving budget",
    "l0": "L0 regularisation (Louizos et al., ICLR 2018): L = L_D + λ·L_S, no barrier and no budget",
    "magnitude": "prune then fine-tune (Li et al., ICLR 2017; Liu et al., ICCV 2017): the teacher pruned once by "
                 "channel importance to a MAC target with Torch-Pruning, then fine-tuned",
}
METHOD_TITLES = {"bar": "BAR", "l0": "L0", "magnitude": "magnitude"}  # how tables and legends name them


def l0_objective(data_loss: Tensor, sparsity_loss: Tensor, lam: float) -> Tensor:
    """L = L_D + λ·L_S (Louizos et al.): the same Hard Concrete gates and expected volume L_S as BAR,
    with no barrier: where V ends is set by λ alone."""
    return data_loss + lam * sparsity_loss


def bar_objective(data_loss: Tensor, sparsity_loss: Tensor, barrier_value: float, lam: float) -> Tensor:
    """L = L_D + λ·f·L_S; f is a plain float, so gradients reach log α only through L_S and L_D."""
    if barrier_value == 0.0:
        return data_loss  # no sparsity pressure at all below a
    return data_loss + lam * barrier_value * sparsity_loss
