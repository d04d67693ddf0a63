"""StreamFlip: flips drawn at recording starts and kept along each stream."""

import pytest
import torch

from evframe.data.augment import StreamFlip


def _tensor(t=2, b=3, c=1, h=2, w=3):
    return torch.arange(t * b * c * h * w, dtype=torch.float32).view(t, b, c, h, w)


def test_always_flip_mirrors_every_stream_by_hand():
    x = _tensor(t=1, b=1)
    # [[0, 1, 2], [3, 4, 5]] mirrored left-right then upside-down
    out = StreamFlip(hflip=1.0, vflip=1.0, seed=0)(x, torch.zeros(1))
    assert out[0, 0, 0].tolist() == [[5.0, 4.0, 3.0], [2.0, 1.0, 0.0]]
    only_h = StreamFlip(hflip=1.0, vflip=0.0, seed=0)(x, torch.zeros(1))
    assert only_h[0, 0, 0].tolist() == [[2.0, 1.0, 0.0], [5.0, 4.0, 3.0]]


def test_never_flip_is_identity():
    x = _tensor()
    assert torch.equal(StreamFlip(hflip=0.0, vflip=0.0)(x, torch.zeros(3)), x)


def test_each_stream_gets_its_own_flip_and_keeps_it_until_a_reset():
    aug = StreamFlip(hflip=0.5, vflip=0.5, seed=3)
    x = _tensor(b=64)
    first = aug(x, torch.zeros(64))
    flips = aug.flips.clone()
    assert 0 < int(flips[:, 0].sum()) < 64  # mixed draws across streams
    for b in range(64):
        expected = x[:, b]
        if flips[b, 0]:
            expected = expected.flip(-1)
        if flips[b, 1]:
            expected = expected.flip(-2)
        assert torch.equal(first[:, b], expected)
    # continuing streams keep their draw; only stream 0 starts a new recording and may redraw
    keep = torch.ones(64)
    for _ in range(5):
        aug(x, keep)
        assert torch.equal(aug.flips, flips)
    keep[1:] = 1
    keep[0] = 0
    redraws = set()
    for _ in range(20):
        aug(x, keep)
        assert torch.equal(aug.flips[1:], flips[1:])
        redraws.add(tuple(aug.flips[0].tolist()))
    assert len(redraws) > 1


def test_same_seed_same_draws_and_global_rng_untouched():
    torch.manual_seed(0)
    expected_next = torch.rand(1)
    torch.manual_seed(0)
    a, b = StreamFlip(seed=11), StreamFlip(seed=11)
    a.update(torch.zeros(16))
    b.update(torch.zeros(16))
    assert torch.equal(a.flips, b.flips)
    assert torch.equal(torch.rand(1), expected_next)


def test_bad_arguments_are_clear():
    with pytest.raises(ValueError, match="hflip"):
        StreamFlip(hflip=1.5)
    with pytest.raises(ValueError, match=r"\(T, B, C, H, W\)"):
        StreamFlip()(torch.zeros(2, 3, 4), torch.zeros(2))
    with pytest.raises(ValueError, match="mask_keep_memory"):
        StreamFlip()(_tensor(b=3), torch.zeros(2))
