"""Small reusable 2-D building blocks shared by the task networks (flow, detection, ...).

Every block here works on 4-D tensors ``(N, C, H, W)``; wrap them with
:func:`evframe.models.temporal.seq_wise` to apply them to sequences ``(T, B, C, H, W)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

NORMS = ("batch", "group", "instance", "none")
ACTIVATIONS = ("relu", "leaky_relu", "silu", "gelu", "sigmoid", "tanh", "none")


def make_norm(name: str, channels: int, num_groups: int = 8) -> nn.Module:
    """Returns a normalisation layer for ``channels`` feature maps.

    ``name`` is one of :data:`NORMS`. ``group`` uses ``min(num_groups, channels)`` groups, reduced until it
    divides ``channels`` (so odd channel counts still work).
    """
    if name == "batch":
        return nn.BatchNorm2d(channels)
    if name == "group":
        groups = min(num_groups, channels)
        while channels % groups:
            groups -= 1
        return nn.GroupNorm(groups, channels)
    if name == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if name == "none":
        return nn.Identity()
    raise ValueError(f"evframe.models.layers: norm={name!r} is not one of {NORMS}")


def make_activation(name: str) -> nn.Module:
    """Returns an activation module; ``name`` is one of :data:`ACTIVATIONS` (``none`` = identity)."""
    factories: dict[str, Callable[[], nn.Module]] = {
        "relu": lambda: nn.ReLU(inplace=True),
        "leaky_relu": lambda: nn.LeakyReLU(0.1, inplace=True),
        "silu": lambda: nn.SiLU(inplace=True),
        "gelu": nn.GELU,
        "sigmoid": nn.Sigmoid,
        "tanh": nn.Tanh,
        "none": nn.Identity,
    }
    if name not in factories:
        raise ValueError(f"evframe.models.layers: activation={name!r} is not one of {ACTIVATIONS}")
    return factories[name]()


def _check_positive(**values: int) -> None:
    for key, value in values.items():
        if int(value) < 1:
            raise ValueError(f"evframe.models.layers: {key} must be >= 1, got {value}")


class ConvLayer(nn.Sequential):
    """Conv2d -> norm -> activation.

    Args:
        in_channels, out_channels: feature maps in and out.
        kernel_size, stride, padding, dilation: as in ``nn.Conv2d``; ``padding=None`` keeps the spatial size
            (for stride 1) with ``dilation * (kernel_size // 2)``.
        norm: one of :data:`NORMS`. The conv has a bias only when there is no norm (a norm's shift replaces it).
        act: one of :data:`ACTIVATIONS`.
        groups: conv groups.

    Input ``(N, in_channels, H, W)`` -> output ``(N, out_channels, H', W')``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        dilation: int = 1,
        norm: str = "batch",
        act: str = "relu",
        groups: int = 1,
    ) -> None:
        _check_positive(in_channels=in_channels, out_channels=out_channels, kernel_size=kernel_size, stride=stride)
        if padding is None:
            padding = dilation * (kernel_size // 2)
        conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=norm == "none",
        )
        super().__init__(conv, make_norm(norm, out_channels), make_activation(act))
        self.in_channels = in_channels
        self.out_channels = out_channels


class SeparableConvLayer(nn.Sequential):
    """Depthwise conv (spatial, one filter per channel) -> pointwise 1x1 conv -> norm -> activation.

    About ``k*k / out_channels + 1/k^2``-times fewer multiply-adds and weights than a full ConvLayer, which is why
    the flow networks use it by default. Same arguments and shapes as :class:`ConvLayer`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        dilation: int = 1,
        norm: str = "batch",
        act: str = "relu",
    ) -> None:
        _check_positive(in_channels=in_channels, out_channels=out_channels, kernel_size=kernel_size, stride=stride)
        if padding is None:
            padding = dilation * (kernel_size // 2)
        depthwise = nn.Conv2d(
            in_channels,
            in_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=in_channels,
            bias=False,
        )
        pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=norm == "none")
        super().__init__(depthwise, pointwise, make_norm(norm, out_channels), make_activation(act))
        self.in_channels = in_channels
        self.out_channels = out_channels


def conv_layer(
    in_channels: int,
    out_channels: int,
    kernel_size: int = 3,
    stride: int = 1,
    padding: int | None = None,
    dilation: int = 1,
    norm: str = "batch",
    act: str = "relu",
    separable: bool = False,
) -> nn.Module:
    """Returns a :class:`SeparableConvLayer` if ``separable`` else a :class:`ConvLayer` with the same arguments.

    A 1x1 kernel is never made separable (the depthwise part would only be a per-channel scale).
    """
    cls = SeparableConvLayer if separable and kernel_size > 1 else ConvLayer
    return cls(in_channels, out_channels, kernel_size, stride, padding, dilation, norm=norm, act=act)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation channel attention (Hu et al. 2018).

    Global average pool -> 1x1 conv (channels/reduction) -> ReLU -> 1x1 conv -> sigmoid, then rescales each
    input channel by its gate. Input and output ``(N, C, H, W)``.
    """

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        _check_positive(channels=channels, reduction=reduction)
        hidden = max(channels // reduction, 4)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = x.mean(dim=(2, 3), keepdim=True)
        gate = torch.sigmoid(self.fc2(torch.relu(self.fc1(gate))))
        return x * gate


class ResBlock(nn.Module):
    """Basic residual block: two 3x3 conv layers (optionally separable, optionally followed by squeeze-excite)
    plus a shortcut; the shortcut is a strided 1x1 ConvLayer when the shape changes.

    Input ``(N, in_channels, H, W)`` -> output ``(N, out_channels, ceil(H/stride), ceil(W/stride))``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        separable: bool = False,
        norm: str = "batch",
        act: str = "relu",
        squeeze_excite: bool = False,
    ) -> None:
        super().__init__()
        self.conv1 = conv_layer(in_channels, out_channels, 3, stride, norm=norm, act=act, separable=separable)
        self.conv2 = conv_layer(out_channels, out_channels, 3, 1, norm=norm, act="none", separable=separable)
        self.se = SqueezeExcite(out_channels) if squeeze_excite else nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut: nn.Module = ConvLayer(in_channels, out_channels, 1, stride, 0, norm=norm, act="none")
        else:
            self.shortcut = nn.Identity()
        self.act = make_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.se(self.conv2(self.conv1(x))) + self.shortcut(x))


class SEConvLayer(nn.Sequential):
    """(Separable) conv layer followed by squeeze-excitation: the encoder/decoder unit of the ``midinet`` family.

    Same arguments as :func:`conv_layer` plus ``reduction`` for the SE block.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        separable: bool = True,
        norm: str = "batch",
        act: str = "relu",
        reduction: int = 4,
    ) -> None:
        super().__init__(
            conv_layer(in_channels, out_channels, kernel_size, stride, norm=norm, act=act, separable=separable),
            SqueezeExcite(out_channels, reduction),
        )
        self.in_channels = in_channels
        self.out_channels = out_channels
