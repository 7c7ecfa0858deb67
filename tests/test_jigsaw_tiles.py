"""The jigsaw tiler: geometry, exact tile positions, per-tile normalisation, the shuffle convention, the view maker."""

from __future__ import annotations

import pytest
import torch

from ssl_bench.data.jigsaw import (
    JigsawView,
    TileGeometry,
    assemble_tiles,
    extract_tiles,
    normalize_tiles,
    shuffle_tiles,
)

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def test_paper_geometry_and_proportions() -> None:
    paper = TileGeometry.for_crop(255)
    assert (paper.cell, paper.tile, paper.margin, paper.num_tiles) == (85, 64, 0, 9)
    assert TileGeometry(255) == paper  # tile=0 applies the same 64/85 rule
    small = TileGeometry.for_crop(32)
    assert (small.cell, small.tile, small.margin) == (10, 8, 1)
    assert TileGeometry.for_crop(224).tile == 56  # round(74 * 64/85)


def test_tile_larger_than_cell_is_an_error() -> None:
    with pytest.raises(ValueError, match="tile 11 px does not fit in a cell of 10 px"):
        TileGeometry(30, tile=11)
    with pytest.raises(ValueError, match="does not fit"):
        TileGeometry.for_crop(30, tile_ratio=1.2)
    with pytest.raises(ValueError, match="crop >= grid"):
        TileGeometry(2, grid=3)


def test_tiles_reassemble_to_the_crop_without_jitter() -> None:
    x = torch.randn(2, 3, 30, 30)
    geometry = TileGeometry(30, tile=10)  # tile == cell: the tiles cover the crop
    assert torch.equal(assemble_tiles(extract_tiles(x, geometry, jitter=False)), x)
    assert torch.equal(assemble_tiles(extract_tiles(x, geometry, jitter=True)), x)  # no room to jitter
    assert torch.equal(assemble_tiles(extract_tiles(x[0], geometry, jitter=False)), x[0])  # unbatched


def test_jittered_tiles_are_the_crop_at_their_offsets() -> None:
    geometry = TileGeometry.for_crop(255)
    x = torch.randn(2, 3, 255, 255)
    tiles, corners = extract_tiles(x, geometry, generator=torch.Generator().manual_seed(0), return_offsets=True)
    assert tiles.shape == (2, 9, 3, 64, 64) and corners.shape == (2, 9, 2)
    for b in range(2):
        for k in range(9):
            y, x0 = corners[b, k].tolist()
            r, c = divmod(k, 3)  # row-major cells
            assert 85 * r <= y <= 85 * r + 21 and 85 * c <= x0 <= 85 * c + 21
            assert torch.equal(tiles[b, k], x[b, :, y : y + 64, x0 : x0 + 64])


def test_jitter_is_uniform_over_the_whole_room_and_seeded() -> None:
    geometry = TileGeometry.for_crop(255)
    x = torch.randn(64, 1, 255, 255)
    _, corners = extract_tiles(x, geometry, generator=torch.Generator().manual_seed(1), return_offsets=True)
    k = torch.arange(9)
    jitter = corners - 85 * torch.stack([k // 3, k % 3], -1)  # (64, 9, 2) offsets inside the cells
    assert jitter.min() == 0 and jitter.max() == 21
    assert len(torch.unique(jitter)) == 22
    again = extract_tiles(x[:2], geometry, generator=torch.Generator().manual_seed(5))
    assert torch.equal(again, extract_tiles(x[:2], geometry, generator=torch.Generator().manual_seed(5)))


def test_centred_tiles_with_a_margin() -> None:
    geometry = TileGeometry.for_crop(32)  # cell 10, tile 8, margin 1: cells start at 1, 11, 21
    x = torch.randn(3, 32, 32)
    tiles, corners = extract_tiles(x, geometry, jitter=False, return_offsets=True)
    assert tiles.shape == (9, 3, 8, 8)
    assert corners[:, 0].tolist() == [2, 2, 2, 12, 12, 12, 22, 22, 22]
    assert corners[:, 1].tolist() == [2, 12, 22] * 3
    assert torch.equal(tiles[5], x[:, 12:20, 22:30])
    with pytest.raises(ValueError, match="images are 30x30, the geometry expects 32x32"):
        extract_tiles(torch.zeros(3, 30, 30), geometry)


def test_normalize_tiles_per_tile_and_channel() -> None:
    scale = 0.2 + 5 * torch.rand(4, 9, 3, 1, 1)  # very different contrasts per tile and channel
    tiles = torch.randn(4, 9, 3, 16, 16) * scale + torch.randn(4, 9, 3, 1, 1) * 3
    out = normalize_tiles(tiles)
    assert torch.allclose(out.mean((-2, -1)), torch.zeros(4, 9, 3), atol=1e-5)
    assert torch.allclose(out.std((-2, -1), unbiased=False), torch.ones(4, 9, 3), atol=1e-3)
    flat = normalize_tiles(torch.full((9, 3, 4, 4), 0.7))
    assert torch.isfinite(flat).all() and flat.abs().max() < 1e-4  # a flat tile stays flat, no division by zero


def test_shuffle_convention_and_its_inverse() -> None:
    tiles = torch.arange(9.0).reshape(1, 9, 1, 1, 1).expand(3, 9, 2, 4, 4)  # tile k is filled with k
    perms = torch.stack([torch.randperm(9, generator=torch.Generator().manual_seed(s)) for s in range(5)])
    index = torch.tensor([4, 0, 2])
    out = shuffle_tiles(tiles, perms, index)
    assert torch.equal(out[:, :, 0, 0, 0].long(), perms[index])  # position j holds original tile perms[index][j]
    inverse = perms[index].argsort(1)  # (B, 9)
    restored = out[torch.arange(3)[:, None], inverse]
    assert torch.equal(restored, tiles)


def test_assemble_rejects_a_wrong_tile_count() -> None:
    with pytest.raises(ValueError, match="8 tiles do not make a 3x3 grid"):
        assemble_tiles(torch.zeros(1, 8, 3, 4, 4))


def image() -> torch.Tensor:
    return torch.randint(0, 256, (3, 48, 40), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_view_label_is_the_applied_permutation() -> None:
    perms = torch.stack([torch.randperm(9, generator=torch.Generator().manual_seed(s)) for s in range(7)])
    shuffled = JigsawView(30, MEAN, STD, perms, grayscale_p=0.5)
    unshuffled = JigsawView(30, MEAN, STD, torch.arange(9).expand(7, 9), grayscale_p=0.5)  # same draws, no shuffle
    for seed in range(6):
        torch.manual_seed(seed)
        out = shuffled(image())
        torch.manual_seed(seed)
        ref = unshuffled(image())
        assert out["perm"].dtype == torch.int64 and out["perm"].shape == () and torch.equal(out["perm"], ref["perm"])
        assert out["tiles"].shape == (9, 3, 8, 8)
        assert torch.equal(out["tiles"], ref["tiles"][perms[out["perm"]]])
        assert torch.equal(out["tiles"][perms[out["perm"]].argsort()], ref["tiles"])  # unshuffle with perms[label]


def test_view_without_perms_returns_the_random_order() -> None:
    shuffled = JigsawView(30, MEAN, STD, None, tile_color_jitter=True)
    unshuffled = JigsawView(30, MEAN, STD, torch.arange(9)[None], tile_color_jitter=True)
    torch.manual_seed(0)
    out = shuffled(image())
    torch.manual_seed(0)
    ref_tiles = unshuffled(image())["tiles"]  # same draws up to the shuffle (the last draw), so the same tiles
    order = out["perm"]
    assert order.shape == (9,) and torch.equal(order.sort().values, torch.arange(9))
    assert torch.equal(out["tiles"], ref_tiles[order])


def test_view_tiles_are_normalised_and_paper_sized() -> None:
    """Noroozi & Favaro's per-tile normalisation, when asked (Goyal et al.'s default has none)."""
    view = JigsawView(255, MEAN, STD, torch.arange(9)[None], scale=None, tile_color_jitter=True, per_tile_norm=True)
    out = view(torch.randint(0, 256, (3, 300, 280), dtype=torch.uint8))
    assert out["tiles"].shape == (9, 3, 64, 64)
    assert torch.allclose(out["tiles"].mean((-2, -1)), torch.zeros(9, 3), atol=1e-4)
    assert torch.allclose(out["tiles"].std((-2, -1), unbiased=False), torch.ones(9, 3), atol=1e-2)


def test_view_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="geometry is for a 255 px crop, not 32"):
        JigsawView(32, MEAN, STD, None, geometry=TileGeometry.for_crop(255))
    with pytest.raises(ValueError, match=r"perms must be \(P, 9\)"):
        JigsawView(32, MEAN, STD, torch.arange(4)[None])


def test_hsv_round_trip_and_hue_matches_torchvision() -> None:
    from torchvision.transforms.v2 import functional as TF

    from ssl_bench.data.jigsaw import _hsv_to_rgb, _rgb_to_hsv, jitter_tiles

    g = torch.Generator().manual_seed(0)
    x = torch.rand(9, 3, 8, 8, generator=g)
    torch.testing.assert_close(_hsv_to_rgb(_rgb_to_hsv(x)), x, atol=1e-5, rtol=0)
    # with only a hue shift, each tile equals torchvision's adjust_hue with that tile's own factor
    g1 = torch.Generator().manual_seed(3)
    out = jitter_tiles(x, strength=(0, 0, 0, 0.2), gray_p=0.0, photometric_p=0.0, flip=False, generator=g1)
    g2 = torch.Generator().manual_seed(3)
    [torch.rand(9, 1, 1, 1, generator=g2) for _ in range(3)]  # brightness, contrast, saturation draws
    shifts = (2 * torch.rand(9, 1, 1, generator=g2) - 1) * 0.2
    for tile, shift, got in zip(x, shifts.flatten(), out):
        torch.testing.assert_close(got, TF.adjust_hue(tile, float(shift)), atol=2e-3, rtol=0)


def test_tile_jitter_draws_independently_per_tile() -> None:
    from ssl_bench.data.jigsaw import jitter_tiles

    same = torch.full((9, 3, 8, 8), 0.5)
    out = jitter_tiles(same, gray_p=0.0, photometric_p=0.0, generator=torch.Generator().manual_seed(0))
    assert len({round(float(t.mean()), 4) for t in out}) == 9  # nine different brightness/contrast draws
    assert out.min() >= 0 and out.max() <= 1


def test_tile_flip_and_photometric_are_per_tile() -> None:
    """VISSL's PIRL flips each patch on its own and applies the photometric step to each with p = 0.66."""
    from ssl_bench.data.jigsaw import jitter_tiles

    x = torch.rand(64, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    flipped = jitter_tiles(
        x, (0, 0, 0, 0), gray_p=0.0, photometric_p=0.0, flip=True, generator=torch.Generator().manual_seed(2)
    )
    same = [torch.allclose(f, t, atol=1e-5) for f, t in zip(flipped, x)]
    mirrored = [torch.allclose(f, t.flip(-1), atol=1e-5) for f, t in zip(flipped, x)]
    assert all(a or b for a, b in zip(same, mirrored)) and 16 < sum(mirrored) < 48
    changed = jitter_tiles(
        x, (0, 0, 0, 0), gray_p=0.0, photometric_p=0.66, flip=False, generator=torch.Generator().manual_seed(3)
    )
    touched = sum(not torch.allclose(c, t, atol=1 / 255) for c, t in zip(changed, x))
    assert 30 < touched < 56  # about 0.66 x 64 tiles, drawn per tile
