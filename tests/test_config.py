from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from indus.config import apply_overrides, build_config, config_hash, load_config, save_config
from indus.errors import IndusError


@dataclass
class Optim:
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])


@dataclass
class Run:
    name: str = "x"
    steps: int = 10
    bf16: bool = False
    optim: Optim = field(default_factory=Optim)

    def __post_init__(self) -> None:
        if self.steps <= 0:
            raise ValueError("steps must be positive")


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("steps: 5\noptim:\n  lr: 0.01\n")
    cfg = load_config(Run, path, ["optim.lr=3e-4", "bf16=true"])
    assert cfg.steps == 5 and cfg.optim.lr == pytest.approx(3e-4) and cfg.bf16 is True


def test_roundtrip(tmp_path):
    cfg = build_config(Run, {"steps": 7})
    save_config(cfg, tmp_path / "r.yaml")
    assert load_config(Run, tmp_path / "r.yaml") == cfg
    assert config_hash(cfg) == config_hash(build_config(Run, {"steps": 7}))
    assert config_hash(cfg) != config_hash(build_config(Run, {"steps": 8}))


@pytest.mark.parametrize(
    "data, message",
    [
        ({"stepz": 1}, "unknown setting"),
        ({"steps": "many"}, "expected an integer"),
        ({"bf16": "yes please"}, "true or false"),
        ({"steps": -1}, "steps must be positive"),
        ({"optim": {"lr": [1]}}, "expected a number"),
    ],
)
def test_bad_config_names_the_key(data, message):
    with pytest.raises(IndusError, match=message):
        build_config(Run, data)


def test_bad_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("steps: 1\n  - oops: [\n")
    with pytest.raises(IndusError, match=r"bad\.yaml:\d+"):
        load_config(Run, path)


def test_overrides_index_lists_and_name_a_bad_index():
    data = {"eval": {"tasks": [{"task": "ner", "settings": {"epochs": 1}}, {"task": "ir"}]}}
    apply_overrides(data, ["eval.tasks.0.settings.epochs=2", "eval.tasks.1.data=scifact"])
    assert data["eval"]["tasks"][0]["settings"]["epochs"] == 2 and data["eval"]["tasks"][1]["data"] == "scifact"
    with pytest.raises(IndusError, match=r"eval.tasks is a list of 2; expected an index 0..1, got '5'"):
        apply_overrides(data, ["eval.tasks.5.data=x"])
    with pytest.raises(IndusError, match="'task' is not a section"):
        apply_overrides(data, ["eval.tasks.0.task.name=x"])
