from __future__ import annotations

import pytest
import torch

from leanml.errors import LeanmlError
from leanml.llm.quant.groupquant import check_group_size, dequantize, fake_quantize_weight, quantize_linear_weight
from leanml.quant.primitives import quantize_tensor


@pytest.mark.parametrize(("bits", "group"), [(4, 32), (3, 64), (2, 32), (8, 32)])
def test_group_quantization_is_the_primitive(bits: int, group: int) -> None:
    w = torch.randn(24, 128) * torch.linspace(0.1, 3.0, 128)  # (out, in), uneven input channels
    gq = quantize_linear_weight(w, bits, group)
    assert gq.q.dtype == torch.uint8 and gq.shape == (24, 128)
    assert int(gq.q.max()) <= 2**bits - 1 and int(gq.zero.max()) <= 2**bits - 1
    assert gq.scale.shape == gq.zero.shape == (24, 128 // group)
    qt = quantize_tensor(w, bits, symmetric=False, signed=False, group_size=group, scale_dtype="float16")
    assert torch.equal(gq.dequantize(), torch.from_numpy(qt.dequantize()))  # bit-exact with leanml.quant.primitives
    assert torch.equal(gq.scale, gq.scale.half().float())  # scales are float16 values
    plain = quantize_tensor(w, bits, symmetric=False, signed=False, group_size=group).dequantize()  # float32 scales
    assert float((gq.dequantize() - torch.from_numpy(plain)).abs().max()) <= float(gq.scale.max()) * 1.01
    assert torch.equal(fake_quantize_weight(w, bits, group), gq.dequantize())
    assert torch.equal(dequantize(gq.q, gq.scale, gq.zero, group), gq.dequantize())
    err = (w - gq.dequantize()).abs().reshape(24, -1, group)  # (out, G, g)
    assert bool((err <= gq.scale.unsqueeze(-1) / 2 * (1 + 1e-5)).all())  # within half a step


def test_bad_weights() -> None:
    with pytest.raises(LeanmlError, match="2-d linear weight"):
        quantize_linear_weight(torch.zeros(4), 4, 4)
    with pytest.raises(LeanmlError, match="unsupported bit width"):
        quantize_linear_weight(torch.zeros(2, 64), 1, 32)
    with pytest.raises(LeanmlError, match="positive integer"):
        check_group_size(64, 0)


@pytest.mark.parametrize(("in_f", "group"), [(576, 128), (100, 64), (40, 32), (7, 8)])
def test_short_last_group_equals_zero_padding(in_f: int, group: int) -> None:
    torch.manual_seed(0)
    w = torch.randn(6, in_f)  # (out, in), group does not divide in
    gq = quantize_linear_weight(w, 4, group)
    n_g = -(-in_f // group)
    assert gq.scale.shape == gq.zero.shape == (6, n_g) and gq.q.shape == (6, in_f)
    padded = torch.nn.functional.pad(w, (0, n_g * group - in_f))  # (out, G*g)
    ref = quantize_linear_weight(padded, 4, group)
    assert torch.equal(gq.q, ref.q[:, :in_f]) and torch.equal(gq.scale, ref.scale) and torch.equal(gq.zero, ref.zero)
    assert torch.equal(gq.dequantize(), ref.dequantize()[:, :in_f])
