"""engine.models: shapes for every option, exact parameter counts, layer placement, init,
and the course normalizations against oracles written from the Homework 8 formulas."""

import itertools
import math

import pytest
import torch
from torch import nn

from engine import config, models
from engine.models import CourseBatchNorm, CourseLayerNorm

FMNIST = (1, 28, 28)
CIFAR = (3, 32, 32)


def cfg(**changes):
    return config.RunConfig(**{"batch_size": 8, **changes})


# --- shapes and parameter counts --------------------------------------------------------------

def test_mlp_options_all_build_and_run():
    options = itertools.product(config.NORMS, config.NORM_IMPLS, config.NORM_POSITIONS,
                                config.RESIDUALS)
    x = torch.randn(4, *FMNIST)
    for i, (norm, impl, position, residual) in enumerate(options):
        activation = config.ACTIVATIONS[i % len(config.ACTIVATIONS)]
        init = config.INITS[i % len(config.INITS)]
        model = models.build_model(cfg(norm=norm, norm_impl=impl, norm_position=position,
                                       residual=residual, activation=activation, init=init,
                                       dropout=0.1, depth=3), FMNIST, 10)
        out = model(x)
        assert out.shape == (4, 10), (norm, impl, position, residual)
        out.sum().backward()
        model.eval()
        assert torch.isfinite(model(x)).all()


@pytest.mark.parametrize("model_name,shape", [
    ("mnist-cnn", FMNIST), ("three-layer-convnet", FMNIST), ("three-layer-convnet", CIFAR),
    ("preact-resnet", CIFAR)])
def test_cnn_options_all_build_and_run(model_name, shape):
    small = {"mnist-cnn": [2, 3], "three-layer-convnet": [2, 3], "preact-resnet": [2, 3, 4]}
    x = torch.randn(3, *shape)
    for norm, impl, position in itertools.product(config.NORMS, config.NORM_IMPLS,
                                                  config.NORM_POSITIONS):
        model = models.build_model(cfg(model=model_name, dataset="mnist", norm=norm,
                                       norm_impl=impl, norm_position=position, dropout=0.2,
                                       channels=small[model_name], depth=1, init="kaiming"),
                                   shape, 7)
        out = model(x)
        assert out.shape == (3, 7), (model_name, norm, impl, position)
        out.sum().backward()


def test_parameter_counts_exact():
    # 784*20+20 + 20*20+20 + 20*10+10: the seed's network.
    assert models.count_parameters(models.build_model(cfg(), FMNIST, 10)) == 16_330
    # torch LayerNorm/BatchNorm1d add 2 affine parameters per unit; running stats are buffers.
    assert models.count_parameters(models.build_model(cfg(norm="layer"), FMNIST, 10)) == 16_410
    assert models.count_parameters(models.build_model(cfg(norm="batch"), FMNIST, 10)) == 16_410
    assert models.count_parameters(
        models.build_model(cfg(norm="batch", norm_impl="course"), FMNIST, 10)) == 16_330
    # Widths per layer: 784*64+64 + 64*32+32 + 32*10+10
    assert models.count_parameters(
        models.build_model(cfg(depth=2, width=[64, 32]), FMNIST, 10)) == 52_650
    # UofT CNN: conv 1*4*9+4, conv 4*8*9+8, fc 8*7*7*10+10
    assert models.count_parameters(models.build_model(cfg(model="mnist-cnn"), FMNIST, 10)) == 4_266
    # cs231n convnet on CIFAR: conv 3*32*25+32, conv 32*16*9+16, fc 16*32*32*10+10
    assert models.count_parameters(
        models.build_model(cfg(model="three-layer-convnet"), CIFAR, 10)) == 170_906
    # preact-resnet channels 4,8,16 depth 1 on MNIST: stem 40, block 2*(4*4*9+4),
    # 1x1 4*8+8, block 2*(8*8*9+8), 1x1 8*16+16, block 2*(16*16*9+16), head 16*10+10
    resnet = models.build_model(cfg(model="preact-resnet", channels=[4, 8, 16], depth=1),
                                FMNIST, 10)
    assert models.count_parameters(resnet) == 40 + 296 + 40 + 1168 + 144 + 4640 + 170
    # A frozen parameter is not trainable, so it is not counted.
    model = models.build_model(cfg(), FMNIST, 10)
    model[-1].weight.requires_grad_(False)
    assert models.count_parameters(model) == 16_330 - 200


def test_default_channels_and_override():
    convs = lambda m: [l.out_channels for l in m.modules() if isinstance(l, nn.Conv2d)]
    assert convs(models.build_model(cfg(model="mnist-cnn"), FMNIST, 10)) == [4, 8]
    overridden = models.build_model(cfg(model="mnist-cnn", channels=[6, 12]), FMNIST, 10)
    assert convs(overridden) == [6, 12]
    assert convs(models.build_model(cfg(model="three-layer-convnet"), FMNIST, 10)) == [32, 16]
    assert convs(models.build_model(cfg(model="preact-resnet", depth=1), CIFAR, 10)) == \
        [16, 16, 16, 32, 32, 32, 64, 64, 64]


# --- placement ------------------------------------------------------------------------------

def test_hidden_layer_norm_position_and_dropout():
    before = models.build_model(cfg(norm="batch", dropout=0.5), FMNIST, 10)
    assert [type(m) for m in before[1]] == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Dropout]
    after = models.build_model(cfg(norm="layer", norm_position="after", activation="tanh"),
                               FMNIST, 10)
    assert [type(m) for m in after[1]] == [nn.Linear, nn.Tanh, nn.LayerNorm]
    course = models.build_model(cfg(norm="layer", norm_impl="course"), FMNIST, 10)
    assert [type(m) for m in course[1]] == [nn.Linear, CourseLayerNorm, nn.ReLU]
    cnn = models.build_model(cfg(model="mnist-cnn", norm="batch", norm_position="after"),
                             FMNIST, 10)
    assert [type(m) for m in cnn[:4]] == [nn.Conv2d, nn.ReLU, nn.BatchNorm2d, nn.MaxPool2d]
    cnn_layer = models.build_model(cfg(model="mnist-cnn", norm="layer"), FMNIST, 10)
    assert isinstance(cnn_layer[1], nn.GroupNorm) and cnn_layer[1].num_groups == 1


def test_post_residual_skips_only_equal_widths():
    model = models.build_model(cfg(residual="post", depth=3, norm="layer", norm_impl="course"),
                               FMNIST, 10)
    assert isinstance(model[1], models.HiddenLayer)            # 784 -> 20: no skip
    assert isinstance(model[2], models.PostResidual) and isinstance(model[3], models.PostResidual)
    x = torch.randn(5, 20)
    layer = model[2].layer
    expected = torch.relu(CourseLayerNorm()(layer[0](x))) + x   # act(norm(xW+b)) + x
    torch.testing.assert_close(model[2](x), expected)
    widths = models.build_model(cfg(residual="post", depth=3, width=[20, 30, 30]), FMNIST, 10)
    assert [type(m).__name__ for m in widths[1:4]] == ["HiddenLayer", "HiddenLayer", "PostResidual"]


def test_pre_residual_form():
    model = models.build_model(cfg(residual="pre", norm="batch", norm_impl="course"), FMNIST, 10)
    block = model[2]
    assert isinstance(model[1], models.HiddenLayer) and isinstance(block, models.PreResidual)
    assert [type(m) for m in block.branch] == [CourseBatchNorm, nn.ReLU, nn.Linear]
    block.eval()   # running stats 0 / 1: norm is x / sqrt(1 + eps)
    x = torch.randn(5, 20)
    linear = block.branch[2]
    expected = x + linear(torch.relu(x / math.sqrt(1 + 1e-7)))
    torch.testing.assert_close(block(x), expected)


def test_preact_resnet_block_structure():
    model = models.build_model(cfg(model="preact-resnet", norm="batch", channels=[4, 8, 16],
                                   depth=2), CIFAR, 10)
    blocks = [m for m in model if isinstance(m, models.PreActBlock)]
    assert len(blocks) == 6
    assert [type(m) for m in blocks[0].branch] == [nn.BatchNorm2d, nn.ReLU, nn.Conv2d,
                                                   nn.BatchNorm2d, nn.ReLU, nn.Conv2d]
    x = torch.randn(2, 4, 8, 8)
    blocks[0].eval()
    torch.testing.assert_close(blocks[0](x), x + blocks[0].branch(x))
    assert [type(m) for m in model[-5:]] == [nn.BatchNorm2d, nn.ReLU, nn.AdaptiveAvgPool2d,
                                             nn.Flatten, nn.Linear]


# --- init ------------------------------------------------------------------------------------

def linear_layers(model):
    return [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def test_inits():
    torch.manual_seed(0)
    zeros = models.build_model(cfg(init="zeros"), FMNIST, 10)
    assert all((l.weight == 0).all() and (l.bias == 0).all() for l in linear_layers(zeros))
    normal = models.build_model(cfg(init="normal", weight_scale=0.05), FMNIST, 10)
    first = linear_layers(normal)[0]
    assert abs(first.weight.std().item() - 0.05) < 0.002 and (first.bias == 0).all()
    kaiming = models.build_model(cfg(init="kaiming", width=[256]), FMNIST, 10)
    first = linear_layers(kaiming)[0]
    assert abs(first.weight.std().item() - math.sqrt(2 / 784)) < 0.002
    xavier = models.build_model(cfg(init="xavier", width=[256]), FMNIST, 10)
    first = linear_layers(xavier)[0]
    bound = math.sqrt(6 / (784 + 256))
    assert first.weight.abs().max() <= bound and first.weight.abs().max() > 0.95 * bound
    default = models.build_model(cfg(), FMNIST, 10)
    assert all((l.bias != 0).any() for l in linear_layers(default))
    cnn = models.build_model(cfg(model="mnist-cnn", init="zeros"), FMNIST, 10)
    assert all((l.weight == 0).all() for l in linear_layers(cnn))


def test_activations():
    for name, cls in models.ACTIVATIONS.items():
        model = models.build_model(cfg(activation=name), FMNIST, 10)
        assert isinstance(model[1][1], cls)


# --- the course normalizations against their formulas ---------------------------------------------

def layer_norm_oracle(x, eps=1e-7):
    """Homework 8: mean and unbiased variance of each row, written out as sums."""
    d = x.shape[1]
    mean = x.sum(dim=1, keepdim=True) / d
    var = ((x - mean) ** 2).sum(dim=1, keepdim=True) / (d - 1)
    return (x - mean) / (var + eps) ** 0.5


def batch_norm_oracle(x, eps=1e-7):
    n = x.shape[0]
    mean = x.sum(dim=0, keepdim=True) / n
    var = ((x - mean) ** 2).sum(dim=0, keepdim=True) / (n - 1)
    return (x - mean) / (var + eps) ** 0.5, mean.squeeze(0), var.squeeze(0)


def check_against(module, oracle, x):
    x1 = x.clone().requires_grad_(True)
    x2 = x.clone().requires_grad_(True)
    upstream = torch.randn_like(x)
    out = module(x1)
    expected = oracle(x2)
    torch.testing.assert_close(out, expected)
    (out * upstream).sum().backward()
    (expected * upstream).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)


def test_course_layer_norm_matches_formula_and_gradient():
    torch.manual_seed(0)
    x = torch.randn(6, 5, dtype=torch.float64) * 3 + 1
    check_against(CourseLayerNorm(), layer_norm_oracle, x)
    out = CourseLayerNorm()(x)
    # Unbiased variance: each row's unbiased variance is 1 (biased would give (d-1)/d).
    torch.testing.assert_close(out.var(dim=1), torch.ones(6, dtype=torch.float64))
    assert not any(True for _ in CourseLayerNorm().parameters())


def test_course_layer_norm_on_conv_features():
    x = torch.randn(3, 2, 4, 4, dtype=torch.float64)
    flat = lambda t: layer_norm_oracle(t.reshape(3, -1)).reshape(3, 2, 4, 4)
    check_against(CourseLayerNorm(), flat, x)


def test_course_batch_norm_training_eval_and_running_stats():
    torch.manual_seed(1)
    x = torch.randn(8, 3, dtype=torch.float64) * 2 + 0.5
    bn = CourseBatchNorm(3).double()
    check_against(bn, lambda t: batch_norm_oracle(t)[0], x)
    # check_against ran one training forward: running = 0.9 * (0, 1) + 0.1 * batch stats
    _, mean, var = batch_norm_oracle(x)
    torch.testing.assert_close(bn.running_mean, 0.1 * mean)
    torch.testing.assert_close(bn.running_var, 0.9 + 0.1 * var)
    assert bn.running_mean.grad_fn is None and not bn.running_mean.requires_grad
    assert {name for name, _ in bn.named_buffers()} == {"running_mean", "running_var"}
    bn.eval()
    y = torch.randn(4, 3, dtype=torch.float64)
    torch.testing.assert_close(bn(y), (y - 0.1 * mean) / torch.sqrt(0.9 + 0.1 * var + 1e-7))
    torch.testing.assert_close(bn.running_mean, 0.1 * mean)        # eval does not update


def test_course_batch_norm_on_conv_features_against_torch_functional():
    torch.manual_seed(2)
    x = torch.randn(4, 3, 5, 5, dtype=torch.float64)
    bn = CourseBatchNorm(3).double()
    out = bn(x)
    # torch's functional statistics with correction=1 over (N, H, W) per channel
    var, mean = torch.var_mean(x, dim=(0, 2, 3), correction=1, keepdim=True)
    torch.testing.assert_close(out, (x - mean) / torch.sqrt(var + 1e-7))
    torch.testing.assert_close(bn.running_var, 0.9 + 0.1 * var.flatten())
    # torch's own batch norm uses the biased variance for normalization: the two differ.
    assert not torch.allclose(out, nn.functional.batch_norm(x, None, None, training=True,
                                                            eps=1e-7))


def test_course_batch_norm_follows_model_device_and_mode():
    model = models.build_model(cfg(norm="batch", norm_impl="course"), FMNIST, 10)
    bn = model[1][1]
    assert "1.1.running_mean" in model.state_dict()
    model.to(torch.float64)
    assert bn.running_mean.dtype == torch.float64                 # buffers move with the model
    model.eval()
    x = torch.randn(1, *FMNIST, dtype=torch.float64)              # batch of one works in eval
    assert torch.isfinite(model(x)).all()
