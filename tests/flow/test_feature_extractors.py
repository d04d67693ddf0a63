"""Flow feature extractors: pyramid shapes for awkward sizes, recurrence, reset/detach, registry."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from evframe.models.temporal import ConvRNN
from evframe.tasks.flow.feature_extractors import (
    FEATURE_EXTRACTORS,
    build_feature_extractor,
    eminet,
    eminet_non_sep,
    midinet,
    midinet2,
)


def _params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _sizes(h: int, w: int, scales: int) -> list[tuple[int, int]]:
    return [(-(-h // 2**s), -(-w // 2**s)) for s in range(scales, -1, -1)]


@pytest.mark.parametrize("name", sorted(FEATURE_EXTRACTORS))
def test_pyramid_shapes_default_size(name):
    net = FEATURE_EXTRACTORS[name](6, base=8)
    flows = net(torch.rand(2, 2, 6, 60, 76))
    assert [tuple(f.shape) for f in flows] == [(2, 2, 2, h, w) for h, w in _sizes(60, 76, 3)]
    assert [f.shape[-2:] for f in flows][0] == (8, 10)  # 60/8 = 7.5 -> padded and cropped to ceil


@pytest.mark.parametrize("h,w,scales", [(37, 45, 2), (30, 38, 3), (17, 9, 1)])
def test_sizes_not_divisible_by_two_power(h, w, scales):
    net = midinet2(3, base=4, scales=scales)
    flows = net(torch.rand(1, 1, 3, h, w))
    assert len(flows) == scales + 1
    assert [tuple(f.shape[-2:]) for f in flows] == _sizes(h, w, scales)


def test_midinet2_depth():
    with pytest.raises(ValueError, match="depth"):
        midinet2(6, depth=0)
    deeper = midinet2(6, base=8, depth=2)
    assert len([m for m in deeper.modules() if isinstance(m, ConvRNN)]) == 2
    assert _params(deeper) > _params(midinet2(6, base=8, depth=1))


def test_family_differences():
    assert len([m for m in eminet(6).modules() if isinstance(m, ConvRNN)]) == 3  # every encoder layer
    assert len([m for m in midinet(6).modules() if isinstance(m, ConvRNN)]) == 1  # the bottleneck
    sep, full = eminet(6), eminet_non_sep(6)
    assert _params(sep) < _params(full) / 3
    assert not any(isinstance(m, nn.Conv2d) and m.groups > 1 for m in full.modules())
    # default midinet2 stays small ("a few hundred K" parameters)
    assert 50_000 < _params(midinet2(6)) < 600_000


def test_registry_and_errors():
    assert set(FEATURE_EXTRACTORS) == {"eminet", "eminet_non_sep", "midinet", "midinet2"}
    assert isinstance(build_feature_extractor("midinet", 2, base=4, scales=1), nn.Module)
    with pytest.raises(ValueError, match="available"):
        build_feature_extractor("unet9", 6)
    net = midinet2(6, base=4, scales=1)
    with pytest.raises(ValueError, match=r"\(T, B, 6, H, W\)"):
        net(torch.zeros(1, 1, 4, 8, 8))
    with pytest.raises(ValueError, match="scales"):
        midinet2(6, scales=0)
    with pytest.raises(TypeError):
        midinet2(6, nonsense=1)


@pytest.mark.parametrize("name", ["eminet", "midinet2"])
def test_memory_streaming_reset(name):
    torch.manual_seed(0)
    net = FEATURE_EXTRACTORS[name](4, base=4, scales=2).eval()  # eval: batch-norm statistics are fixed
    x1, x2 = torch.rand(2, 2, 4, 16, 20), torch.rand(2, 2, 4, 16, 20)
    with torch.no_grad():
        full = net(torch.cat([x1, x2]))[-1]
        net.clear()
        first, second = net(x1)[-1], net(x2)[-1]
        assert torch.allclose(torch.cat([first, second]), full, atol=1e-5)  # state persists across calls
        net.clear()
        fresh = net(x2)[-1]
        assert not torch.allclose(fresh, second, atol=1e-4)  # memory matters
        net.clear()
        net(x1)
        net.reset(torch.tensor([0.0, 1.0]))
        out = net(x2)[-1]
    assert torch.allclose(out[:, 0], fresh[:, 0], atol=1e-5)
    assert torch.allclose(out[:, 1], second[:, 1], atol=1e-5)


def test_context_bins_let_the_stem_see_previous_bins():
    torch.manual_seed(0)
    net = midinet2(4, base=4, scales=2, context_bins=1).eval()
    assert next(m for m in net.stem.modules() if isinstance(m, nn.Conv2d)).in_channels == 8  # 2 bins of 4
    x1, x2 = torch.rand(2, 1, 4, 16, 20), torch.rand(2, 1, 4, 16, 20)
    with torch.no_grad():
        net.clear()
        whole = net(torch.cat([x1, x2]))[-1]
        net.clear()
        net(x1)
        streamed = net(x2)[-1]
        assert torch.allclose(streamed, whole[2:], atol=1e-5)  # the previous bin comes from the last call
        # with no recurrent layer in play, the first bin of x2 depends only on (x2[0], x1[-1]): changing an
        # older bin of x1 changes nothing through the bin history, changing x1[-1] does
        plain = midinet2(4, base=4, scales=2, context_bins=1, depth=1).eval()
        plain.load_state_dict(net.state_dict())
        plain.middle = None
        for older_changed, expect_equal in ((0, True), (1, False)):
            y1 = x1.clone()
            y1[older_changed] += 1.0
            plain.clear()
            plain(x1)
            ref = plain(x2)[-1][0]
            plain.clear()
            plain(y1)
            got = plain(x2)[-1][0]
            assert torch.allclose(ref, got, atol=1e-6) == expect_equal
    with pytest.raises(ValueError, match="context_bins"):
        midinet2(4, context_bins=-1)


def test_training_step_reaches_every_parameter_and_detach_cuts():
    torch.manual_seed(0)
    net = midinet2(6, base=4, scales=2)
    x1 = torch.rand(2, 2, 6, 16, 20, requires_grad=True)
    net(x1)
    net.detach()
    flows = net(torch.rand(2, 2, 6, 16, 20))
    sum(f.square().mean() for f in flows).backward()
    assert x1.grad is None
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
