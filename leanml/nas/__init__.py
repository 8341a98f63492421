"""Neural architecture search (once-for-all): search space, elastic supernet, progressive shrinking,
efficiency and accuracy predictors, constrained random / evolutionary search, export.

Importing this package registers the ``nas_mbv2`` model, so exported subnets load like any checkpoint.

Example:
    >>> from leanml.nas import SpaceConfig, EfficiencyModel
    >>> space = SpaceConfig()
    >>> EfficiencyModel(space)(space.smallest()).peak_sram  # int8 bytes, the one memory model
    12800
"""

from leanml.nas.efficiency import Efficiency, EfficiencyModel
from leanml.nas.export import ExportConfig, export_subnet
from leanml.nas.latency import LatencyConfig, LatencyTable, build_table
from leanml.nas.predictor import AccuracyModel, PredictorConfig, train_predictor
from leanml.nas.sample import SampleConfig, SampleSet, sample_architectures
from leanml.nas.search import Limits, SearchConfig, SearchResult, load_search, search
from leanml.nas.space import Arch, SpaceConfig
from leanml.nas.subnet import NasNetConfig, net_config
from leanml.nas.supernet import Supernet, get_subnet
from leanml.nas.train import NasTrainConfig, train_supernet

__all__ = [
    "AccuracyModel", "Arch", "Efficiency", "EfficiencyModel", "ExportConfig", "LatencyConfig", "LatencyTable",
    "Limits", "NasNetConfig", "NasTrainConfig", "PredictorConfig", "SampleConfig", "SampleSet", "SearchConfig",
    "SearchResult", "SpaceConfig", "Supernet", "build_table", "export_subnet", "get_subnet", "load_search",
    "net_config", "sample_architectures", "search", "train_predictor", "train_supernet",
]  # fmt: skip
