"""The latent-encoder adapter and the frame history shared by the wrappers, SB3, the MPC agent and the dream env."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchwm.agents.latent_model import PlanningModel
from torchwm.wm.config import JEPAConfig
from torchwm.wm.latent_encoder import FrameHistory, latent_encoder
from torchwm.wm.world_model import WorldModel, WorldModelSpec


def tiny_world_model(encoder: str) -> WorldModel:
    torch.manual_seed(0)
    cfg = JEPAConfig.preset("tiny", image_size=32, patch_size=8, embed_dim=32, num_layers=1, num_heads=2,
                            encoder=encoder, num_frames=4 if encoder == "temporal" else 1,
                            tubelet_size=2 if encoder == "temporal" else 1)  # fmt: skip
    return WorldModel(cfg, WorldModelSpec(action_dim=2)).eval()


@pytest.mark.parametrize("encoder", ["spatial", "temporal"])
def test_the_planning_model_and_the_adapter_give_the_last_step_of_encode(encoder: str) -> None:
    model = tiny_world_model(encoder)
    frames = np.random.default_rng(0).integers(0, 256, (3, model.window, 40, 48, 3), dtype=np.uint8)
    every_step = model.encode(frames)  # (B, T, K, D)
    assert every_step.shape[:2] == (3, model.window)
    last = latent_encoder(model).encode_numpy(frames)
    np.testing.assert_allclose(last, every_step[:, -1].numpy(), atol=1e-5)
    planned = PlanningModel(model).encode_last(torch.from_numpy(frames))
    np.testing.assert_allclose(planned.numpy(), last, atol=1e-6)


def test_a_copied_encoder_trains_without_touching_the_source() -> None:
    model = tiny_world_model("spatial")
    shared, copied = latent_encoder(model), latent_encoder(model, copy_weights=True)
    assert shared.head is model.target_head and copied.head is not model.target_head
    with torch.no_grad():
        for p in copied.parameters():
            p.add_(1.0)
    frames = np.zeros((1, 1, 32, 32, 3), np.uint8)
    assert not np.allclose(copied.encode_numpy(frames), shared.encode_numpy(frames))


def test_frame_history_restarts_new_episodes_and_new_batches() -> None:
    history = FrameHistory(0, window=3)
    frame = lambda v: np.full((2, 4, 4, 1), v, np.uint8)  # noqa: E731  (two environments, one value each)
    assert history.observe(frame(1)).all()  # a new batch: every history restarts at its first frame
    assert (history.clips()[:, :, 0, 0, 0] == 1).all()
    assert not history.observe(frame(2)).any()
    starts = history.observe(frame(3), episode_start=np.array([False, True]))
    assert starts.tolist() == [False, True]
    clips = history.clips()[:, :, 0, 0, 0]
    assert clips[0].tolist() == [1, 2, 3] and clips[1].tolist() == [3, 3, 3]  # oldest first; env 1 padded
    assert history.observe(np.zeros((3, 4, 4, 1), np.uint8)).all()  # three environments now: all restart
    with pytest.raises(ValueError, match="one flag per environment"):
        history.observe(np.zeros((3, 4, 4, 1), np.uint8), episode_start=np.array([True]))


def test_a_shorter_history_is_padded_and_a_longer_one_trimmed_to_the_window() -> None:
    model = tiny_world_model("temporal")  # window 4
    encoder = latent_encoder(model)
    frames = np.random.default_rng(1).integers(0, 256, (2, 6, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_array_equal(encoder.encode_numpy(frames), encoder.encode_numpy(frames[:, -4:]))
    one = frames[:, -1:]
    padded = np.repeat(one, 4, axis=1)  # a still clip, as an episode's first step is padded
    np.testing.assert_allclose(encoder.encode_numpy(one), encoder.encode_numpy(padded), atol=1e-6)
    z = PlanningModel(model).encode_last(torch.from_numpy(one))  # an MPC agent's default frame_history=1
    np.testing.assert_allclose(z.numpy(), encoder.encode_numpy(padded), atol=1e-6)
