"""The ``svm`` evaluation (eval/svm.py): Goyal et al.'s VOC07 linear SVMs, checked against slow references."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import average_precision_score
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import LinearSVC

from ssl_bench.backbone import Backbone
from ssl_bench.config import ConfigError
from ssl_bench.data.transforms import squash_view
from ssl_bench.data.types import DataInfo, Splits
from ssl_bench.data.voc import VOCDetection, image_labels, write_annotation
from ssl_bench.eval.harness import EVALS, EvalContext, eval_settings, evaluate
from ssl_bench.eval.svm import (
    COSTS,
    SVMConfig,
    average_precision,
    class_scores,
    fit_class,
    normalise,
    train_targets,
    unusable,
)
from ssl_bench.run_config import RunConfig, load, resolve

INFO = DataInfo("synthetic", 10, 16, 32, (0.5,) * 3, (0.25,) * 3)


def slow_ap(labels: list[int], scores: list[float]) -> float:
    """VOC AP as FSSB computes it, one rank at a time: rank by score, and at every rank where recall grows add the
    recall step times the best precision at this rank or any later one."""
    ranked = sorted(range(len(scores)), key=lambda i: -scores[i])
    positives = sum(1 for v in labels if v > 0)
    precision, recall, tp = [], [], 0
    for n, i in enumerate(ranked, start=1):
        tp += labels[i] > 0
        precision.append(tp / n)
        recall.append(tp / positives)
    ap, seen = 0.0, 0.0
    for k in range(len(ranked)):
        if recall[k] > seen:
            ap += (recall[k] - seen) * max(precision[k:])
            seen = recall[k]
    return ap


def test_average_precision_by_hand() -> None:
    # ranked: +, -, +, -: precision 1, 1/2, 2/3, 1/2 at recall 1/2, 1/2, 1, 1 -> 1/2 * 1 + 1/2 * 2/3
    labels, scores = np.array([1, -1, 1, -1]), np.array([0.9, 0.8, 0.7, 0.1])
    assert average_precision(labels, scores) == pytest.approx(0.5 + 0.5 * 2 / 3)
    # the envelope: + after two negatives still counts 2/4 precision at recall 1, not the 1/3 of its own rank
    labels, scores = np.array([1, -1, -1, 1, 1]), np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    assert average_precision(labels, scores) == pytest.approx(1 / 3 * 1 + 2 / 3 * 3 / 5)
    assert average_precision(np.array([1, 1, -1]), np.array([3.0, 2.0, 1.0])) == 1.0
    with pytest.raises(ValueError, match="no positive"):
        average_precision(np.array([-1, -1]), np.array([1.0, 2.0]))


@pytest.mark.parametrize("seed", range(6))
def test_average_precision_matches_the_slow_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 60))
    labels = np.where(rng.random(n) < rng.uniform(0.1, 0.6), 1, -1)
    labels[rng.integers(n)] = 1
    scores = rng.normal(size=n) + labels * rng.uniform(0, 2)  # distinct scores: no tie order to agree on
    assert average_precision(labels, scores) == pytest.approx(slow_ap(labels.tolist(), scores.tolist()), abs=1e-12)


def test_normalise_divides_by_the_norm_plus_1e_5() -> None:
    x = torch.tensor([[3.0, 4.0], [0.0, 0.0], [1e-3, 0.0]], dtype=torch.float64)
    out = normalise(x)
    assert out.dtype == normalise(x.float()).dtype == np.float64  # float32 features are normalised in float64 (FSSB)
    np.testing.assert_allclose(out, [[3 / 5.00001, 4 / 5.00001], [0, 0], [1e-3 / (1e-3 + 1e-5), 0]], rtol=1e-12)


def test_difficult_images_are_negatives_in_training_or_left_out() -> None:
    labels = np.array([1, 0, -1, 1, 0])
    keep, y = train_targets(labels, "negative")  # FSSB train_svm_kfold.py, VISSL svm_trainer.py
    assert keep.all() and y.tolist() == [1, -1, -1, 1, -1]
    keep, y = train_targets(labels, "ignore")
    assert keep.tolist() == [True, False, True, True, False] and y.tolist() == [1, -1, 1]


def noisy_problem(seed: int, n: int = 90, d: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = np.where(x[:, 0] + 0.8 * rng.normal(size=n) > 0.4, 1, -1)
    return normalise(x), y


@pytest.mark.parametrize("seed", range(3))
def test_cost_chosen_by_cross_validation_is_the_hand_loops(seed: int) -> None:
    x, y = noisy_problem(seed)
    costs = [1e-3, 0.05, 1.0, 10.0, 0.5**6]
    fit = fit_class(x, y, costs, folds=3, max_iter=2000, seed=0)

    def svc(c: float) -> LinearSVC:  # FSSB's and VISSL's settings, written out again
        return LinearSVC(
            C=c,
            class_weight={1: 2, -1: 1},
            penalty="l2",
            loss="squared_hinge",
            dual=True,
            tol=1e-4,
            max_iter=2000,
            intercept_scaling=1.0,
            random_state=0,
        )

    by_hand = []
    for c in costs:
        folds = []
        for train, held in StratifiedKFold(3).split(x, y):  # cross_val_score's folds for a classifier with cv=3
            folds.append(average_precision_score(y[held], svc(c).fit(x[train], y[train]).decision_function(x[held])))
        by_hand.append(sum(folds) / len(folds))
    best = max(range(len(costs)), key=lambda i: (by_hand[i], -i))  # the highest; the first of equals
    np.testing.assert_allclose(fit.cv_ap, by_hand, rtol=1e-12)
    assert fit.cost == costs[best]
    np.testing.assert_allclose(fit.model.coef_, svc(costs[best]).fit(x, y).coef_, rtol=1e-12)


def test_equal_fold_aps_choose_the_first_cost_in_the_list() -> None:
    x = normalise(np.array([[1.0, 0.1 * k] for k in range(12)] + [[-1.0, 0.1 * k] for k in range(12)]))
    y = np.array([1] * 12 + [-1] * 12)
    for costs in ([10.0, 1.0, 100.0], [100.0, 10.0, 1.0]):
        fit = fit_class(x, y, costs, folds=3, max_iter=2000, seed=0)
        assert fit.cv_ap == [1.0, 1.0, 1.0] and fit.cost == costs[0]


def test_default_costs_are_fssbs_in_its_order() -> None:
    assert COSTS[:10] == (1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.1, 1.0, 10.0, 100.0)
    assert COSTS[10:] == tuple(0.5**k for k in range(4, 20)) and len(COSTS) == 26
    assert SVMConfig().costs == list(COSTS) and (SVMConfig().folds, SVMConfig().max_iter) == (3, 2000)


def test_difficult_test_images_do_not_count_and_training_follows_the_setting() -> None:
    x, y = noisy_problem(7, n=60)
    train_labels, test_labels = y[:45, None].copy(), y[45:, None].copy()
    cfg = SVMConfig(costs=[0.1, 1.0], train_difficult="ignore")
    base = class_scores(x[:45], train_labels, x[45:], test_labels, ["c"], cfg, 0)["c"]

    rng = np.random.default_rng(0)
    extra = normalise(rng.normal(size=(10, x.shape[1])))
    difficult = np.zeros((10, 1), dtype=test_labels.dtype)  # label 0: only difficult objects of the class
    # difficult test images, however they score, leave the AP as it was
    with_test = class_scores(
        x[:45], train_labels, np.vstack([x[45:], extra]), np.vstack([test_labels, difficult]), ["c"], cfg, 0
    )["c"]
    assert with_test["ap"] == base["ap"] and with_test["cost"] == base["cost"]
    # "ignore": difficult training images change nothing either
    ignored = class_scores(
        np.vstack([x[:45], extra]), np.vstack([train_labels, difficult]), x[45:], test_labels, ["c"], cfg, 0
    )["c"]
    assert ignored == base
    # "negative" (the default, FSSB's): the same as labelling them -1
    cfg = SVMConfig(costs=[0.1, 1.0])
    negative = class_scores(
        np.vstack([x[:45], extra]), np.vstack([train_labels, difficult]), x[45:], test_labels, ["c"], cfg, 0
    )["c"]
    relabelled = class_scores(
        np.vstack([x[:45], extra]), np.vstack([train_labels, difficult - 1]), x[45:], test_labels, ["c"], cfg, 0
    )["c"]
    assert negative == relabelled and negative != base


def test_a_class_too_rare_to_cross_validate_is_named() -> None:
    assert unusable(np.array([1, 1, -1, -1, -1]), np.array([1]), 3) == (
        "2 positive and 3 negative training images; svm.folds=3 needs 3 of each"
    )
    assert unusable(np.array([1, 1, 1, -1, -1, -1]), np.array([-1, 0]), 3) == "no positive test image"
    assert unusable(np.array([1, 1, 1, -1, -1, -1]), np.array([1]), 3) == ""


def test_image_labels_follow_the_devkit_convention(tmp_path) -> None:
    """1: a non-difficult object of the class; 0: only difficult ones; -1: none (VOC's <class>_<split>.txt)."""
    root = tmp_path / "voc"
    for d in ("Annotations", "ImageSets/Main", "JPEGImages"):
        (root / d).mkdir(parents=True)
    box = (2, 2, 20, 20)
    images = {
        "a": [("dog", False), ("dog", True), ("cat", True)],
        "b": [("cat", True), ("cat", True)],
        "c": [("person", False)],
    }
    for name, objects in images.items():
        objs = [{"name": n, "bbox": box, "difficult": d} for n, d in objects]
        write_annotation(root / "Annotations" / f"{name}.xml", f"{name}.jpg", 32, 32, objs)
    (root / "ImageSets/Main/trainval.txt").write_text("a\nb\nc\n")
    voc = VOCDetection(root, "trainval")
    labels = image_labels(voc)
    assert labels.dtype == torch.int8
    by_class = {name: labels[:, voc.classes.index(name)].tolist() for name in ("cat", "dog", "person", "bird")}
    assert by_class == {"cat": [0, 0, -1], "dog": [1, -1, -1], "person": [-1, -1, 1], "bird": [-1, -1, -1]}


def test_squash_view_keeps_the_whole_image() -> None:
    image = Image.new("RGB", (40, 10), (255, 0, 0))
    image.paste((0, 0, 255), (30, 0, 40, 10))  # the right quarter blue: a centre crop would lose it
    out = squash_view(16, (0.0,) * 3, (1.0,) * 3)(image)
    assert out.shape == (3, 16, 16)
    assert out[2, :, -1].min() > 0.9 and out[0, :, -1].max() < 0.1 and out[0, :, 0].min() > 0.9


def context(tmp_path: Path, cfg: SVMConfig) -> tuple[EvalContext, RunConfig]:
    run = RunConfig()
    run.svm = cfg
    run_dir = tmp_path / "runs" / "random"
    run_dir.mkdir(parents=True, exist_ok=True)
    ctx = EvalContext(
        Backbone("resnet18-smallstem-w0.25"), Splits([], [], INFO), run_dir, torch.device("cpu"), 0, shared=tmp_path
    )
    return ctx, resolve(run, "random").run


@pytest.mark.slow
def test_svm_rows_files_and_cache_on_a_tiny_synthetic_voc_root(tmp_path) -> None:
    cfg = SVMConfig(synthetic_trainval=30, synthetic_test=15, synthetic_size=32, costs=[0.1, 10.0])
    ctx, run = context(tmp_path, cfg)
    with warnings.catch_warnings(record=True) as caught:  # a rare class may be left out (named); nothing else warns
        warnings.simplefilter("always")
        rows = evaluate("svm", ctx, run)  # evaluate() also checks the backbone came out unchanged
    assert all("classes left out of the mAP" in str(w.message) for w in caught)
    assert [r.layer for r in rows] == ctx.backbone.stage_names == ["stem", "layer1", "layer2", "layer3", "layer4"]
    assert {(r.metric, r.protocol) for r in rows} == {("mAP", "voc07-svm on synthetic-voc-30-15-32px trainval->test")}
    assert all(0 < r.value <= 100 for r in rows)
    assert len((tmp_path / "data" / "synthetic-voc-30-15-32px" / "ImageSets/Main/test.txt").read_text().split()) == 15
    (record,) = ctx.run_dir.glob("svm-????????.json")
    per_class = json.loads(record.read_text())
    for r in rows:
        aps = [c["ap"] for c in per_class[r.layer].values() if "ap" in c]
        assert r.value == pytest.approx(100 * sum(aps) / len(aps))
        assert all(c["cost"] in cfg.costs and len(c["cv_ap"]) == 2 for c in per_class[r.layer].values() if "ap" in c)
    assert sorted(p.name.rsplit("-", 1)[1] for p in ctx.run_dir.glob("svm-features-*.pt")) == ["test.pt", "trainval.pt"]
    # other layers come from the same cached features
    run.svm = SVMConfig(
        synthetic_trainval=30, synthetic_test=15, synthetic_size=32, costs=[0.1, 10.0], layers=["layer4", "pooled"]
    )
    again = evaluate("svm", ctx, run)
    assert [r.layer for r in again] == ["layer4", "pooled"] and again[0].value == rows[-1].value
    assert len(list(ctx.run_dir.glob("svm-features-*.pt"))) == 2


def test_a_missing_root_names_the_key_to_set(tmp_path) -> None:
    for cfg, message in [
        (SVMConfig(dataset="voc"), "svm.dataset=voc needs svm.root=<dir>"),
        (SVMConfig(dataset="voc", root=str(tmp_path / "nowhere")), "svm.root .*nowhere does not exist; set svm.root"),
        (SVMConfig(dataset="voc07"), "svm.dataset=voc07 needs svm.root=<VOCdevkit dir> holding VOC2007/"),
        (SVMConfig(dataset="voc07", root=str(tmp_path)), "svm.dataset=voc07: .* has no VOC2007/"),
    ]:
        ctx, run = context(tmp_path, cfg)
        with pytest.raises(ConfigError, match=message):
            evaluate("svm", ctx, run)


def test_config_is_checked_and_set_from_the_command_line() -> None:
    cfg = load("default", {"svm": {"costs": "0.1,1", "layers": "layer3,layer4", "folds": "5"}}).svm
    assert (cfg.costs, cfg.layers, cfg.folds) == ([0.1, 1.0], ["layer3", "layer4"], 5)
    for bad, message in [
        ({"folds": "1"}, "svm.folds must be at least 2"),
        ({"costs": "0.1,0"}, "svm.costs must be positive"),
        ({"dataset": "voc12"}, "svm.dataset='voc12' is not valid"),
        ({"train_difficult": "positive"}, "svm.train_difficult='positive' is not valid"),
        ({"cost": "1"}, "unknown config key 'svm.cost'"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load("default", {"svm": bad})


def test_registered_with_its_own_hashed_section() -> None:
    assert EVALS["svm"].sections == ("svm",)
    settings = eval_settings("svm", lambda section: {"section": section})
    assert settings == {"svm": {"section": "svm"}}
