"""Checks of ``peers.py`` (not timed): a ``--small`` run prints every row with consistent ratios, a missing extra is named.

They run with ``pytest benchmarks/test_peers.py``; the run needs the extras ``peers`` and ``faster-coco-eval``.
"""

from __future__ import annotations

import peers
import pytest

ROWS = [
    "jigsaw tiles",
    "PIRL views",
    "PIRL v_I",
    "PIRL tiles",
    "bank + InfoNCE step",
    "scores + InfoNCE fwd + bwd",
    "the bank's own work",
    "COCO bbox evaluation",
    "load (COCO + loadRes)",
    "evaluate + accumulate + summarize",
]


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


@pytest.mark.slow
def test_small_run_prints_every_row(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("lightly", reason="needs lightly, the optional extra `peers`: pip install -e '.[peers]'")
    pytest.importorskip(
        "faster_coco_eval", reason="needs faster-coco-eval, an optional extra: pip install -e '.[faster-coco-eval]'"
    )
    assert peers.main(["--small"]) == 0  # also checks that both losses and both COCO evaluators agree
    out = capsys.readouterr().out
    assert "Smoke sizes" in out and "lightly 1." in out
    header = next(line for line in out.splitlines() if line.startswith("| workload |"))
    assert cells(header) == ["workload", "ours", "peer", "unit", "ours / peer (speed)", "notes"]
    rows = [cells(line) for line in out.splitlines() if line.startswith("| ") and line != header]
    assert [next(name for name in ROWS if name in r[0]) for r in rows] == ROWS  # every row, in order, once
    for workload, ours, peer, unit, ratio, notes in rows:
        ours_v, peer_v, ratio_v = (float(v.replace(",", "")) for v in (ours, peer, ratio))
        assert ours_v > 0 and peer_v > 0 and notes, workload
        assert unit == {"jigsaw": "images/s", "PIRL": "images/s", "COCO": "s"}.get(workload.split()[0], unit)
        expected = ours_v / peer_v if unit == "images/s" else peer_v / ours_v
        assert ratio_v == pytest.approx(expected, rel=0.02, abs=0.01), workload  # cells are rounded to 3 digits
    assert [r[3] for r in rows[4:7]] == ["ms"] * 3


def test_speed_ratio_is_ours_over_peer_in_speed() -> None:
    assert peers.Row("w", ours=300.0, peer=100.0, unit="images/s").speed_ratio == 3.0
    assert peers.Row("w", ours=50.0, peer=100.0, unit="ms").speed_ratio == 2.0  # half the time: twice the speed


def test_missing_extra_names_the_pip_extra() -> None:
    with pytest.raises(SystemExit, match=r"needs no_such_peer, which is not installed: pip install -e '\.\[peers\]'"):
        peers.need("no_such_peer.loss", "peers")


def test_unknown_part_is_an_error_listing_the_valid_ones() -> None:
    with pytest.raises(SystemExit, match="--only: unknown \\['gan'\\]; valid: jigsaw, pirl, bank, coco"):
        peers.main(["--only", "jigsaw,gan"])
