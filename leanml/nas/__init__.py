"""Neural architecture search: search space, elastic supernet, progressive shrinking, predictors, search."""

from leanml.nas.space import Arch, SpaceConfig
from leanml.nas.subnet import NasNetConfig, net_config
from leanml.nas.supernet import Supernet, get_subnet

__all__ = ["Arch", "NasNetConfig", "SpaceConfig", "Supernet", "get_subnet", "net_config"]
