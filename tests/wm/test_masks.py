"""Masks: exact counts, disjoint context/target covering every token, tubes, the temporal split,
reproducibility, and coverage that favours no position (no corner, no last row or frame)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchwm.wm.masks import MaskSpec, gather_tokens, make_masks


def check_partition(spec: MaskSpec, ctx: torch.Tensor, tgt: torch.Tensor, batch: int) -> None:
    """Counts, dtype, sortedness, disjointness and full coverage of one batch of masks."""
    n, nt = spec.num_tokens, spec.num_targets
    assert 1 <= nt < n
    assert ctx.shape == (batch, n - nt) and tgt.shape == (batch, nt)
    assert ctx.dtype == tgt.dtype == torch.int64
    for idx in (ctx, tgt):
        assert bool((idx[:, 1:] > idx[:, :-1]).all()), "indices must be strictly increasing"
    both = torch.cat([ctx, tgt], dim=1).sort(dim=1).values
    assert torch.equal(both, torch.arange(n).expand(batch, n)), "context and target must partition the tokens"


def check_kind(spec: MaskSpec, tgt: torch.Tensor) -> None:
    """The shape of the target set that each kind promises."""
    k = spec.grid**2
    if spec.kind == "block":  # a tube: the same cells in every time step
        cells = tgt.view(tgt.shape[0], spec.time_steps, -1) - torch.arange(spec.time_steps).view(1, -1, 1) * k
        assert bool((cells == cells[:, :1]).all())
        assert bool((cells >= 0).all() & (cells < k).all())
    if spec.kind == "temporal":  # exactly the last predict_horizon steps
        first = (spec.time_steps - spec.predict_horizon) * k
        assert torch.equal(tgt, torch.arange(first, spec.num_tokens).expand_as(tgt))


GRIDS = [(1, 4), (2, 4), (1, 8), (3, 5), (4, 2)]


@pytest.mark.parametrize("kind", ["block", "random"])
@pytest.mark.parametrize(("time_steps", "grid"), GRIDS)
@pytest.mark.parametrize("batch", [1, 3, 16])
def test_block_and_random_partition(kind: str, time_steps: int, grid: int, batch: int) -> None:
    spec = MaskSpec(kind, time_steps, grid, mask_ratio=0.6)  # type: ignore[arg-type]
    ctx, tgt = make_masks(spec, batch, torch.Generator().manual_seed(1))
    check_partition(spec, ctx, tgt, batch)
    check_kind(spec, tgt)


@pytest.mark.parametrize(("time_steps", "horizon"), [(2, 1), (4, 1), (4, 3), (8, 2)])
@pytest.mark.parametrize("batch", [1, 5])
def test_temporal_masks_the_last_steps(time_steps: int, horizon: int, batch: int) -> None:
    spec = MaskSpec("temporal", time_steps, 4, predict_horizon=horizon)
    ctx, tgt = make_masks(spec, batch)
    assert spec.num_targets == horizon * 16
    check_partition(spec, ctx, tgt, batch)
    check_kind(spec, tgt)
    assert int(ctx.max()) < int(tgt.min())  # the past predicts the future


def test_target_count_follows_the_ratio() -> None:
    assert MaskSpec("random", 2, 8, mask_ratio=0.75).num_targets == 96
    assert MaskSpec("block", 2, 8, mask_ratio=0.75).num_targets == 2 * 48
    assert MaskSpec("block", 1, 8, mask_ratio=0.001).num_targets == 1  # never empty
    assert MaskSpec("random", 1, 8, mask_ratio=0.999).num_targets == 63  # never the whole clip


@given(
    kind=st.sampled_from(["block", "random", "temporal"]),
    time_steps=st.integers(1, 4),
    grid=st.integers(1, 7),
    ratio=st.floats(0.05, 0.95),
    batch=st.integers(1, 6),
    horizon=st.integers(1, 3),
    seed=st.integers(0, 2**31),
)
@settings(max_examples=80, deadline=None)
def test_masks_property(
    kind: str, time_steps: int, grid: int, ratio: float, batch: int, horizon: int, seed: int
) -> None:
    if kind == "temporal":
        time_steps, horizon = max(time_steps, 2), min(horizon, max(time_steps, 2) - 1)
    elif time_steps * grid * grid < 2 or (kind == "block" and grid == 1):
        return  # a single token (or a single cell for tubes) cannot be split into context and target
    spec = MaskSpec(kind, time_steps, grid, mask_ratio=ratio, predict_horizon=horizon)  # type: ignore[arg-type]
    ctx, tgt = make_masks(spec, batch, torch.Generator().manual_seed(seed))
    check_partition(spec, ctx, tgt, batch)
    check_kind(spec, tgt)


@pytest.mark.parametrize("kind", ["block", "random"])
def test_same_seed_same_masks_other_seed_other_masks(kind: str) -> None:
    spec = MaskSpec(kind, 2, 8)  # type: ignore[arg-type]
    a = make_masks(spec, 8, torch.Generator().manual_seed(3))
    b = make_masks(spec, 8, torch.Generator().manual_seed(3))
    c = make_masks(spec, 8, torch.Generator().manual_seed(4))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_samples_of_a_batch_differ() -> None:
    _, tgt = make_masks(MaskSpec("block", 1, 8), 8, torch.Generator().manual_seed(0))
    assert len({tuple(row.tolist()) for row in tgt}) > 1


@pytest.mark.parametrize("kind", ["block", "random"])
@pytest.mark.parametrize(("time_steps", "ratio"), [(1, 0.75), (2, 0.5)])
def test_coverage_is_unbiased(kind: str, time_steps: int, ratio: float) -> None:
    """Over many draws every token is a target about equally often: no corner, centre, last row or frame."""
    spec = MaskSpec(kind, time_steps, 8, mask_ratio=ratio)  # type: ignore[arg-type]
    _, tgt = make_masks(spec, 2000, torch.Generator().manual_seed(0))
    freq = torch.bincount(tgt.flatten(), minlength=spec.num_tokens).float() / 2000
    assert float(freq.max() / freq.min()) < 1.3, freq.view(time_steps, 8, 8)
    grid = freq.view(time_steps, 8, 8)
    mean = float(freq.mean())
    assert mean == pytest.approx(spec.num_targets / spec.num_tokens, rel=1e-6)
    for region in (grid[:, -1], grid[:, :, -1], grid[-1], grid[:, :2, :2], grid[:, 3:5, 3:5]):
        assert float(region.mean()) == pytest.approx(mean, rel=0.06)


def test_unknown_kind_raises() -> None:
    with pytest.raises(ValueError, match="unknown masking 'diagonal'"):
        make_masks(MaskSpec("diagonal", 1, 4), 2)  # type: ignore[arg-type]


def test_masks_follow_the_requested_device() -> None:
    ctx, tgt = make_masks(MaskSpec("random", 1, 4), 2, device=torch.device("cpu"))
    assert ctx.device.type == tgt.device.type == "cpu"


def test_gather_tokens_picks_rows() -> None:
    x = torch.arange(2 * 5 * 3).view(2, 5, 3)
    idx = torch.tensor([[0, 4], [1, 2]])
    out = gather_tokens(x, idx)
    assert out.shape == (2, 2, 3)
    assert torch.equal(out[0, 1], x[0, 4]) and torch.equal(out[1, 0], x[1, 1])
