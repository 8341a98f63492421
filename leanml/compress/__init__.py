"""The main job: `leanml compress` takes a model and image data through prune → fine-tune → quantize → deploy → verify,
resumable, against a device budget, with one HTML report.

Example:
    >>> from leanml.compress import builtin_recipe
    >>> builtin_recipe("mcu").stages
    ['train', 'prune', 'finetune', 'quantize', 'deploy', 'verify']
"""

from leanml.compress.pipeline import CompressResult, compress
from leanml.compress.recipe import Recipe, Targets, builtin_recipe, load_recipe

__all__ = ["CompressResult", "Recipe", "Targets", "builtin_recipe", "compress", "load_recipe"]
