"""The options the seed notebooks need, each checked to change exactly what it should:
norm_first_layer, the course optimizers' own constants, shuffle / sample_with_replacement,
val_from / val_size, input_norm mean-image, bias, input_bn, keep_best."""

import math

import pytest
import torch
from torch import nn

from engine import config, data, models, optim, packs, stepper, trainer
from engine.config import ConfigError, RunConfig
from engine.events import VAL_ACC, Evaluated
from tests.datafiles import write_idx_dataset


@pytest.fixture(autouse=True)
def _fresh_cache():
    data.clear_cache()
    yield
    data.clear_cache()


def _norms(module):
    return [m for m in module.modules() if isinstance(m, (models.CourseLayerNorm, nn.LayerNorm))]


def test_norm_first_layer_false_leaves_only_the_first_hidden_layer_plain():
    cfg = RunConfig(dataset="spirals", depth=4, width=[8], norm="layer", norm_impl="course")
    on = models.build_model(cfg, (2,), 3)
    off = models.build_model(cfg.replace(norm_first_layer=False), (2,), 3)
    assert len(_norms(on)) == 4 and len(_norms(off)) == 3
    hidden = [m for m in off if isinstance(m, models.HiddenLayer)]
    assert _norms(hidden[0]) == [] and all(len(_norms(h)) == 1 for h in hidden[1:])
    # no norm: the option changes nothing
    plain = RunConfig(dataset="spirals", depth=4, width=[8])
    assert str(models.build_model(plain, (2,), 3)) == \
        str(models.build_model(plain.replace(norm_first_layer=False), (2,), 3))


def test_course_optimizers_get_the_notebooks_constants_unless_changed():
    adam = RunConfig(optimizer="course-adam")
    assert (adam.beta2, adam.eps, adam.bias_correction) == (0.99, 1e-7, False)
    rms = RunConfig(optimizer="course-rmsprop")
    assert (rms.alpha, rms.eps) == (0.9, 1e-7)
    # values the user changed are kept; torch's rules keep torch's defaults
    assert RunConfig(optimizer="course-adam", beta2=0.95, eps=1e-4).beta2 == 0.95
    assert RunConfig(optimizer="course-rmsprop", alpha=0.5).alpha == 0.5
    torch_adam = RunConfig(optimizer="adam")
    assert (torch_adam.beta2, torch_adam.eps) == (0.999, 1e-8)
    assert RunConfig(optimizer="course-adam", bias_correction=True).bias_correction is True
    group = optim.build_optimizer(adam, [nn.Parameter(torch.zeros(1))]).param_groups[0]
    assert group["betas"] == (0.9, 0.99) and group["eps"] == 1e-7
    assert group["bias_correction"] is False
    # stored and read back: the same values (idempotent)
    assert RunConfig.from_dict(adam.to_dict()) == adam


def test_unshuffled_batches_repeat_and_replacement_draws_full_batches():
    g = torch.Generator().manual_seed(0)
    a = data.batch_indices(10, 4, g, False, "cpu", shuffle=False)
    b = data.batch_indices(10, 4, g, False, "cpu", shuffle=False)
    assert [t.tolist() for t in a] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert [t.tolist() for t in a] == [t.tolist() for t in b]
    drawn = data.batch_indices(10, 4, torch.Generator().manual_seed(1), True, "cpu",
                               replacement=True)
    assert len(drawn) == 2 and all(len(t) == 4 for t in drawn)      # 10 // 4 batches of 4
    assert len(data.batch_indices(10, 4, g, False, "cpu", replacement=True)) == 3
    again = data.batch_indices(10, 4, torch.Generator().manual_seed(1), True, "cpu",
                               replacement=True)
    assert [t.tolist() for t in drawn] == [t.tolist() for t in again]
    # many draws of 2 from 3: a repeat within a batch must occur (impossible by permutation)
    many = data.batch_indices(3, 2, torch.Generator().manual_seed(2), False, "cpu",
                              replacement=True)
    many += [t for _ in range(20) for t in data.batch_indices(
        3, 2, torch.Generator().manual_seed(_ + 3), False, "cpu", replacement=True)]
    assert any(t[0] == t[1] for t in many)


def test_val_from_validates_on_training_images_beyond_the_subset(tmp_path):
    write_idx_dataset(tmp_path, "mnist", n_train=64, n_test=8)
    base = dict(dataset="mnist", data_dir=str(tmp_path), batch_size=4, input_norm="none")
    cfg = RunConfig(**base, train_subset=16, val_from=40, val_size=20)
    prepared = data.prepare_data(cfg, "cpu")
    whole = data.prepare_data(RunConfig(**base), "cpu")
    assert torch.equal(prepared.x_train, whole.x_train[:16])
    assert torch.equal(prepared.x_val, whole.x_train[40:60])
    assert torch.equal(prepared.y_val, whole.y_train[40:60])
    assert config.split_sizes(cfg) == (16, 20)
    with pytest.raises(ConfigError, match="train_subset"):
        RunConfig(**base, train_subset=50, val_from=40)          # would overlap
    with pytest.raises(ConfigError, match="val_split"):
        RunConfig(**base, train_subset=16, val_from=40, val_split=0.1)
    with pytest.raises(ConfigError, match="val_from"):
        data.prepare_data(RunConfig(**base, train_subset=16, val_from=60, val_size=10), "cpu")


def test_mean_image_subtracts_the_mean_training_image(tmp_path):
    write_idx_dataset(tmp_path, "mnist", n_train=32, n_test=8)
    base = dict(dataset="mnist", data_dir=str(tmp_path), batch_size=4)
    raw = data.prepare_data(RunConfig(**base, input_norm="none"), "cpu")
    centered = data.prepare_data(RunConfig(**base, input_norm="mean-image"), "cpu")
    mean_image = raw.x_train.mean(dim=0, keepdim=True)
    assert torch.allclose(centered.x_train, raw.x_train - mean_image, atol=1e-6)
    assert torch.allclose(centered.x_val, raw.x_val - mean_image, atol=1e-6)
    assert centered.x_train.mean(dim=0).abs().max() < 1e-6


def test_bias_false_and_input_bn():
    cfg = RunConfig(dataset="spirals", depth=2, width=[8])
    linears = [m for m in models.build_model(cfg.replace(bias=False), (2,), 3).modules()
               if isinstance(m, nn.Linear)]
    assert len(linears) == 3 and all(m.bias is None for m in linears)
    assert models.count_parameters(models.build_model(cfg, (2,), 3)) - \
        models.count_parameters(models.build_model(cfg.replace(bias=False), (2,), 3)) == 8 + 8 + 3
    with_bn = models.build_model(cfg.replace(input_bn=True), (2,), 3)
    assert isinstance(with_bn[1], nn.BatchNorm1d) and with_bn[1].num_features == 2
    assert not any(isinstance(m, nn.BatchNorm1d) for m in models.build_model(cfg, (2,), 3))


def test_keep_best_ends_on_the_best_evaluation():
    cfg = RunConfig(dataset="spirals", toy_samples=64, depth=2, width=[8], batch_size=8,
                    optimizer="sgd", lr=2.0, epochs=6, keep_best=True, diagnostics=False,
                    device="cpu")
    events, passes = [], []
    real_evaluate = stepper.evaluate

    def counting(model, x, y):
        passes.append(len(y))
        return real_evaluate(model, x, y)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stepper, "evaluate", counting)
        ended = trainer.train(cfg, run_id="r", emit=events.append)
    assert ended.status == "completed"
    # keep_best reuses each epoch's evaluation: 7 reports (6 epochs and the restored best),
    # each one pass over the train subset and one over the validation set, nothing more
    assert len(passes) == 2 * 7
    evals = [e for e in events if isinstance(e, Evaluated) and VAL_ACC in e.metrics]
    per_epoch, final = evals[:-1], evals[-1]
    assert len(per_epoch) == 6
    accs = [e.metrics[VAL_ACC] for e in per_epoch]
    best = max(range(6), key=lambda i: (accs[i], -i))
    assert final.metrics[VAL_ACC] == pytest.approx(accs[best])
    assert final.metrics[trainer.BEST_EPOCH] == pytest.approx(per_epoch[best].epoch)
    # without keep_best: one evaluation per epoch, the last one final
    plain = []
    trainer.train(cfg.replace(keep_best=False), run_id="p", emit=plain.append)
    assert len([e for e in plain if isinstance(e, Evaluated) and VAL_ACC in e.metrics]) == 6


def test_every_option_of_the_seeds_packs_keep_best_included():
    cfg = RunConfig(dataset="spirals", depth=2, width=[8])
    assert packs.can_pack([cfg, cfg.replace(seed=1)])[0]
    # norm_first_layer, bias, input_bn, shuffle, sample_with_replacement and keep_best pack
    # (tests/engine/test_packs.py checks them against solo runs); keep_best may even differ
    # between members.
    assert packs.can_pack([cfg.replace(keep_best=True), cfg.replace(seed=1)]) == (True, "")


def test_zero_bias_false_keeps_torchs_default_biases_under_kaiming():
    import torch as _torch
    cfg = RunConfig(dataset="spirals", depth=2, width=[8], init="kaiming")
    _torch.manual_seed(3)
    zeroed = models.build_model(cfg, (2,), 3)
    _torch.manual_seed(3)
    kept = models.build_model(cfg.replace(zero_bias=False), (2,), 3)
    _torch.manual_seed(3)
    default = models.build_model(cfg.replace(init="default"), (2,), 3)
    linears = lambda m: [x for x in m.modules() if isinstance(x, nn.Linear)]   # noqa: E731
    assert all(float(x.bias.abs().sum()) == 0.0 for x in linears(zeroed))
    # the same biases torch's own init draws (the weights are drawn first either way)
    for a, b in zip(linears(kept), linears(default)):
        assert _torch.equal(a.bias, b.bias) and not _torch.equal(a.weight, b.weight)
    assert config.applies("zero_bias", cfg) and not config.applies("zero_bias", cfg.replace(
        init="default"))
