"""engine.optim: each update rule's first steps against values worked out from its formula,
the config-to-optimizer mapping, and the learning rate after each epoch of each schedule.

Every rule runs on one scalar weight w0 = 1 with the same gradient g = 0.5 at every step
and lr = 0.1, so the expected values below are short hand calculations.
"""

import math

import pytest
import torch

from engine import config, optim

W0, G, LR = 1.0, 0.5, 0.1


def run_steps(optimizer_name, steps=3, **options):
    """Weights after each step, with the gradient fixed at G."""
    cfg = config.RunConfig(optimizer=optimizer_name, lr=LR, batch_size=8, **options)
    w = torch.nn.Parameter(torch.tensor([W0], dtype=torch.float64))
    opt = optim.build_optimizer(cfg, [w])
    history = []
    for _ in range(steps):
        w.grad = torch.tensor([G], dtype=torch.float64)
        opt.step()
        history.append(w.item())
    return history, opt


def assert_steps(actual, expected):
    assert actual == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_sgd():
    assert_steps(run_steps("sgd")[0], [0.95, 0.90, 0.85])           # w -= lr * g


def test_sgd_weight_decay_is_l2():
    w1 = W0 - LR * (G + 0.1 * W0)                                   # g + wd * w
    w2 = w1 - LR * (G + 0.1 * w1)
    assert_steps(run_steps("sgd", 2, weight_decay=0.1)[0], [w1, w2])


def test_torch_momentum_and_nesterov():
    # torch: buf = m * buf + g (buf = g at first); w -= lr * buf
    assert_steps(run_steps("momentum")[0], [1 - 0.05, 0.95 - 0.095, 0.855 - 0.1355])
    # nesterov: w -= lr * (g + m * buf)
    assert_steps(run_steps("nesterov", 2)[0], [1 - 0.1 * (0.5 + 0.9 * 0.5),
                                               0.905 - 0.1 * (0.5 + 0.9 * 0.95)])
    history, opt = run_steps("nesterov", 1, momentum=0.0)          # momentum 0: plain SGD
    assert_steps(history, [0.95])
    assert opt.param_groups[0]["nesterov"] is False


def test_torch_rmsprop_adagrad_adam_adamw():
    s1 = 0.01 * G**2                                   # alpha 0.99
    s2 = 0.99 * s1 + 0.01 * G**2
    w1 = W0 - LR * G / (math.sqrt(s1) + 1e-8)          # torch: eps outside the square root
    assert_steps(run_steps("rmsprop", 2)[0], [w1, w1 - LR * G / (math.sqrt(s2) + 1e-8)])
    w1 = W0 - LR * G / (math.sqrt(G**2) + 1e-8)        # adagrad: sum of squares
    assert_steps(run_steps("adagrad", 2)[0], [w1, w1 - LR * G / (math.sqrt(2 * G**2) + 1e-8)])
    # Adam with a constant gradient: bias-corrected moments are exactly g and g^2.
    step = LR * G / (G + 1e-8)
    assert_steps(run_steps("adam")[0], [W0 - step, W0 - 2 * step, W0 - 3 * step])
    w1 = W0 * (1 - LR * 0.1) - step                    # adamw: decoupled decay first
    assert_steps(run_steps("adamw", 2, weight_decay=0.1)[0], [w1, w1 * (1 - LR * 0.1) - step])


def test_course_momentum():
    v1 = 0.1 * G                                        # v = 0.9 v + 0.1 g
    v2 = 0.9 * v1 + 0.1 * G
    v3 = 0.9 * v2 + 0.1 * G
    w1 = W0 - LR * v1
    assert_steps(run_steps("course-momentum")[0], [w1, w1 - LR * v2, w1 - LR * v2 - LR * v3])
    # L2 weight decay: the gradient is g + wd * w
    v1 = 0.1 * (G + 0.5 * W0)
    assert_steps(run_steps("course-momentum", 1, weight_decay=0.5)[0], [W0 - LR * v1])


def test_course_rmsprop_eps_inside_sqrt():
    # alpha 0.9, eps 0.1 (large, so inside vs outside the square root matters)
    s1 = 0.1 * G**2
    s2 = 0.9 * s1 + 0.1 * G**2
    w1 = W0 - LR * G / math.sqrt(s1 + 0.1)
    w2 = w1 - LR * G / math.sqrt(s2 + 0.1)
    history, _ = run_steps("course-rmsprop", 2, alpha=0.9, eps=0.1)
    assert_steps(history, [w1, w2])
    assert history[0] != pytest.approx(W0 - LR * G / (math.sqrt(s1) + 0.1))


@pytest.mark.parametrize("bias_correction", [True, False])
def test_course_adam(bias_correction):
    b1, b2, eps = 0.9, 0.99, 0.01
    w, v, s, expected = W0, 0.0, 0.0, []
    for t in (1, 2, 3):
        v = b1 * v + (1 - b1) * G
        s = b2 * s + (1 - b2) * G**2
        if bias_correction:
            w -= LR * (v / (1 - b1**t)) / math.sqrt(s / (1 - b2**t) + eps)
        else:
            w -= LR * v / math.sqrt(s + eps)                        # the seed's code
        expected.append(w)
    history, opt = run_steps("course-adam", beta1=b1, beta2=b2, eps=eps,
                             bias_correction=bias_correction)
    assert_steps(history, expected)
    # Spot values worked out by hand: with correction v' = 0.5, s' = 0.25 at step 1.
    if bias_correction:
        first = 1 - 0.1 * 0.5 / math.sqrt(0.25 + 0.01)
    else:
        first = 1 - 0.1 * 0.05 / math.sqrt(0.0025 + 0.01)
    assert history[0] == pytest.approx(first, rel=1e-12)
    assert opt.state[opt.param_groups[0]["params"][0]]["step"] == 3


def test_course_optimizers_skip_params_without_grad():
    w = torch.nn.Parameter(torch.ones(2))
    opt = optim.CourseAdam([w], lr=0.1)
    opt.step()
    assert torch.equal(w.detach(), torch.ones(2)) and not opt.state


def test_build_optimizer_passes_hyperparameters():
    w = [torch.nn.Parameter(torch.zeros(1))]

    def build(name, **options):
        cfg = config.RunConfig(optimizer=name, batch_size=8, weight_decay=0.01, **options)
        return optim.build_optimizer(cfg, w)

    expect_types = {"sgd": torch.optim.SGD, "momentum": torch.optim.SGD,
                    "nesterov": torch.optim.SGD, "rmsprop": torch.optim.RMSprop,
                    "adagrad": torch.optim.Adagrad, "adam": torch.optim.Adam,
                    "adamw": torch.optim.AdamW, "course-momentum": optim.CourseMomentum,
                    "course-rmsprop": optim.CourseRMSprop, "course-adam": optim.CourseAdam}
    assert set(expect_types) == set(config.OPTIMIZERS)
    for name, cls in expect_types.items():
        opt = build(name)
        assert type(opt) is cls and opt.param_groups[0]["weight_decay"] == 0.01
    assert build("sgd").param_groups[0]["momentum"] == 0
    assert build("momentum", momentum=0.8).param_groups[0]["momentum"] == 0.8
    assert build("nesterov").param_groups[0]["nesterov"] is True
    assert build("rmsprop", alpha=0.9, eps=1e-7).param_groups[0]["alpha"] == 0.9
    assert build("adam", beta1=0.8, beta2=0.95).param_groups[0]["betas"] == (0.8, 0.95)
    group = build("course-adam", beta2=0.99, eps=1e-7, bias_correction=False).param_groups[0]
    assert group["betas"] == (0.9, 0.99) and group["eps"] == 1e-7
    assert group["bias_correction"] is False
    assert build("course-rmsprop", alpha=0.5).param_groups[0]["alpha"] == 0.5


# --- schedules ---------------------------------------------------------------------------------

def lrs_per_epoch(epochs=5, **options):
    cfg = config.RunConfig(lr=1.0, batch_size=8, epochs=epochs, **options)
    opt = optim.build_optimizer(cfg, [torch.nn.Parameter(torch.zeros(1))])
    schedule = optim.build_schedule(cfg, opt, epochs)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(epochs):
        opt.step()
        schedule.step()
        lrs.append(opt.param_groups[0]["lr"])
    return lrs


def test_schedules():
    cfg = config.RunConfig(batch_size=8)
    opt = optim.build_optimizer(cfg, [torch.nn.Parameter(torch.zeros(1))])
    assert optim.build_schedule(cfg, opt, 10) is None
    assert lrs_per_epoch(schedule="step", lr_step=2, lr_decay=0.5) == \
        pytest.approx([1, 1, 0.5, 0.5, 0.25, 0.25])
    assert lrs_per_epoch(3, schedule="exponential", lr_decay=0.9) == \
        pytest.approx([1, 0.9, 0.81, 0.729])
    # cosine to 0 at the last epoch: lr_t = (1 + cos(pi t / T)) / 2
    assert lrs_per_epoch(4, schedule="cosine") == \
        pytest.approx([(1 + math.cos(math.pi * t / 4)) / 2 for t in range(5)], abs=1e-12)
