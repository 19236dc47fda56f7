"""Sharpness (the top Hessian eigenvalue of the training loss) against 2/lr: the power
iteration on quadratics whose Hessian is known, a 2-parameter model worked out by hand, the
training loop's estimates (a pack member's equal its solo run's; the run's own curve is
bitwise what it is without them) and the stability limits of each rule."""

import math

import pytest
import torch
import torch.nn.functional as F

from engine import diagnostics
from engine.config import RunConfig
from engine.events import SHARPNESS, STABILITY_LIMIT, Evaluated, StepLoss
from engine.trainer import train, train_runs

TOY = dict(dataset="spirals", toy_samples=200, batch_size=16, epochs=2, depth=2, width=[8],
           device="cpu", lr=0.05)


def solo_sum(t):
    return t.sum().reshape(1)


@pytest.mark.parametrize("eigenvalues", [(5.0, 2.0, -1.0, 0.5), (0.3, 0.1), (7.0, 6.9, 1.0)])
def test_power_iteration_finds_the_top_eigenvalue_of_a_known_quadratic(eigenvalues):
    torch.manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(len(eigenvalues), len(eigenvalues)))
    hessian = q @ torch.diag(torch.tensor(eigenvalues)) @ q.T        # 0.5 x'Hx, rotated
    x = torch.zeros(len(eigenvalues), requires_grad=True)
    found = diagnostics.top_eigenvalue(lambda v: [hessian @ v[0]], [x], solo_sum, 200)
    assert found.item() == pytest.approx(max(eigenvalues), rel=1e-3)


def test_stacked_members_each_get_their_own_top_eigenvalue():
    # K = 2 independent quadratics stacked (2, 3): block diagonal, one answer per member.
    h = torch.stack([torch.diag(torch.tensor([3.0, 1.0, 0.5])),
                     torch.diag(torch.tensor([0.2, 9.0, 4.0]))])
    x = torch.zeros(2, 3, requires_grad=True)
    found = diagnostics.top_eigenvalue(lambda v: [torch.bmm(h, v[0].unsqueeze(2)).squeeze(2)],
                                       [x], lambda t: t.reshape(2, -1).sum(1), 100)
    assert found.tolist() == pytest.approx([3.0, 9.0], rel=1e-4)


def test_a_two_parameter_softmax_model_by_hand():
    # logits (w1 x, w2 x) for one example x of class 0: with p = softmax(logits)[0], the
    # Hessian of the cross-entropy is x^2 p(1-p) [[1, -1], [-1, 1]]: top eigenvalue 2 x^2 p(1-p)
    w = torch.tensor([0.3, -0.4], requires_grad=True)
    x = 1.5
    loss = F.cross_entropy((w * x).unsqueeze(0), torch.tensor([0]))
    grads = torch.autograd.grad(loss, [w], create_graph=True)
    p = torch.softmax(w.detach() * x, 0)[0].item()
    found = diagnostics.top_eigenvalue(
        lambda v: torch.autograd.grad(grads, [w], grad_outputs=v, retain_graph=True),
        [w], solo_sum, 50)
    assert found.item() == pytest.approx(2 * x * x * p * (1 - p), rel=1e-5)


def estimates(events, run):
    return [(e.step, e.metrics[SHARPNESS], e.metrics.get(STABILITY_LIMIT)) for e in events
            if isinstance(e, Evaluated) and e.run == run and SHARPNESS in e.metrics]


def test_the_loop_measures_sharpness_every_n_steps_without_touching_the_run():
    cfg = RunConfig(**TOY, sharpness_every=5)
    events, plain = [], []
    train(cfg, run_id="a", emit=events.append)
    train(cfg.replace(sharpness_every=0), run_id="a", emit=plain.append)
    found = estimates(events, "a")
    assert [s for s, _, _ in found] == [5, 10, 15, 20]
    assert all(v > 0 and limit == pytest.approx(2 / 0.05) for _, v, limit in found)
    # evaluation mode, autograd.grad only, its own generator: the curve is bitwise the same
    assert [e.loss for e in events if isinstance(e, StepLoss)] == \
        [e.loss for e in plain if isinstance(e, StepLoss)]
    packed = []
    train_runs([cfg, cfg.replace(seed=3, lr=0.1)], run_ids=["a", "b"], emit=packed.append)
    member = estimates(packed, "a")
    assert [s for s, _, _ in member] == [s for s, _, _ in found]
    assert [v for _, v, _ in member] == pytest.approx([v for _, v, _ in found], rel=1e-3)


@pytest.mark.parametrize("optimizer,expected", [
    ("sgd", 2 / 0.1), ("momentum", 2 * 1.9 / 0.1), ("nesterov", 2 * 1.9 / (2.8 * 0.1)),
    ("course-momentum", 2 * 1.9 / (0.1 * 0.1)), ("adam", None), ("rmsprop", None)])
def test_stability_limits_of_each_rule(optimizer, expected):
    cfg = RunConfig(**{**TOY, "optimizer": optimizer, "lr": 0.1, "momentum": 0.9})
    limit = diagnostics.stability_limit(cfg, 0.1)
    assert limit == (pytest.approx(expected) if expected else None)
    assert limit is None or math.isfinite(limit)
