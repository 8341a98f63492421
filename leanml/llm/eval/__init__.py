"""Using an LLM: text corpora (:mod:`.corpus`), perplexity (:mod:`.perplexity`), generation with sampling and
streaming (:mod:`.generate`, :mod:`.sampling`, :mod:`.streaming`), chat (:mod:`.chat`) and the prefill/decode
speed bench (:mod:`.speed_bench`)."""
