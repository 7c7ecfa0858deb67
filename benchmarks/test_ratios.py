"""Checks of the speed tooling itself (not timed): the ratio table, the README writer, the sizes, the workloads.

They run with ``pytest benchmarks/`` and are skipped under ``--benchmark-only``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import ratios
import torch
import workloads

from ssl_bench.config import ConfigError


def settings(**kw) -> ratios.Settings:
    base = dict(
        machine="test CPU",
        sizes=workloads.Sizes(),
        threads=2,
        ceiling_gflops=1000.0,
        repeats=10,
        warmup=2,
        num_train=2000,
        image_size=32,
        when="now",
    )
    return ratios.Settings(**{**base, **kw})


def method(name: str, step_s: float, backbone_s: float, gflop: float, loader: float) -> ratios.MethodResult:
    return ratios.MethodResult(name, "128 x 32px", 128, step_s, backbone_s, int(gflop * 1e9), int(gflop * 1e9), loader)


def rows(text: str, first: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(f"| {first} |")]


def test_render_judges_each_target() -> None:
    methods = [
        method("supervised", 1.0, 0.9, 700, 200),  # (a) 1.11 pass, (b) 70% pass, (d) 200/128 pass
        method("rotnet", 1.2, 1.0, 600, 100),  # (a) 1.20 fail, (b) 50% fail, (d) 100/106.7 fail
        method("jigsaw", 2.0, 1.0, 100, 500),  # (a) fail, (b) not judged, (d) pass
    ]
    nce = ratios.NCEResult(
        256, 1_281_167, 32_000, matmul_s=0.01, shared_s=0.019, per_sample_s=None, note="skipped: no room"
    )
    text = ratios.render(settings(), methods, nce)
    supervised, rotnet, jigsaw = rows(text, "supervised"), rows(text, "rotnet"), rows(text, "jigsaw")
    assert [r.endswith("| PASS |") for r in supervised] == [True, True, True]
    assert [r.endswith("| **FAIL** |") for r in rotnet] == [True, True, True]
    assert "| 1.20 |" in rotnet[0] and "| 60% |" in rotnet[1]
    assert jigsaw[1].endswith("| reported¹ |  |")  # (b) is not judged for tiles
    assert "| shared negatives (default) | 19 | 1.9 | <= 2 | PASS |" in text
    assert "| per-sample negatives (paper) | skipped: no room |" in text
    assert text.rstrip().endswith(
        "5 of 9 targets met."
    )  # judged 3 + 2 + 1 + 3; passed: supervised x3, shared, jigsaw (d)
    assert "Smoke sizes" not in text


def test_render_marks_smoke_sizes() -> None:
    text = ratios.render(settings(sizes=workloads.SMALL), [method("npidpp", 1.0, 1.0, 1, 1)], None)
    assert "Smoke sizes" in text and "(c)" not in text


def test_write_between_markers(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{ratios.BEGIN}\nold\n{ratios.END}\nafter\n")
    ratios.write_between_markers(readme, "| new |\n")
    ratios.write_between_markers(readme, "| newer |\n")  # again: replaced, not appended
    assert readme.read_text() == f"# x\n\n{ratios.BEGIN}\n| newer |\n{ratios.END}\nafter\n"
    readme.write_text("no markers\n")
    with pytest.raises(SystemExit, match="no <!-- table --> ... <!-- /table --> markers"):
        ratios.write_between_markers(readme, "x")


def test_readme_has_the_markers() -> None:
    text = ratios.README.read_text()
    assert text.index(ratios.BEGIN) < text.index(ratios.END)


def test_sizes_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_BENCH_BENCH_SMALL", "1")
    monkeypatch.setenv("SSL_BENCH_BENCH_K", "500")
    monkeypatch.setenv("SSL_BENCH_BENCH_CHANNELS_LAST", "0")
    s = workloads.sizes()
    assert (s.small, s.backbone, s.batch, s.bank, s.negatives, s.channels_last) == (
        True,
        "resnet18-smallstem-w0.25",
        16,
        10_000,
        500,
        False,
    )
    assert workloads.sizes(negatives=200).negatives == 200  # an explicit option wins over the environment
    monkeypatch.setenv("SSL_BENCH_BENCH_K", "10000")
    with pytest.raises(ConfigError, match="need a bank of more than K slots"):
        workloads.sizes()
    monkeypatch.setenv("SSL_BENCH_BENCH_K", "many")
    with pytest.raises(ConfigError, match="SSL_BENCH_BENCH_K='many': expected an integer"):
        workloads.sizes()


def test_full_sizes_are_the_issue_s() -> None:
    s = workloads.sizes(small=False)
    assert (s.backbone, s.batch, s.bank, s.nce_batch, s.negatives) == (
        "resnet18-smallstem",
        128,
        1_281_167,
        256,
        32_000,
    )


@pytest.mark.parametrize("name", ["rotnet", "pirl"])
def test_workload_times_the_right_passes(name: str) -> None:
    """The bare passes touch only the backbone; the step updates it; the inputs are what the step feeds the backbone."""
    work = workloads.method_workload(
        name, workloads.sizes(small=True, batch=4, precision="fp32"), workloads.ci_splits()
    )
    expected = {"rotnet": [(16, 3, 32, 32)], "pirl": [(4, 3, 32, 32), (36, 3, 8, 8)]}[name]
    assert [tuple(x.shape) for x in work.inputs] == expected
    work.backbone_passes()
    with_grad = {n for n, p in work.method.named_parameters() if p.grad is not None}
    assert with_grad and all(n.startswith("backbone.") for n in with_grad)
    before = work.method.backbone.model.conv1.weight.detach().clone()
    work.step()
    assert not torch.equal(before, work.method.backbone.model.conv1.weight)


def test_nce_floor_is_the_scores_matmul() -> None:
    nce = workloads.nce_workload(workloads.sizes(small=True, bank=100, nce_batch=4, negatives=10))
    nce.matmul()
    torch.testing.assert_close(nce.out, nce.x.detach() @ nce.bank.memory[:10].T)
    for shared in (True, False):
        nce.step(shared)
        assert nce.x.grad is not None and torch.isfinite(nce.x.grad).all()
