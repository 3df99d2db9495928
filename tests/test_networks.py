"""Epsilon-networks: shapes, the conditioning interface and argument checks."""

import pytest
import torch

from ctrl_teach.diffusion import MLPDenoiser, UNetDenoiser, build_network, sinusoidal_embedding


def test_sinusoidal_embedding_shape_and_values():
    e = sinusoidal_embedding(torch.tensor([0, 5]), 8)
    assert e.shape == (2, 8)
    assert torch.allclose(e[0, :4], torch.ones(4)) and torch.allclose(e[0, 4:], torch.zeros(4))


@pytest.mark.parametrize("net, shape", [
    (MLPDenoiser(2, 50, 2), (2,)),
    (UNetDenoiser(8, 1, 100, 10, 16, (1, 2)), (1, 8, 8)),
    (UNetDenoiser(16, 1, 100, 10, 16, (1, 2, 2)), (1, 16, 16)),
])
def test_output_shape_null_label_and_extra_embedding(net, shape):
    x = torch.randn(4, *shape)
    t = torch.tensor([1, 2, 3, 4])
    c = torch.tensor([0, 1, 0, 1])
    out = net(x, t, c)
    assert out.shape == x.shape
    # a zero extra embedding is exactly "no extra embedding" (CTRL's zero init)
    assert torch.equal(net(x, t, c, extra_emb=torch.zeros(4, net.emb_dim)), out)
    # None means the null label
    null = torch.full_like(c, net.num_conditions)
    assert torch.equal(net(x, t, None), net(x, t, null))


def test_build_network_round_trip():
    for net in (MLPDenoiser(2, 30, 3, width=32, depth=2), UNetDenoiser(8, 1, 20, 10, 8, (1, 2))):
        twin = build_network(net.config)
        twin.load_state_dict(net.state_dict())
        x = torch.randn(2, *net.data_shape)
        t = torch.tensor([1, 2])
        assert torch.equal(twin(x, t, torch.tensor([0, 1])), net(x, t, torch.tensor([0, 1])))


def test_bad_inputs_name_the_argument():
    net = MLPDenoiser(2, 10, 2)
    t = torch.tensor([1, 2])
    with pytest.raises(ValueError, match="x"):
        net(torch.randn(2, 3), t)
    with pytest.raises(ValueError, match="t"):
        net(torch.randn(2, 2), torch.tensor([1]))
    with pytest.raises(ValueError, match="c must be None or a long tensor"):
        net(torch.randn(2, 2), t, torch.tensor([0]))
    with pytest.raises(ValueError, match="extra_emb"):
        net(torch.randn(2, 2), t, extra_emb=torch.zeros(2, 5))
    with pytest.raises(ValueError, match="c must be None"):
        MLPDenoiser(2, 10, 0)(torch.randn(2, 2), t, torch.tensor([0, 0]))
    with pytest.raises(ValueError, match="image_size"):
        UNetDenoiser(image_size=6, channel_mults=(1, 2, 2))
    with pytest.raises(ValueError, match="width"):
        MLPDenoiser(width=0)
    with pytest.raises(ValueError, match="class"):
        build_network({"class": "Transformer"})
