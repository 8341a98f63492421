"""LLM weight quantization: the config (:mod:`.config`), group quantization (:mod:`.groupquant`), RTN (:mod:`.rtn`),
AWQ (:mod:`.awq` with its input capture, block layout and scale/clip search), bit packing of the codes and the
dequantizing linear (:mod:`.bit_packing`), and the one verb (:mod:`.quantize`)."""
