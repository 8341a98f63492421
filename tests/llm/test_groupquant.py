from __future__ import annotations

import pytest
import torch

from leanml.errors import LeanmlError
from leanml.llm.groupquant import check_group_size, dequantize, fake_quantize_weight, quantize_linear_weight
from leanml.quant.primitives import fake_quantize


@pytest.mark.parametrize(("bits", "group"), [(4, 32), (3, 64), (2, 32), (8, 32)])
def test_group_quantization_is_the_primitive(bits: int, group: int) -> None:
    w = torch.randn(24, 128) * torch.linspace(0.1, 3.0, 128)  # (out, in), uneven input channels
    gq = quantize_linear_weight(w, bits, group)
    assert gq.q.dtype == torch.uint8 and gq.shape == (24, 128)
    assert int(gq.q.max()) <= 2**bits - 1 and int(gq.zero.max()) <= 2**bits - 1
    assert gq.scale.shape == gq.zero.shape == (24, 128 // group)
    expect = fake_quantize(w, bits, symmetric=False, signed=False, group_size=group)
    assert torch.equal(gq.dequantize(), torch.from_numpy(expect))  # bit-exact with leanml.quant.primitives
    assert torch.equal(fake_quantize_weight(w, bits, group), gq.dequantize())
    assert torch.equal(dequantize(gq.q, gq.scale, gq.zero, group), gq.dequantize())
    err = (w - gq.dequantize()).abs().reshape(24, -1, group)  # (out, G, g)
    assert bool((err <= gq.scale.unsqueeze(-1) / 2 * (1 + 1e-5)).all())  # within half a step


def test_bad_weights() -> None:
    with pytest.raises(LeanmlError, match="2-d linear weight"):
        quantize_linear_weight(torch.zeros(4), 4, 4)
    with pytest.raises(LeanmlError, match="does not divide the 100 input features of up"):
        quantize_linear_weight(torch.zeros(2, 100), 4, 64, name="up")
    with pytest.raises(LeanmlError, match="unsupported bit width"):
        quantize_linear_weight(torch.zeros(2, 64), 1, 32)
    with pytest.raises(LeanmlError, match="positive integer"):
        check_group_size(64, 0)
