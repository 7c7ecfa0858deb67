from __future__ import annotations

import pytest

from ssl_bench.config import ConfigError, available_presets, config_hash, parse_set, resolve
from ssl_bench.methods import available_methods
from ssl_bench.runner import method_config, plan

METHODS = list(available_methods())


def test_every_preset_resolves() -> None:
    presets = available_presets()
    assert {"ci", "default"} <= set(presets)
    for name, description in presets.items():
        assert description, f"preset {name} has no description"
        cfg = resolve(name, {}, METHODS)
        assert plan(cfg), name


def test_overrides_are_typed() -> None:
    cfg = resolve("ci", parse_set(["train.epochs=3", "seeds=0,1", "train.channels_last=true", "linear.lr=0.5"]), METHODS)
    assert cfg.train.epochs == 3 and cfg.seeds == [0, 1] and cfg.train.channels_last is True and cfg.linear.lr == 0.5


@pytest.mark.parametrize(
    "sets, needle",
    [
        (["train.epohcs=3"], "Did you mean 'epochs'?"),
        (["train.epochs=three"], "expected an integer"),
        (["train.epochs=-1"], "train.epochs must be positive"),
        (["bogus=1"], "unknown config key 'bogus'"),
        (["train.precision=fp16"], "choose one of auto, fp32, bf16"),
        (["detection.head=c5"], "detection.head='c5' is not valid; choose one of c4, fpn"),
        (["detection.protocols=voc07,voc12"], "detection.protocols: 'voc12' is not valid; choose from voc07, coco"),
        (["semisup.fractions=1,10"], "semisup.fractions: 10.0 is not a fraction in (0, 1]"),
        (["detection.steps=17000"], "detection.steps: 17000.0 is not a fraction of the iterations"),
        (["invariance.transforms=blur"], "invariance.transforms: 'blur' is not valid"),
        (["detection.iterations=0"], "detection.iterations must be positive"),
    ],
)
def test_bad_keys_and_values_name_the_fix(sets: list[str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace("?", r"\?").replace("(", r"\(")):
        resolve("ci", parse_set(sets), METHODS)


def test_unknown_preset_lists_valid_ones() -> None:
    with pytest.raises(ConfigError, match="unknown preset 'cii'. Did you mean 'ci'\\?.*Valid presets: .*default"):
        resolve("cii", {}, METHODS)


def test_unknown_method_and_eval_list_valid_choices() -> None:
    with pytest.raises(ConfigError, match="unknown method 'supervized'.*'supervised'.*Valid methods: .*autoencoder"):
        plan(resolve("ci", {"methods": "supervized"}, METHODS))
    with pytest.raises(ConfigError, match="unknown evaluation 'linaer'.*'linear'.*Valid evaluations: linear, knn"):
        plan(resolve("ci", {"evals": "linaer"}, METHODS))


def test_method_params_are_checked_against_the_method_config() -> None:
    assert method_config("autoencoder", {"noise_std": "0.3"}).noise_std == 0.3
    with pytest.raises(ConfigError, match="unknown config key 'autoencoder.noise'.*noise_std"):
        method_config("autoencoder", {"noise": "0.3"})
    cfg = resolve("ci", parse_set(["autoencoder.noise_std=0.2"]), METHODS)
    assert cfg.method_params["autoencoder"] == {"noise_std": "0.2"}


def test_hash_is_stable_and_sensitive() -> None:
    a = resolve("ci", {}, METHODS)
    b = resolve("ci", {}, METHODS)
    assert config_hash(a) == config_hash(b)
    c = resolve("ci", parse_set(["train.epochs=5"]), METHODS)
    assert config_hash(a) != config_hash(c)
    units_a, units_c = plan(a), plan(c)
    by = lambda us: {u.method: u.pretrain_hash for u in us}  # noqa: E731
    assert by(units_a)["random"] == by(units_c)["random"]  # an untrained baseline does not depend on epochs
    assert by(units_a)["supervised"] != by(units_c)["supervised"]
