"""The main job: `leanml compress` takes a model and image data through prune → fine-tune → quantize → deploy → verify → report."""
