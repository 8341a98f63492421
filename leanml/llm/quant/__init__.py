"""LLM weight quantization: the config (:mod:`.config`), group quantization (:mod:`.groupquant`), RTN (:mod:`.rtn`),
AWQ (:mod:`.awq` with its input capture, block layout and scale/clip search), bit packing of the codes and the
dequantizing linear (:mod:`.bit_packing`), and the one verb (:mod:`.quantize`)."""

# leanml.quant.integer imports bit_packing, and bit_packing (through groupquant) imports leanml.quant.primitives:
# initialise leanml.quant first, so that whichever package is imported first, bit_packing never meets itself
# half-built.
import leanml.quant  # noqa: F401
