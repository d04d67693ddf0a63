"""Box regression and classification head shared by every pyramid level (Metavision's ``detection.rpn``)."""

import math

import torch
from torch import nn

#: probability of the background class that the classification head predicts at initialisation (Lin et al. 2017,
#: Focal Loss for Dense Object Detection): rare foreground classes must not swamp the loss at the start
BACKGROUND_PRIOR = 0.99


def softmax_init(l: nn.Conv2d, num_anchors: int, num_logits: int) -> None:  # noqa: E741 - reference's name
    """Initialises the last classification layer so that softmax gives the background ``BACKGROUND_PRIOR``.

    Its outputs are ``num_anchors`` groups of ``num_logits`` logits (background first). With every foreground logit
    at 0 and the background logit at ``b``, ``p(background) = e^b / (e^b + K - 1)`` where ``K = num_logits``, so
    ``b = log(p (K - 1) / (1 - p))``. Weights are drawn from N(0, 0.01) so the prior holds for any input.
    """
    if num_logits < 2:
        raise ValueError(f"softmax_init: num_logits must count the background and at least one class, got "
                         f"{num_logits}")
    nn.init.normal_(l.weight, std=0.01)
    bias = torch.zeros(num_anchors, num_logits)
    bias[:, 0] = math.log(BACKGROUND_PRIOR * (num_logits - 1) / (1 - BACKGROUND_PRIOR))
    with torch.no_grad():
        l.bias.copy_(bias.reshape(-1))


def _mini_convnet(in_channels: int, out_channels: int, n_layers: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(n_layers):
        layers += [nn.Conv2d(in_channels, in_channels, 3, padding=1), nn.ReLU(inplace=True)]
    layers.append(nn.Conv2d(in_channels, out_channels, 3, padding=1))
    return nn.Sequential(*layers)


class BoxHead(nn.Module):
    """Two small stride-1 convnets applied to every pyramid level: box deltas and class logits per anchor.

    Args:
        in_channels: channels of every feature map.
        num_anchors: anchors per feature-map cell.
        num_logits: classes + 1 (background is logit 0).
        n_layers: 3x3 conv + ReLU layers before each final 3x3 prediction conv.

    ``forward(xs)`` takes maps ``(N, in_channels, h_l, w_l)`` and returns ``[loc (N, A, 4), cls (N, A, num_logits)]``
    with ``A = sum_l h_l * w_l * num_anchors``, anchors ordered by level, row, column, anchor (as
    :class:`~evframe.tasks.detection.anchors.Anchors`).
    """

    def __init__(self, in_channels: int, num_anchors: int, num_logits: int, n_layers: int = 3) -> None:
        super().__init__()
        self.num_anchors = int(num_anchors)
        self.num_logits = int(num_logits)
        self.loc_head = _mini_convnet(in_channels, num_anchors * 4, n_layers)
        self.cls_head = _mini_convnet(in_channels, num_anchors * num_logits, n_layers)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)
                nn.init.zeros_(module.bias)
        softmax_init(self.cls_head[-1], num_anchors, num_logits)

    @staticmethod
    def _flatten(y: torch.Tensor, per_anchor: int) -> torch.Tensor:
        n = y.shape[0]
        return y.permute(0, 2, 3, 1).reshape(n, -1, per_anchor)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        locs: list[torch.Tensor] = []
        logits: list[torch.Tensor] = []
        for x in xs:
            locs.append(self._flatten(self.loc_head(x), 4))
            logits.append(self._flatten(self.cls_head(x), self.num_logits))
        return [torch.cat(locs, dim=1), torch.cat(logits, dim=1)]


__all__ = ["BACKGROUND_PRIOR", "BoxHead", "softmax_init"]
