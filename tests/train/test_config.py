# String annotations on purpose: load_config must resolve them.
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Literal, Optional, Tuple, Union

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from mmgraph.errors import ConfigError
from mmgraph.train.config import config_from_dict, config_to_dict, load_config, save_config


@dataclass
class OptimConfig:
    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = 3e-4
    betas: Tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 0

    def __post_init__(self):
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


@dataclass
class ModelConfig:
    hidden_dim: int = 64
    layers: List[str] = field(default_factory=lambda: ["gat", "cross"])
    dropout: Optional[float] = None


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    epochs: int = 10
    amp: bool = False
    out_dir: Optional[Path] = None
    tags: Tuple[str, ...] = ()
    seed: Union[int, str] = 0
    loss_weights: Dict[str, float] = field(default_factory=lambda: {"vqa": 1.0, "itm": 0.5})


@dataclass
class Required:
    data_root: str
    batch_size: int = 8


def _yaml(tmp_path, text, name="run.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_without_file_or_overrides():
    assert load_config(RunConfig) == RunConfig()


def test_overrides_parse_every_annotation_kind():
    cfg = load_config(
        RunConfig,
        overrides=[
            "epochs=3",
            "amp=true",
            "optim.name=sgd",
            "optim.lr=1e-3",
            "optim.betas=0.8, 0.95",
            "model.layers=[a,b,c]",
            "model.dropout=0.1",
            "out_dir=runs/x",
            "tags=",
            "seed=abc",
            "loss_weights.itm=2",
        ],
    )
    assert cfg.epochs == 3 and cfg.amp is True
    assert cfg.optim == OptimConfig(name="sgd", lr=1e-3, betas=(0.8, 0.95))
    assert cfg.model.layers == ["a", "b", "c"] and cfg.model.dropout == 0.1
    assert cfg.out_dir == Path("runs/x") and cfg.tags == ()
    assert cfg.seed == "abc" and load_config(RunConfig, overrides=["seed=5"]).seed == 5
    # An override of one dict entry keeps the other entries.
    assert cfg.loss_weights == {"vqa": 1.0, "itm": 2.0}


@pytest.mark.parametrize("text, value", [("true", True), ("0", False), ("False", False), ("1", True)])
def test_bool_spellings(text, value):
    assert load_config(RunConfig, overrides=[f"amp={text}"]).amp is value


def test_optional_none():
    cfg = load_config(RunConfig, overrides=["model.dropout=0.5", "model.dropout=none"])
    assert cfg.model.dropout is None


def test_yaml_then_overrides_precedence(tmp_path):
    path = _yaml(
        tmp_path,
        "epochs: 5\nmodel:\n  hidden_dim: 128\n  layers: [gat]\noptim:\n  lr: 1e-3\n  betas: [0.5, 0.6]\n",
    )
    cfg = load_config(RunConfig, path, ["model.hidden_dim=256", "epochs=7", "epochs=8"])
    assert cfg.epochs == 8  # the last override wins over the file
    assert cfg.model.hidden_dim == 256  # override over file
    assert cfg.model.layers == ["gat"]  # file over default
    assert cfg.model.dropout is None  # default kept
    # YAML 1.1 reads 1e-3 as text; the float field parses it.
    assert cfg.optim.lr == 1e-3 and cfg.optim.betas == (0.5, 0.6)


def test_unknown_key_in_yaml_names_key_file_suggestion_and_valid_keys(tmp_path):
    path = _yaml(tmp_path, "optim:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError) as info:
        load_config(RunConfig, path)
    msg = str(info.value)
    assert "'optim.lrr'" in msg and str(path) in msg
    assert "did you mean 'optim.lr'" in msg
    assert "betas, lr, name, warmup_steps" in msg


def test_unknown_top_level_key_in_override():
    with pytest.raises(ConfigError) as info:
        load_config(RunConfig, overrides=["epoch=3"])
    msg = str(info.value)
    assert "'epoch'" in msg and "override 'epoch=3'" in msg and "did you mean 'epochs'" in msg
    assert "top level" in msg and "amp, epochs, loss_weights, model, optim, out_dir, seed, tags" in msg


def test_unknown_nested_key_in_override_without_close_match():
    with pytest.raises(
        ConfigError, match=r"unknown config key 'model\.zzz'.*Valid keys under 'model'"
    ) as info:
        load_config(RunConfig, overrides=["model.zzz=1"])
    assert "did you mean" not in str(info.value)


def test_override_into_a_value_is_refused():
    with pytest.raises(ConfigError, match=r"'epochs' is a value \(int\), not a section"):
        load_config(RunConfig, overrides=["epochs.x=1"])


@pytest.mark.parametrize(
    "override, expected",
    [
        ("epochs=ten", "expected int"),
        ("epochs=1.5", "expected int"),
        ("amp=maybe", "expected bool"),
        ("optim.lr=fast", "expected float"),
        ("optim.betas=0.9", "expected 2 items"),
        ("optim.betas=0.9,x", r"optim\.betas\[1\].*expected float"),
        ("optim=adam", "expected a mapping for section OptimConfig"),
        ("loss_weights.vqa=heavy", r"loss_weights\.vqa.*expected float"),
    ],
)
def test_bad_override_values(override, expected):
    with pytest.raises(ConfigError, match=expected) as info:
        load_config(RunConfig, overrides=[override])
    assert f"override {override!r}" in str(info.value)


def test_bad_literal_choice_lists_choices_and_suggests():
    with pytest.raises(ConfigError) as info:
        load_config(RunConfig, overrides=["optim.name=adam"])
    msg = str(info.value)
    assert "'optim.name'" in msg and "one of 'adamw', 'sgd'" in msg and "'adam'" in msg
    assert "did you mean 'adamw'" in msg


@pytest.mark.parametrize(
    "text, expected",
    [
        ("epochs: [1, 2]\n", r"'epochs'.*expected int, got \[1, 2\]"),
        ("amp: 3\n", "expected bool"),
        ("model:\n  hidden_dim: true\n", r"'model\.hidden_dim'.*expected int, got True"),
        ("model: 3\n", "expected a mapping"),
        ("model:\n  layers: [gat, 3]\n", r"'model\.layers\[1\]'.*expected str.*quote it"),
        ("optim:\n  name: rmsprop\n", "one of 'adamw', 'sgd'"),
    ],
)
def test_bad_yaml_values_name_key_and_file(tmp_path, text, expected):
    path = _yaml(tmp_path, text)
    with pytest.raises(ConfigError, match=expected) as info:
        load_config(RunConfig, path)
    assert str(path) in str(info.value)


def test_post_init_error_becomes_config_error():
    with pytest.raises(
        ConfigError,
        match=r"section 'optim' \(OptimConfig\) is invalid \(override 'optim.lr=-1'\).*lr must be > 0",
    ):
        load_config(RunConfig, overrides=["optim.lr=-1"])


def test_post_init_sees_final_values(tmp_path):
    # The file alone is invalid; the override fixes it before __post_init__ runs.
    path = _yaml(tmp_path, "optim:\n  lr: -1\n")
    assert load_config(RunConfig, path, ["optim.lr=0.5"]).optim.lr == 0.5


def test_required_key():
    with pytest.raises(ConfigError, match="'data_root' is required"):
        load_config(Required)
    assert load_config(Required, overrides=["data_root=/d"]).data_root == "/d"


def test_malformed_override_and_files(tmp_path):
    with pytest.raises(ConfigError, match="not of the form key=value"):
        load_config(RunConfig, overrides=["epochs"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(RunConfig, tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match=r"line 2: not valid YAML"):
        load_config(RunConfig, _yaml(tmp_path, "epochs: 1\n\tmodel: 2\n"))
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(RunConfig, _yaml(tmp_path, "- 1\n- 2\n"))
    assert load_config(RunConfig, _yaml(tmp_path, "")) == RunConfig()


def test_save_and_load_round_trip(tmp_path):
    cfg = load_config(
        RunConfig, overrides=["optim.betas=0.1,0.2", "out_dir=o", "tags=a,b", "model.dropout=0.3"]
    )
    out = tmp_path / "run" / "config.yaml"
    save_config(cfg, out)
    assert [p.name for p in out.parent.iterdir()] == ["config.yaml"]  # no temp file left
    assert load_config(RunConfig, out) == cfg
    data = yaml.safe_load(out.read_text())
    assert data == config_to_dict(cfg)
    assert data["optim"]["betas"] == [0.1, 0.2] and data["out_dir"] == "o"


def test_config_from_dict_checks_like_load_config():
    d = config_to_dict(RunConfig())
    assert config_from_dict(RunConfig, d) == RunConfig()
    d["model"]["hidden"] = 3
    with pytest.raises(ConfigError, match=r"'model\.hidden' \(<dict>\).*did you mean 'model\.hidden_dim'"):
        config_from_dict(RunConfig, d)
    with pytest.raises(ConfigError, match="not a dataclass"):
        config_from_dict(dict, {})
    with pytest.raises(ConfigError, match="expects a dataclass instance"):
        config_to_dict({"a": 1})


def test_init_false_fields_are_not_keys():
    @dataclass
    class WithDerived:
        width: int = 2
        area: int = dataclasses.field(init=False, default=0)

        def __post_init__(self):
            self.area = self.width * self.width

    assert config_to_dict(WithDerived(3)) == {"width": 3}
    with pytest.raises(ConfigError, match="unknown config key 'area'"):
        load_config(WithDerived, overrides=["area=1"])


@settings(max_examples=30, deadline=None)
@given(
    epochs=st.integers(0, 10**6),
    lr=st.floats(1e-8, 10.0, allow_nan=False),
    amp=st.booleans(),
    tags=st.lists(st.text("abcxyz_-", min_size=1, max_size=5), max_size=4),
)
def test_overrides_and_dict_round_trip(epochs, lr, amp, tags):
    overrides = [f"epochs={epochs}", f"optim.lr={lr!r}", f"amp={str(amp).lower()}", f"tags={','.join(tags)}"]
    cfg = load_config(RunConfig, overrides=overrides)
    assert (cfg.epochs, cfg.optim.lr, cfg.amp, cfg.tags) == (epochs, lr, amp, tuple(tags))
    assert config_from_dict(RunConfig, config_to_dict(cfg)) == cfg
