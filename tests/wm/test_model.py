"""Encoders, predictor, JEPA, EMA target and losses: shapes, dtypes, gradient flow, and what each loss
measures."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torchwm.wm.config import JEPAConfig
from torchwm.wm.encoders import MaskedPredictor, VisionEncoder, prepare_frames
from torchwm.wm.jepa import JEPA, build_encoder, ema_momentum, mask_spec
from torchwm.wm.losses import collapse_stats, covariance_loss, prediction_loss, variance_loss
from torchwm.wm.masks import MaskSpec, make_masks

B, T, C, S, P, D = 2, 4, 3, 32, 8, 32  # batch, frames, channels, image side, patch, width
K = (S // P) ** 2  # tokens a time step


def make_encoder(kind: str, tubelet: int) -> VisionEncoder:
    torch.manual_seed(0)
    return VisionEncoder(kind, S, P, T, tubelet, C, D, depth=2, num_heads=2)  # type: ignore[arg-type]


def clips(seed: int = 0) -> torch.Tensor:
    return torch.randn(B, T, C, S, S, generator=torch.Generator().manual_seed(seed))


def model_and_masks(cfg: JEPAConfig) -> tuple[JEPA, list[tuple[torch.Tensor, torch.Tensor]]]:
    torch.manual_seed(0)
    model = JEPA(cfg)
    gen = torch.Generator().manual_seed(0)
    masks = [make_masks(mask_spec(cfg), B, gen) for _ in range(model.num_views)]
    return model, masks


def tiny_clips(cfg: JEPAConfig) -> torch.Tensor:
    return torch.randn(
        B, cfg.num_frames, 3, cfg.image_size, cfg.image_size, generator=torch.Generator().manual_seed(1)
    )


# --- encoders ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "tubelet", "steps"), [("temporal", 2, T // 2), ("temporal", 1, T), ("spatial", 1, T)]
)
def test_encoder_shapes_with_and_without_keep(kind: str, tubelet: int, steps: int) -> None:
    enc = make_encoder(kind, tubelet)
    out = enc(clips())
    assert out.shape == (B, steps * K, D) and out.dtype == torch.float32
    keep = torch.stack([torch.randperm(steps * K)[:7].sort().values for _ in range(B)])
    ctx = enc(clips(), keep)
    assert ctx.shape == (B, 7, D) and ctx.dtype == torch.float32
    assert enc.tokens_per_step == K


def test_spatial_encoder_with_keep_does_not_mix_frames() -> None:
    enc = make_encoder("spatial", 1).eval()
    keep = torch.tensor([[0, 3, 5, K + 1, K + 2, 2 * K + 7, 3 * K]] * B)  # tokens of frames 0, 1, 2, 3
    x = clips()
    y = x.clone()
    y[:, 1] = torch.randn_like(y[:, 1])  # new pixels in frame 1 only
    a, b = enc(x, keep), enc(y, keep)
    frame = keep[0] // K
    assert torch.allclose(a[:, frame != 1], b[:, frame != 1], atol=1e-6)
    assert not torch.allclose(a[:, frame == 1], b[:, frame == 1], atol=1e-3)


def test_spatial_encoder_with_every_token_equals_per_frame_encoding() -> None:
    enc = make_encoder("spatial", 1).eval()
    everything = torch.arange(T * K).expand(B, -1)
    assert torch.allclose(enc(clips(), everything), enc(clips()), atol=1e-5)


def test_temporal_encoder_mixes_frames() -> None:
    enc = make_encoder("temporal", 1).eval()
    x = clips()
    y = x.clone()
    y[:, 1] = torch.randn_like(y[:, 1])
    assert not torch.allclose(enc(x)[:, :K], enc(y)[:, :K], atol=1e-3)  # frame 0 tokens see frame 1


def test_temporal_encoder_rejects_a_longer_clip() -> None:
    enc = make_encoder("temporal", 2)
    with pytest.raises(ValueError, match="time steps"):
        enc(torch.randn(1, 2 * T, C, S, S))


def test_predictor_shapes() -> None:
    torch.manual_seed(0)
    pred = MaskedPredictor(embed_dim=D, dim=16, depth=1, num_heads=2, time_steps=2, grid=S // P)
    ctx_idx, tgt_idx = make_masks(MaskSpec("block", 2, S // P), B, torch.Generator().manual_seed(0))
    out = pred(torch.randn(B, ctx_idx.shape[1], D), ctx_idx, tgt_idx)
    assert out.shape == (B, tgt_idx.shape[1], D) and out.dtype == torch.float32


# --- the JEPA --------------------------------------------------------------------------------------
def test_jepa_forward_loss_terms_and_monitor(tiny_cfg: JEPAConfig) -> None:
    model, masks = model_and_masks(tiny_cfg)
    out = model(tiny_clips(tiny_cfg), masks, monitor=True)
    assert out.loss.shape == () and out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    assert set(out.terms) == {"prediction"}
    assert set(out.monitor) == {"embed_std_mean", "embed_std_min", "effective_rank"}
    assert model(tiny_clips(tiny_cfg), masks).monitor == {}


@pytest.mark.parametrize("masking", ["block", "random", "temporal"])
@pytest.mark.parametrize("encoder", ["temporal", "spatial"])
def test_jepa_trains_with_every_encoder_and_masking(tiny_cfg: JEPAConfig, masking: str, encoder: str) -> None:
    cfg = dataclasses.replace(
        tiny_cfg, masking=masking, encoder=encoder, tubelet_size=1 if encoder == "spatial" else 2
    )
    model, masks = model_and_masks(cfg)
    out = model(tiny_clips(cfg), masks)
    out.loss.backward()
    assert torch.isfinite(out.loss)


def test_gradients_reach_encoder_and_predictor_not_the_target(tiny_cfg: JEPAConfig) -> None:
    model, masks = model_and_masks(tiny_cfg)
    assert all(not p.requires_grad for p in model.target_encoder.parameters())
    model(tiny_clips(tiny_cfg), masks).loss.backward()
    assert all(p.grad is None for p in model.target_encoder.parameters())
    for part in (model.encoder, model.predictor):
        grads = [p.grad for p in part.parameters()]
        assert all(g is not None for g in grads), "every trainable parameter gets a gradient"
        assert sum(float(g.abs().sum()) for g in grads) > 0  # type: ignore[union-attr]
    assert model.predictor.mask_token.grad is not None and model.predictor.mask_token.grad.abs().sum() > 0


def test_update_target_is_an_exact_ema(tiny_cfg: JEPAConfig) -> None:
    model, _ = model_and_masks(tiny_cfg)
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.add_(torch.randn_like(p))  # make the encoder differ from its copy
    before = [p.clone() for p in model.target_encoder.parameters()]
    online = [p.clone() for p in model.encoder.parameters()]
    model.update_target(0.9)
    for t0, e, t1 in zip(before, online, model.target_encoder.parameters()):
        assert torch.allclose(t1, 0.9 * t0 + 0.1 * e, atol=1e-6)
    assert all(torch.equal(a, b) for a, b in zip(online, model.encoder.parameters()))  # encoder untouched
    moved = [p.clone() for p in model.target_encoder.parameters()]
    model.update_target(1.0)  # momentum 1: the target stays
    assert all(torch.equal(a, b) for a, b in zip(moved, model.target_encoder.parameters()))
    model.update_target(0.0)  # momentum 0: the target becomes the encoder
    assert all(
        torch.equal(a, b) for a, b in zip(model.target_encoder.parameters(), model.encoder.parameters())
    )


def test_target_encoder_starts_as_a_copy(tiny_cfg: JEPAConfig) -> None:
    model, _ = model_and_masks(tiny_cfg)
    for a, b in zip(model.encoder.parameters(), model.target_encoder.parameters()):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()


def test_ema_momentum_ramps_from_start_to_end() -> None:
    cfg = JEPAConfig.preset("tiny", ema_start=0.99, ema_end=1.0)
    values = [ema_momentum(cfg, s, 100) for s in range(0, 101, 10)]
    assert values[0] == pytest.approx(0.99) and values[-1] == pytest.approx(1.0)
    assert values[5] == pytest.approx(0.995)
    assert all(a < b for a, b in zip(values, values[1:]))
    assert ema_momentum(cfg, 250, 100) == pytest.approx(1.0)  # never past the end


def test_cross_view_term_only_when_weighted(tiny_cfg: JEPAConfig) -> None:
    model, masks = model_and_masks(tiny_cfg)
    assert model.num_views == 1 and "cross_view" not in model(tiny_clips(tiny_cfg), masks).terms
    cfg = dataclasses.replace(tiny_cfg, cross_view_weight=0.5)
    model, masks = model_and_masks(cfg)
    assert model.num_views == 2 and len(masks) == 2
    out = model(tiny_clips(cfg), masks)
    assert "cross_view" in out.terms and float(out.terms["cross_view"].detach()) > 0
    expected = out.terms["prediction"] + 0.5 * out.terms["cross_view"]
    assert torch.allclose(out.loss, expected)


def test_variance_and_covariance_terms_are_weighted_in(tiny_cfg: JEPAConfig) -> None:
    cfg = dataclasses.replace(tiny_cfg, var_weight=2.0, cov_weight=0.5)
    model, masks = model_and_masks(cfg)
    out = model(tiny_clips(cfg), masks)
    assert set(out.terms) == {"prediction", "variance", "covariance"}
    expected = out.terms["prediction"] + 2.0 * out.terms["variance"] + 0.5 * out.terms["covariance"]
    assert torch.allclose(out.loss, expected)


def test_build_encoder_follows_the_config(tiny_cfg: JEPAConfig) -> None:
    enc = build_encoder(tiny_cfg)
    assert enc.dim == tiny_cfg.embed_dim and len(enc.blocks) == tiny_cfg.num_layers
    assert enc.pos_embed.shape == (tiny_cfg.num_tokens, tiny_cfg.embed_dim)


# --- losses ------------------------------------------------------------------------------------------
def test_prediction_loss_kinds() -> None:
    a, b = torch.zeros(2, 3, 4), torch.full((2, 3, 4), 2.0)
    assert float(prediction_loss(a, b, "mse")) == pytest.approx(4.0)
    assert float(prediction_loss(a, b, "l1")) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="unknown loss 'huber'"):
        prediction_loss(a, b, "huber")  # type: ignore[arg-type]


def test_variance_loss_zero_for_spread_data_positive_for_collapsed() -> None:
    g = torch.Generator().manual_seed(0)
    assert float(variance_loss(2.0 * torch.randn(2000, 8, generator=g))) == 0.0
    collapsed = torch.ones(100, 8) + 1e-3 * torch.randn(100, 8, generator=g)
    assert float(variance_loss(collapsed)) > 0.9


def test_covariance_loss_zero_for_decorrelated_data_positive_for_correlated() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 6, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(x - x.mean(dim=0))  # centred, orthogonal columns: zero covariance
    assert float(covariance_loss(q * 10)) == pytest.approx(0.0, abs=1e-8)
    z = torch.randn(256, 1, generator=g)
    assert float(covariance_loss(torch.cat([z, z, -z], dim=1))) > 0.5


def test_collapse_stats_effective_rank() -> None:
    g = torch.Generator().manual_seed(0)
    iso = collapse_stats(torch.randn(4096, 16, generator=g))
    assert 15.0 < iso["effective_rank"] <= 16.0
    assert iso["embed_std_mean"] == pytest.approx(1.0, abs=0.05)
    rank1 = torch.randn(4096, 1, generator=g) * torch.randn(1, 16, generator=g)
    assert collapse_stats(rank1)["effective_rank"] < 1.1
    tokens = torch.randn(2, 50, 16, generator=g)  # [B, N, D] is flattened to samples
    assert 14.0 < collapse_stats(tokens)["effective_rank"] <= 16.0


# --- frames in -----------------------------------------------------------------------------------------
def test_prepare_frames_resizes_and_normalises() -> None:
    frames = torch.randint(0, 256, (2, 3, 40, 48, 3), dtype=torch.uint8)
    x = prepare_frames(frames, 32)
    assert x.shape == (2, 3, 3, 32, 32) and x.dtype == torch.float32
    flat = torch.full((1, 1, 32, 32, 3), 128, dtype=torch.uint8)
    assert torch.allclose(
        prepare_frames(flat, 32), torch.full((1, 1, 3, 32, 32), (128 / 255 - 0.5) / 0.25), atol=1e-6
    )


def test_prepare_frames_rejects_floats_and_wrong_rank() -> None:
    with pytest.raises(TypeError, match="uint8"):
        prepare_frames(torch.rand(1, 2, 32, 32, 3), 32)
    with pytest.raises(ValueError, match=r"\[B, T, H, W, C\].*\(2, 32, 32, 3\)"):
        prepare_frames(torch.zeros(2, 32, 32, 3, dtype=torch.uint8), 32)
