"""LLM files in and out: HF folders, GGUF files and the built-in SmolLM2 (:mod:`.model_loader`, :mod:`.gguf_file`),
the packed ``.lmq`` file (:mod:`.packed_file` reads it, :mod:`.packed_model` turns it into a PyTorch model and back),
and what was loaded (:mod:`.model_info`)."""
