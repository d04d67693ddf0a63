"""The global affine motion head: known fields from known parameters, a no-op at start, affine whatever it sees."""

import pytest
import torch

from evframe.tasks.flow.feature_extractors import midinet2
from evframe.tasks.flow.global_motion import GlobalAffineHead, affine_flow
from evframe.tasks.flow.losses import smoothness2_loss


def test_affine_flow_of_known_parameters():
    # 2 x 4 image: X = (-0.75, -0.25, 0.25, 0.75), Y = (-0.5, 0.5)
    flow = affine_flow(torch.tensor([[1.0, 0.0, 0.0, 0.0, 0.0, 2.0], [0.0, 4.0, 0.0, 0.0, 0.0, 0.0]]), 2, 4)
    assert flow.shape == (2, 2, 2, 4)
    torch.testing.assert_close(flow[0, 0], torch.ones(2, 4))
    torch.testing.assert_close(flow[0, 1], torch.tensor([[-1.0] * 4, [1.0] * 4]))
    torch.testing.assert_close(flow[1, 0], torch.tensor([[-3.0, -1.0, 1.0, 3.0]] * 2))
    torch.testing.assert_close(flow[1, 1], torch.zeros(2, 4))


def test_affine_flow_reproduces_a_rotation_about_the_centre():
    # rotation by a small angle w (radians per bin) about the image centre: flow = (-w * y, w * x) in pixels, with
    # x, y pixel-centre offsets from the centre; in the normalised coordinates bx = 0, cx = -w * H / 2, by = w * W / 2
    h, w, omega = 6, 8, 0.1
    flow = affine_flow(torch.tensor([[0.0, 0.0, -omega * h / 2, 0.0, omega * w / 2, 0.0]]), h, w)[0]
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5 - h / 2, torch.arange(w) + 0.5 - w / 2, indexing="ij")
    torch.testing.assert_close(flow, torch.stack((-omega * ys, omega * xs)))


def test_affine_flow_rejects_wrong_shapes():
    with pytest.raises(ValueError, match=r"\(N, 6\)"):
        affine_flow(torch.zeros(2, 4), 3, 3)


def test_head_starts_at_zero_and_always_outputs_an_affine_field():
    torch.manual_seed(0)
    head = GlobalAffineHead(8)
    features = torch.randn(3, 8, 5, 7)
    assert torch.count_nonzero(head(features)) == 0
    torch.nn.init.normal_(head.mlp[-1].weight)
    out = head(features)
    assert out.abs().max() > 0
    # second-order differences of an affine field vanish: smoothness2 of it is 0
    assert float(smoothness2_loss(out.detach()[None])) == pytest.approx(0.0, abs=1e-5)


def test_network_with_the_head_matches_the_plain_network_at_start_and_trains_the_head():
    torch.manual_seed(0)
    plain = midinet2(4, base=4, scales=2).eval()
    with_head = midinet2(4, base=4, scales=2, global_motion=True).eval()
    missing, unexpected = with_head.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(key.startswith("global_motion.") for key in missing)
    x = torch.randn(3, 2, 4, 16, 24)
    for a, b in zip(plain(x), with_head(x), strict=True):
        torch.testing.assert_close(a, b)
    with_head.train()
    with_head.clear()
    with_head(x)[-1].square().sum().backward()
    # the zero last layer still gets a gradient, so the head can learn
    assert with_head.global_motion.mlp[-1].weight.grad.abs().sum() > 0
