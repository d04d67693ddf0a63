"""Reusable 2-D blocks: shapes, separable savings, squeeze-excite and residual values by hand."""

from __future__ import annotations

import math

import pytest
import torch

from evframe.models.layers import (
    ConvLayer,
    ResBlock,
    SEConvLayer,
    SeparableConvLayer,
    SqueezeExcite,
    conv_layer,
    make_activation,
    make_norm,
)


def _params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("cls", [ConvLayer, SeparableConvLayer])
def test_conv_layers_shapes(cls):
    layer = cls(6, 16, 3, stride=2)
    assert layer(torch.randn(2, 6, 15, 20)).shape == (2, 16, 8, 10)
    assert cls(6, 16, 3, dilation=2)(torch.randn(1, 6, 9, 9)).shape == (1, 16, 9, 9)


def test_separable_is_smaller_and_bias_only_without_norm():
    assert _params(SeparableConvLayer(32, 64)) < _params(ConvLayer(32, 64)) / 5
    assert ConvLayer(4, 8, norm="batch")[0].bias is None
    assert ConvLayer(4, 8, norm="none")[0].bias is not None
    assert isinstance(conv_layer(4, 8, 1, separable=True), ConvLayer)  # 1x1 never made separable


def test_conv_layer_value():
    layer = ConvLayer(1, 1, 3, norm="none", act="relu")
    with torch.no_grad():
        layer[0].weight.fill_(1.0)
        layer[0].bias.fill_(-2.0)
    x = torch.ones(1, 1, 3, 3)
    out = layer(x)
    # centre sees 9 ones -> 7; a corner sees 4 ones -> 2; relu keeps both
    assert out[0, 0, 1, 1].item() == pytest.approx(7.0)
    assert out[0, 0, 0, 0].item() == pytest.approx(2.0)


def test_squeeze_excite_gate():
    se = SqueezeExcite(8)
    with torch.no_grad():
        se.fc2.weight.zero_()
        se.fc2.bias.fill_(math.log(3.0))  # sigmoid(log 3) = 0.75
    x = torch.randn(2, 8, 5, 5)
    assert torch.allclose(se(x), 0.75 * x, atol=1e-6)


def test_res_block_identity_when_branch_is_zero():
    block = ResBlock(4, 4, norm="none", act="relu")
    with torch.no_grad():
        block.conv2[0].weight.zero_()
        block.conv2[0].bias.zero_()
    x = torch.randn(2, 4, 6, 6)
    assert torch.allclose(block(x), torch.relu(x))
    down = ResBlock(4, 8, stride=2, separable=True, squeeze_excite=True)
    assert down(x).shape == (2, 8, 3, 3)
    assert SEConvLayer(4, 8, stride=2)(x).shape == (2, 8, 3, 3)


def test_bad_names():
    with pytest.raises(ValueError, match="norm"):
        make_norm("layer", 4)
    with pytest.raises(ValueError, match="activation"):
        make_activation("swish2")
    with pytest.raises(ValueError, match="out_channels"):
        ConvLayer(4, 0)
    assert isinstance(make_norm("group", 6), torch.nn.GroupNorm)  # 6 channels: groups reduced to divide
