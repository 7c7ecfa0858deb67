"""Checks of the speed tooling itself (not timed): the ratio table, the README writer, the sizes, the workloads.

They run with ``pytest benchmarks/`` and are skipped under ``--benchmark-only``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import ratios
import torch
import workloads

from ssl_bench.config import ConfigError


def settings(**kw) -> ratios.Settings:
    base = dict(
        machine="test CPU",
        sizes=workloads.Sizes(precision="bf16"),
        threads=2,
        ceiling=ratios.Ceiling(1000.0, "given (--ceiling-gflops)"),
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


def test_render_names_the_measured_ceiling_and_the_precision() -> None:
    ceiling = ratios.Ceiling(800.0, "measured in this run: 3x3 conv 256 -> 256 channels ...", flops=88_800_000_000)
    size = workloads.Sizes(precision="fp32", precision_note="auto: fp32, since this CPU has no native bf16")
    text = ratios.render(settings(ceiling=ceiling, sizes=size), [method("supervised", 1.0, 1.0, 560, 500)], None)
    assert "- Convolution ceiling: 800 GFLOP/s, measured in this run: 3x3 conv 256 -> 256 channels ..." in text
    assert "- Precision: auto: fp32, since this CPU has no native bf16." in text
    assert "/ the convolution ceiling, 800 GFLOP/s (measured, fp32, 2 threads)" in text
    assert "| 3x3 conv (ceiling) | 88.8 | 800 | 100% |  |  |  |  |" in text
    assert (
        "| supervised | 560.0 | 560 | 70% | 560 | 70% | >= 65% | PASS |" in text
    )  # judged against 800, not a constant
    given = ratios.render(settings(), [method("supervised", 1.0, 1.0, 560, 500)], None)
    assert "(given, bf16 autocast, 2 threads)" in given and "3x3 conv (ceiling)" not in given
    assert "| supervised | 560.0 | 560 | 56% |" in given


def test_ceiling_flops_are_the_convolution_formula() -> None:
    """FlopCounterMode counts 2·N·C_out·H·W·C_in·k² forward and twice that backward (input and weight gradients)."""
    for precision, memory in (("bf16", True), ("fp32", False)):
        size = workloads.Sizes(precision=precision, channels_last=memory, ceiling_channels=16, ceiling_map=6)
        work = workloads.conv_ceiling(size, batch=3)
        formula = 2 * 3 * 16 * 6 * 6 * 16 * 3 * 3 * 3
        assert work.flops == formula and workloads.count_flops(work.step) == formula
        assert work.describe == "3x3 conv 16 -> 16 channels on 6 x 6 maps, batch 3"
        assert work.x.grad is not None and work.conv.weight.grad is not None  # both gradients computed
        expected = torch.bfloat16 if precision == "bf16" else torch.float32
        assert work.x.dtype == expected and work.x.grad.dtype == expected
        assert work.x.is_contiguous(memory_format=torch.channels_last if memory else torch.contiguous_format)


def test_ceiling_batch_is_calibrated_and_measured() -> None:
    size = workloads.Sizes(
        precision="fp32", channels_last=False, ceiling_channels=8, ceiling_map=4, ceiling_call_s=1e-9
    )
    assert workloads.conv_ceiling(size).x.shape[0] == 1  # a tiny target: the smallest batch
    big = workloads.conv_ceiling(dataclasses.replace(size, ceiling_call_s=10.0), max_batch=64)
    assert big.x.shape[0] == 64  # a huge target: capped
    work = workloads.conv_ceiling(size, batch=2)
    ceiling = ratios.measured_ceiling(work, [0.002, 0.001, 0.003], size)
    assert ceiling.flops == work.flops and ceiling.gflops == pytest.approx(work.flops / 0.002 / 1e9)
    assert "median 2 ms of 3 calls" in ceiling.how and "fp32, contiguous (NCHW)" in ceiling.how


def test_precision_follows_the_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """bf16 only where the engine's auto would use it; elsewhere fp32, said so, even when bf16 is asked for."""
    monkeypatch.delenv("SSL_BENCH_BENCH_PRECISION", raising=False)
    monkeypatch.setattr(workloads, "bf16_supported", lambda: False)
    assert (workloads.sizes(small=True).precision, workloads.sizes(small=True, precision="bf16").precision) == (
        "fp32",
        "fp32",
    )
    assert workloads.sizes(small=True, precision="bf16").precision_note.startswith("bf16 asked for, but this CPU")
    assert workloads.sizes(small=True).precision_note.startswith("auto: fp32, since this CPU has no native bf16")
    assert workloads.conv_ceiling(workloads.sizes(small=True), batch=1).dtype is None
    monkeypatch.setattr(workloads, "bf16_supported", lambda: True)
    assert workloads.sizes(small=True).precision == "bf16"
    assert workloads.sizes(small=True, precision="fp32").precision == "fp32"
    with pytest.raises(ConfigError, match="precision 'fp16': choose auto, bf16 or fp32"):
        workloads.sizes(precision="fp16")


def test_machine_names_the_isa_flags() -> None:
    assert ratios.isa_flags({"avx2", "fma"}) == "ISA avx2 (no avx512f, avx512_bf16, amx_tile, amx_bf16)"
    assert ratios.isa_flags(set(ratios.ISA_FLAGS)) == "ISA avx2, avx512f, avx512_bf16, amx_tile, amx_bf16"
    assert ratios.isa_flags(set()) == "ISA flags unknown (no /proc/cpuinfo)"
    text = ratios.machine()
    assert "ATen CPU capability" in text and "ISA" in text and f"torch {torch.__version__}" in text


def test_write_between_markers(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{ratios.BEGIN}\nold\n{ratios.END}\nafter\n")
    ratios.write_between_markers(readme, "| new |\n")
    ratios.write_between_markers(readme, "| newer |\n")  # again: replaced, not appended
    assert readme.read_text() == f"# x\n\n{ratios.BEGIN}\n| newer |\n{ratios.END}\nafter\n"
    readme.write_text("no markers\n")
    with pytest.raises(SystemExit, match="no <!-- table --> ... <!-- /table --> markers"):
        ratios.write_between_markers(readme, "x")


def test_markers_are_keyed_by_cpu_kind() -> None:
    assert ratios.markers(ratios.BEGIN, ratios.END, "avx2") == ("<!-- table avx2 -->", "<!-- /table avx2 -->")
    isa = torch.backends.cpu.get_cpu_capability().lower()
    assert ratios.cpu_kind({"avx2", "avx512f", "avx512_bf16"}) == isa
    assert ratios.cpu_kind({"avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"}) == f"{isa}-amx"
    assert ratios.cpu_kind() == isa + ("-amx" if "amx_tile" in ratios.cpu_flags() else "")


def test_readme_has_the_markers() -> None:
    text = ratios.README.read_text()
    for kind in ("avx512-amx", "avx512", "avx2"):  # the three kinds of machine met so far, each with its own table
        begin, end = ratios.markers(ratios.BEGIN, ratios.END, kind)
        assert text.index(begin) < text.index(end)


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
    expected = {"rotnet": [(16, 3, 32, 32)], "pirl": [(4, 3, 32, 32), (36, 3, 9, 9)]}[name]
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
