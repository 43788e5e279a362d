"""D-BAT and DivDis: their losses on hand-checkable cases, DivDis's head choice, and one run each."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sbbench.methods import divdis as divdis_module
from sbbench.methods.base import Track
from sbbench.methods.dbat import DBAT, EPS, MeanEnsemble, dbat_loss, disagreement_loss
from sbbench.methods.divdis import (
    DivDis,
    DivDisT2,
    MultiHead,
    divdis_loss,
    marginal_kl,
    pairwise_mutual_information,
    select_head,
)
from sbbench.methods.erm import ERM
from sbbench.methods.pool import PoolSampler, fixed_epochs
from sbbench.methods.registry import resolve_method
from sbbench.models import FCN
from sbbench.runner import build_data, run_job, train_context
from sbbench.tasks import Task

CPU = torch.device("cpu")
LOG2 = math.log(2)


def one_hot(labels: list[int]) -> torch.Tensor:
    return F.one_hot(torch.tensor(labels), 2).double()


# --- D-BAT -----------------------------------------------------------------------------------


def test_disagreement_loss_by_hand() -> None:
    p_earlier = torch.tensor([[0.9, 0.5]])
    p_new = torch.tensor([0.2, 0.5])
    # 0.9 * 0.8 + 0.1 * 0.2 = 0.74 and 0.5 * 0.5 + 0.5 * 0.5 = 0.5
    expected = -(math.log(0.74 + EPS) + math.log(0.5 + EPS)) / 2
    assert disagreement_loss(p_earlier, p_new).item() == pytest.approx(expected, rel=1e-6)


def test_disagreement_loss_averages_over_earlier_models_and_saturates() -> None:
    p_new = torch.tensor([1.0, 0.0])
    agreeing = torch.tensor([[1.0, 0.0]])
    disagreeing = torch.tensor([[0.0, 1.0]])
    assert disagreement_loss(disagreeing, p_new).item() == pytest.approx(-math.log(1 + EPS), abs=1e-6)
    assert disagreement_loss(agreeing, p_new).item() == pytest.approx(-math.log(EPS), rel=1e-6)
    both = torch.cat([agreeing, disagreeing])
    assert disagreement_loss(both, p_new).item() == pytest.approx((-math.log(EPS) - math.log(1 + EPS)) / 2, rel=1e-6)


def test_dbat_loss_is_ce_plus_alpha_times_disagreement() -> None:
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.5]])
    y = torch.tensor([0, 1])
    p_earlier, p_new = torch.tensor([[0.9, 0.3]]), torch.tensor([0.4, 0.6])
    ce = (math.log(1 + math.exp(-3.0)) + math.log(2)) / 2
    dis = -(math.log(0.9 * 0.6 + 0.1 * 0.4 + EPS) + math.log(0.3 * 0.4 + 0.7 * 0.6 + EPS)) / 2
    assert dbat_loss(logits, y, p_earlier, p_new, alpha=0.7).item() == pytest.approx(ce + 0.7 * dis, rel=1e-6)


def test_dbat_first_member_is_erm_and_mean_output_averages(tiny_task: Task) -> None:
    data = build_data(tiny_task, 0)
    torch.manual_seed(0)
    erm = ERM().fit(train_context(tiny_task, data, Track.T0, 0, CPU, lambda m: None))
    torch.manual_seed(0)
    ensemble = DBAT.with_overrides({"epochs": 2, "output": "mean"}).fit(
        train_context(tiny_task, data, Track.T1, 0, CPU, lambda m: None))
    assert isinstance(ensemble, MeanEnsemble) and len(ensemble.members) == 2
    for ours, theirs in zip(ensemble.members[0].parameters(), erm.parameters(), strict=True):
        torch.testing.assert_close(ours, theirs)
    x = data.test.x[:16]
    with torch.no_grad():
        expected = (ensemble.members[0](x) + ensemble.members[1](x)) / 2
        torch.testing.assert_close(ensemble(x), expected)
        assert ensemble.features(x).shape == (16, 2 * tiny_task.backbone.width)


def test_dbat_refuses_a_context_without_pool(tiny_task: Task) -> None:
    ctx = train_context(tiny_task, build_data(tiny_task, 0), Track.T0, 0, CPU, lambda m: None)
    with pytest.raises(ValueError, match="pool"):
        DBAT().fit(ctx)


# --- DivDis ----------------------------------------------------------------------------------


def test_mutual_information_of_independent_heads_is_zero() -> None:
    head_a = one_hot([0, 0, 1, 1])
    head_b = one_hot([0, 1, 0, 1])
    probs = torch.stack([head_a, head_b], dim=1)
    assert pairwise_mutual_information(probs).item() == pytest.approx(0.0, abs=1e-9)
    uncertain = torch.full((6, 2, 2), 0.5, dtype=torch.float64)
    assert pairwise_mutual_information(uncertain).item() == pytest.approx(0.0, abs=1e-9)


def test_mutual_information_of_identical_certain_heads_is_log2() -> None:
    head = one_hot([0, 1, 1, 0])
    assert pairwise_mutual_information(torch.stack([head, head], dim=1)).item() == pytest.approx(LOG2, abs=1e-9)
    flipped = one_hot([1, 0, 0, 1])  # a deterministic function of the first head: still log 2
    assert pairwise_mutual_information(torch.stack([head, flipped], dim=1)).item() == pytest.approx(LOG2, abs=1e-9)


def test_mutual_information_is_the_mean_over_pairs() -> None:
    a, b = one_hot([0, 0, 1, 1]), one_hot([0, 1, 0, 1])
    # pairs (a, a) = log 2, (a, b) = 0, (a, b) = 0
    probs = torch.stack([a, a, b], dim=1)
    assert pairwise_mutual_information(probs).item() == pytest.approx(LOG2 / 3, abs=1e-9)


def test_mutual_information_of_a_soft_joint_by_hand() -> None:
    # head 1 certain and balanced; head 2 says class 1 with probability 0.8 when head 1 does, 0.2 otherwise:
    # joint [[0.4, 0.1], [0.1, 0.4]], marginals 0.5 each
    probs = torch.tensor([[[1.0, 0.0], [0.8, 0.2]], [[0.0, 1.0], [0.2, 0.8]]], dtype=torch.float64)
    expected = 2 * 0.4 * math.log(0.4 / 0.25) + 2 * 0.1 * math.log(0.1 / 0.25)
    assert pairwise_mutual_information(probs).item() == pytest.approx(expected, abs=1e-9)


def test_marginal_kl_by_hand_and_train_side_detached() -> None:
    pool = torch.tensor([[[1.0, 0.0], [0.5, 0.5]], [[0.5, 0.5], [0.5, 0.5]]], dtype=torch.float64)
    # head 0: mean pool prediction (0.75, 0.25); head 1: (0.5, 0.5)
    train = torch.tensor([[[0.5, 0.5], [0.5, 0.5]]], dtype=torch.float64, requires_grad=True)
    head0 = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    value = marginal_kl(pool, train)
    assert value.item() == pytest.approx(head0 / 2, abs=1e-9)
    assert not value.requires_grad  # gradient never reaches the training-side average


def test_divdis_loss_is_sum_of_ces_plus_weighted_terms() -> None:
    torch.manual_seed(0)
    head_logits = torch.randn(5, 3, 2, dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 0, 1])
    pool_probs = torch.randn(7, 3, 2, dtype=torch.float64).softmax(dim=-1)
    ces = sum(F.cross_entropy(head_logits[:, h], y) for h in range(3))
    expected = (ces + 10 * pairwise_mutual_information(pool_probs)
                + 3 * marginal_kl(pool_probs, head_logits.softmax(dim=-1)))
    torch.testing.assert_close(divdis_loss(head_logits, y, pool_probs, 10.0, 3.0), expected)


def test_select_head_uses_the_most_disagreed_examples() -> None:
    # Examples 0-1: the heads disagree confidently and head 1 is right. Examples 2-5: they disagree
    # barely (0.52 vs 0.48) and head 0 is right. The 2 most-disagreed pick head 1; all 6 pick head 0.
    y = torch.tensor([1, 0, 1, 1, 0, 0])
    lean = 0.04
    head0 = torch.tensor([[3.0, -3.0], [-3.0, 3.0], [0, lean], [0, lean], [lean, 0], [lean, 0]])
    head1 = torch.tensor([[-3.0, 3.0], [3.0, -3.0], [lean, 0], [lean, 0], [0, lean], [0, lean]])
    logits = torch.stack([head0, head1], dim=1)
    assert select_head(logits, y, n_select=2) == 1
    assert select_head(logits, y, n_select=100) == 0
    tied = torch.stack([head1, head1], dim=1)
    assert select_head(tied, y, n_select=3) == 0  # a tie goes to the lowest index


def test_registry_knows_the_new_methods() -> None:
    for name, track in (("d-bat", Track.T1), ("divdis", Track.T1), ("divdis-t2", Track.T2)):
        info = resolve_method(name)
        assert (info.name, info.track) == (name, track) and (info.cls.name, info.cls.track) == (name, track)


def test_multihead_forward_mean_or_selected() -> None:
    torch.manual_seed(0)
    model = MultiHead(FCN(4, 8, 2), 8, heads=3)
    x = torch.randn(5, 4)
    heads = model.head_logits(x)
    assert heads.shape == (5, 3, 2)
    torch.testing.assert_close(model(x), heads.mean(dim=1))
    torch.testing.assert_close(model.features(x), model.backbone.features(x))
    model.head = 2
    torch.testing.assert_close(model(x), heads[:, 2])


def test_t2_head_selection_sees_val_not_test(tiny_task: Task, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[torch.Tensor] = []
    real = divdis_module.select_head

    def spy(head_logits: torch.Tensor, y: torch.Tensor, n_select: int) -> int:
        seen.append(y.clone())
        return real(head_logits, y, n_select)

    monkeypatch.setattr(divdis_module, "select_head", spy)
    info = resolve_method("divdis-t2")
    result = run_job(info, info.configure({"epochs": 3}), tiny_task, 0, device=CPU)
    assert result.status == "ok", result.error
    data = build_data(tiny_task, 0)
    assert len(seen) == 1
    assert torch.equal(seen[0], data.val.y)
    assert len(seen[0]) != len(data.test.y)


def test_t2_refuses_a_context_without_val(tiny_task: Task) -> None:
    ctx = train_context(tiny_task, build_data(tiny_task, 0), Track.T1, 0, CPU, lambda m: None)
    with pytest.raises(ValueError, match="validation"):
        DivDisT2().fit(ctx)


# --- shared pieces and end to end --------------------------------------------------------------


def test_pool_sampler_is_seeded_and_leaves_the_global_rng_alone() -> None:
    pool = torch.arange(100.0).unsqueeze(1)
    torch.manual_seed(5)
    before = torch.get_rng_state()
    first = PoolSampler(pool, 8, seed=3)()
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(first, PoolSampler(pool, 8, seed=3)())
    assert not torch.equal(first, PoolSampler(pool, 8, seed=4)())


def test_fixed_epochs_turns_early_stopping_off(tiny_task: Task) -> None:
    config = fixed_epochs(tiny_task.budget, 7)
    assert (config.max_epochs, config.stop_train_acc, config.stop_train_loss) == (7, None, None)
    assert config.lr == tiny_task.budget.lr and config.batch_size == tiny_task.budget.batch_size


@pytest.mark.parametrize("name", ["d-bat", "divdis", "divdis-t2"])
def test_end_to_end_on_the_tiny_task(name: str, tiny_task: Task) -> None:
    info = resolve_method(name)
    assert info.track == (Track.T2 if name == "divdis-t2" else Track.T1)
    result = run_job(info, info.configure({"epochs": 3}), tiny_task, 1, device=CPU)
    assert result.status == "ok", result.error
    assert 0.5 <= result.metrics["acc"] <= 1.0  # the tiny task's 5-epoch budget: only S is learned reliably
    assert 0 <= result.metrics["feature_availability"] <= 1
    assert result.hparams["epochs"] == 3


def test_divdis_t1_returns_the_head_average(tiny_task: Task) -> None:
    data = build_data(tiny_task, 0)
    torch.manual_seed(0)
    model = DivDis.with_overrides({"epochs": 1}).fit(train_context(tiny_task, data, Track.T1, 0, CPU, lambda m: None))
    assert isinstance(model, MultiHead) and model.head is None and model.n_heads == 4
