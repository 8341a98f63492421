from dataclasses import dataclass, field

import pytest

from leanml.config import Config, require
from leanml.errors import LeanmlError


@dataclass
class Demo(Config):
    epochs: int = 1
    widths: list[int] = field(default_factory=lambda: [1, 2])

    def validate(self) -> None:
        require(self.epochs >= 1, "epochs must be >= 1", "pass --epochs 1 or more")


def test_round_trip_json_and_yaml(tmp_path):
    cfg = Demo(epochs=3, widths=[4])
    (tmp_path / "c.json").write_text(cfg.to_json())
    (tmp_path / "c.yaml").write_text("epochs: 3\nwidths: [4]\n")
    assert Demo.load(tmp_path / "c.json") == cfg
    assert Demo.load(tmp_path / "c.yaml") == cfg


def test_validation_runs_on_construction_and_load(tmp_path):
    with pytest.raises(LeanmlError, match="epochs must be >= 1"):
        Demo(epochs=0)
    (tmp_path / "bad.yaml").write_text("epochs: 0\n")
    with pytest.raises(LeanmlError, match="epochs must be >= 1"):
        Demo.load(tmp_path / "bad.yaml")


def test_unknown_fields_and_bad_files_are_named(tmp_path):
    with pytest.raises(LeanmlError, match=r"unknown Demo field.*epoch_count"):
        Demo.from_dict({"epoch_count": 2})
    with pytest.raises(LeanmlError, match="config file not found"):
        Demo.load(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(LeanmlError, match="cannot parse config"):
        Demo.load(tmp_path / "broken.json")
