from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from leanml.errors import LeanmlError
from leanml.llm.quant.bit_packing import PackedLinear
from leanml.llm.quant.groupquant import quantize_linear_weight
from leanml.quant.code_packing import pack_codes, row_bytes, unpack_codes


@settings(max_examples=60, deadline=None)
@given(bits=st.integers(2, 8), out_f=st.integers(1, 5), in_f=st.integers(1, 70), seed=st.integers(0, 2**16))
def test_pack_unpack_round_trip(bits: int, out_f: int, in_f: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    q = torch.randint(0, 2**bits, (out_f, in_f), generator=g, dtype=torch.int32).to(torch.uint8)  # (out, in)
    packed = pack_codes(q, bits)
    assert packed.shape == (out_f, row_bytes(in_f, bits)) and packed.dtype == torch.uint8
    assert torch.equal(unpack_codes(packed, bits, in_f), q)


def test_documented_bit_order() -> None:
    q = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 0]], dtype=torch.uint8)
    assert pack_codes(q, 4).tolist() == [[0x21, 0x43, 0x65, 0x07]]  # code 2j low nibble, 2j+1 high nibble
    bits = "".join(format(int(v), "03b")[::-1] for v in q[0])  # little-endian 3-bit fields, concatenated
    expect = [int(bits[8 * k : 8 * k + 8][::-1], 2) for k in range(3)]
    assert pack_codes(q, 3).tolist() == [expect]  # 8 codes in 3 bytes


@pytest.mark.parametrize(("bits", "group"), [(4, 32), (3, 128), (4, 128), (2, 64)])
def test_packed_linear_is_the_pseudo_quantized_linear(bits: int, group: int) -> None:
    torch.manual_seed(0)
    w, b = torch.randn(24, 200), torch.randn(24)  # 200: a short last group
    gq = quantize_linear_weight(w, bits, group)
    lin = PackedLinear.from_codes(gq, b)
    x = torch.randn(3, 7, 200)
    assert torch.equal(lin.weight(), gq.dequantize()) and torch.equal(lin.codes(), gq.q)
    assert torch.equal(lin(x), torch.nn.functional.linear(x, gq.dequantize(), b))
    assert lin.qweight.numel() == 24 * row_bytes(200, bits)


def test_bad_codes() -> None:
    with pytest.raises(LeanmlError, match="more than 3 bits"):
        pack_codes(torch.tensor([[9]], dtype=torch.uint8), 3)
    with pytest.raises(LeanmlError, match="2-d uint8"):
        pack_codes(torch.tensor([1, 2]), 4)
    with pytest.raises(LeanmlError, match="do not hold 10 codes of 4 bits"):
        unpack_codes(torch.zeros(2, 4, dtype=torch.uint8), 4, 10)
