"""leanml's C runtime for packed LLMs: the C sources (``csrc/``), the one ctypes binding table and build
(:mod:`.bindings`), the weight layout and kernel entry points (:mod:`.kernels`), the decoder object
(:mod:`.decoder`) and the causal-LM wrapper generation and perplexity take (:mod:`.causal_lm`)."""
