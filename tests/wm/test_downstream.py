"""Downstream use of a pretrained encoder: probes on frozen features, fine-tuning, feature export.

Probe accuracy counts the held-out split only, probing leaves the encoder bitwise unchanged,
fine-tuning moves it, exported features equal `encode` in the order and with the labels of the
files, and the `.npz` opens with numpy alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchwm.wm.checkpoint import WEIGHTS_FILE, read_config
from torchwm.wm.config import JEPAConfig
from torchwm.wm.data import ImageFolder, VideoFolder
from torchwm.wm.downstream.augment import augment_clips, random_flip
from torchwm.wm.downstream.features import (
    FeatureSet,
    export_features,
    extract_features,
    labelled_dataset,
    load_encoder,
)
from torchwm.wm.downstream.finetune import FinetuneConfig, Finetuner, layer_decay_groups, load_classifier
from torchwm.wm.downstream.probes import ProbeConfig, fit_probe, run_probes, split_held_out
from torchwm.wm.jepa import JEPA
from torchwm.wm.trainer import JEPAAgent

from torchwm.cli import main as cli_main


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A JEPA checkpoint of a tiny temporal encoder (image_size 32, width 32, one layer)."""
    cfg = JEPAConfig.preset(
        "tiny",
        image_size=32,
        embed_dim=32,
        num_layers=1,
        num_heads=2,
        predictor_dim=32,
        predictor_depth=1,
        predictor_heads=2,
    )
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "step_00000001"
    return JEPA(cfg).save_pretrained(path)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """folder/<class>/*.png: 3 classes of 5 small images, each class a colour (so there is a signal)."""
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("images")
    for k, cls in enumerate(("blue", "green", "red")):
        (root / cls).mkdir()
        for i in range(5):
            img = rng.integers(0, 60, size=(40, 48, 3), dtype=np.uint8)
            img[..., 2 - k] += 150
            Image.fromarray(img).save(root / cls / f"{i}.png")
    return root


def toy_features(labels: np.ndarray, paths: np.ndarray, flip: np.ndarray) -> FeatureSet:
    """Two-class features that name their class, or the other class where ``flip``: pooled [N, 4], patch [N, 1, 2, 4]."""
    shown = np.where(flip, 1 - labels, labels)
    pooled = np.eye(4, dtype=np.float32)[shown] * 3 + np.random.default_rng(0).normal(
        0, 0.1, (len(labels), 4)
    )
    pooled = pooled.astype(np.float32)
    patch = np.stack([pooled, pooled], axis=1)[:, None]  # (N, 1, 2, 4)
    return FeatureSet(pooled, patch, paths, np.zeros(len(labels), np.int64), labels, np.array(["a", "b"]))


# --- split and probes -----------------------------------------------------------------------------
def test_split_is_seeded_stratified_and_keeps_files_together() -> None:
    labels = np.repeat([0, 1, 2], 20)
    paths = np.array([f"c{label}/v{i // 2}.mp4" for i, label in enumerate(labels)])  # two clips a file
    train, held = split_held_out(labels, paths, 0.2, seed=3)
    again, held_again = split_held_out(labels, paths, 0.2, seed=3)
    assert np.array_equal(train, again) and np.array_equal(held, held_again)
    assert not np.array_equal(held, split_held_out(labels, paths, 0.2, seed=4)[1])
    assert sorted(np.concatenate([train, held]).tolist()) == list(range(60))
    assert not set(paths[train]) & set(paths[held])
    assert np.bincount(labels[held]).tolist() == [4, 4, 4]  # 2 of each class's 10 files, 2 clips each


@pytest.mark.parametrize("kind", ["linear", "attentive"])
def test_probe_accuracy_is_measured_on_the_held_out_split_only(kind: str) -> None:
    labels = np.repeat([0, 1], 10)
    paths = np.array([f"{i}.png" for i in range(20)])
    cfg = ProbeConfig(epochs=60, batch_size=8, learning_rate=1e-2, warmup_steps=0, num_heads=2, device="cpu")
    _, held = split_held_out(labels, paths, cfg.held_out, cfg.seed)
    flip = np.isin(np.arange(20), held)  # the held-out rows look like the other class
    result = fit_probe(toy_features(labels, paths, flip), kind, cfg)  # type: ignore[arg-type]
    assert np.array_equal(result.held_out, held) and result.num_held_out == len(held) == 4
    assert result.train_accuracy == 1.0
    assert result.accuracy == 0.0  # 80% if the training rows were counted too


def test_probes_leave_the_frozen_encoder_bitwise_unchanged(pretrained: Path, images: Path) -> None:
    encoder, cfg = load_encoder(pretrained)
    encoder.train().requires_grad_(True)  # even a trainable encoder is only read
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    on_disk = (pretrained / WEIGHTS_FILE).read_bytes()
    features = extract_features(encoder, labelled_dataset(images, cfg), cfg.image_size, progress=False)
    results = run_probes(features, ProbeConfig(epochs=20, num_heads=2, device="cpu"))
    assert set(results) == {"linear", "attentive"}
    assert all(0.0 <= r.accuracy <= 1.0 and r.num_held_out == 3 for r in results.values())
    for name, tensor in encoder.state_dict().items():
        assert torch.equal(tensor, before[name]), name
    assert all(p.grad is None for p in encoder.parameters())
    assert (pretrained / WEIGHTS_FILE).read_bytes() == on_disk


def test_linear_probe_learns_a_visible_class(pretrained: Path, images: Path) -> None:
    encoder, cfg = load_encoder(pretrained)
    features = extract_features(
        encoder, labelled_dataset(images, cfg), cfg.image_size, "pooled", progress=False
    )
    result = fit_probe(
        features, "linear", ProbeConfig(epochs=50, batch_size=8, learning_rate=1e-2, device="cpu")
    )
    assert result.train_accuracy == 1.0 and result.accuracy == 1.0


# --- fine-tuning ----------------------------------------------------------------------------------
def test_finetuning_moves_the_encoder_and_writes_a_classifier_checkpoint(
    pretrained: Path, images: Path, tmp_path: Path
) -> None:
    cfg = FinetuneConfig(
        checkpoint=str(pretrained),
        data=str(images),
        max_steps=3,
        batch_size=4,
        warmup_steps=1,
        learning_rate=1e-3,
        output_dir=str(tmp_path / "ft"),
        progress=False,
        log_interval=1,
        device="cpu",
    )
    summary = Finetuner(cfg).run()
    assert summary.steps == 3 and 0.0 <= summary.accuracy <= 1.0 and summary.num_held_out == 3
    assert np.isfinite(summary.final_loss) and summary.classes == ["blue", "green", "red"]
    ckpt = Path(summary.checkpoint)
    assert read_config(ckpt)["kind"] == "classifier"
    start, _ = load_encoder(pretrained)
    tuned, _ = load_encoder(ckpt)  # the encoder of a classifier checkpoint
    moved = [k for k, v in tuned.state_dict().items() if not torch.equal(v, start.state_dict()[k])]
    assert "blocks.0.attn.qkv.weight" in moved and "patch_embed.proj.weight" in moved
    classifier = load_classifier(ckpt)
    frames = torch.stack([labelled_dataset(images, tuned_cfg(ckpt))[i]["frames"] for i in range(2)])
    assert classifier.predict(frames).shape == (2,)
    assert (Path(cfg.output_dir) / "log.csv").is_file()


def tuned_cfg(ckpt: Path) -> JEPAConfig:
    return JEPAConfig.from_dict(read_config(ckpt)["jepa"])


def test_layer_decay_gives_lower_layers_smaller_rates(pretrained: Path) -> None:
    from torchwm.wm.downstream.finetune import Classifier

    encoder, cfg = load_encoder(pretrained)
    model = Classifier(encoder.requires_grad_(True), ["a", "b"], cfg.image_size)
    scales = {
        name: group["lr_scale"]
        for group in layer_decay_groups(model, 0.05, 0.5)
        for name, p in model.named_parameters()
        if any(p is q for q in group["params"])
    }
    assert scales["encoder.patch_embed.proj.weight"] == 0.25
    assert scales["encoder.blocks.0.attn.qkv.weight"] == 0.5
    assert scales["head.fc.weight"] == 1.0


def test_augmentations_keep_shape_follow_the_seed_and_flip_mirrors() -> None:
    clips = torch.randn(3, 4, 3, 16, 16)
    a = augment_clips(clips, torch.Generator().manual_seed(1), 0.5, 0.5, 0.2)
    b = augment_clips(clips, torch.Generator().manual_seed(1), 0.5, 0.5, 0.2)
    assert a.shape == clips.shape and torch.equal(a, b)
    assert torch.equal(random_flip(clips, torch.Generator(), prob=1.0), clips.flip(-1))
    assert torch.allclose(augment_clips(clips, torch.Generator(), 1.0, 0.0, 0.0), clips)


# --- feature export -------------------------------------------------------------------------------
def test_exported_image_features_equal_encode_in_file_order(
    pretrained: Path, images: Path, tmp_path: Path
) -> None:
    out = tmp_path / "features.npz"
    features = export_features(pretrained, images, out, progress=False, device="cpu", batch_size=4)
    files = sorted(images.rglob("*.png"))
    assert features.paths.tolist() == [str(f.relative_to(images)) for f in files]
    assert features.labels.tolist() == [["blue", "green", "red"].index(f.parent.name) for f in files]
    agent = JEPAAgent.from_pretrained(pretrained)
    dataset = ImageFolder(images, agent.cfg.image_size, agent.cfg.num_frames)
    frames = torch.stack([dataset[i]["frames"] for i in range(len(dataset))])
    z = agent.encode(frames)  # (N, T', K, D)
    saved = np.load(out)
    assert saved["patch"].shape == tuple(z.shape)
    np.testing.assert_allclose(saved["patch"], z.numpy(), atol=1e-5)
    np.testing.assert_allclose(saved["pooled"], z.mean(dim=(1, 2)).numpy(), atol=1e-5)


def test_exported_video_features_cover_every_clip(
    pretrained: Path, video_folder: Path, tmp_path: Path
) -> None:
    folder = video_folder / "train"
    with pytest.warns(UserWarning, match="broken.mp4"):
        features = export_features(pretrained, folder, tmp_path / "v.npz", kind="pooled", progress=False)
    assert features.paths.tolist() == ["a/v0.mp4"] * 3 + ["a/v1.mp4"] * 3 + ["b/v2.mp4"] * 3
    assert features.starts.tolist() == [0, 4, 8] * 3 and features.labels.tolist() == [0] * 6 + [1] * 3
    agent = JEPAAgent.from_pretrained(pretrained)
    with pytest.warns(UserWarning, match="broken.mp4"):
        clips = VideoFolder(folder, agent.cfg.image_size, agent.cfg.num_frames)
    z = agent.encode(torch.stack([clips[i]["frames"] for i in range(len(clips))]))
    np.testing.assert_allclose(np.load(tmp_path / "v.npz")["pooled"], z.mean(dim=(1, 2)).numpy(), atol=1e-5)
    assert "patch" not in np.load(tmp_path / "v.npz").files


def test_npz_opens_with_numpy_alone_and_the_cli_writes_it(
    pretrained: Path, images: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cli.npz"
    argv = [
        "features",
        "--checkpoint",
        str(pretrained),
        "--data",
        str(images),
        "--out",
        str(out),
        "--no-progress",
    ]
    assert cli_main(argv) == 0
    script = (
        "import sys, numpy as np\n"
        f"f = np.load({str(out)!r})\n"
        "assert 'wm' not in sys.modules and 'torch' not in sys.modules\n"
        "print(f['pooled'].shape, f['patch'].shape, f['paths'].dtype.kind, f['labels'].tolist(), f['classes'].tolist())\n"
    )
    shown = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert (
        shown.strip()
        == "(15, 32) (15, 2, 16, 32) U " + str([0] * 5 + [1] * 5 + [2] * 5) + " ['blue', 'green', 'red']"
    )
    loaded = FeatureSet.load(out)
    assert len(loaded) == 15 and loaded.tokens().shape == (15, 32, 32)


def test_cli_probe_on_exported_features(pretrained: Path, images: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "f.npz"
    export_features(pretrained, images, out, progress=False)
    report = tmp_path / "probe.json"
    argv = ["probe", "--features", str(out), "--epochs", "5", "--num-heads", "2", "--out", str(report)]
    assert cli_main(argv) == 0
    assert set(json.loads(report.read_text())) == {"linear", "attentive"}
    assert cli_main(["probe", "--epochs", "5"]) == 2  # neither --features nor --checkpoint/--data
    assert "--features" in capsys.readouterr().err


def test_cli_finetune(pretrained: Path, images: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "ft"
    argv = ["finetune", "--checkpoint", str(pretrained), "--data", str(images), "--max-steps", "1"]
    argv += [
        "--batch-size",
        "4",
        "--output-dir",
        str(run),
        "--no-progress",
        "--device",
        "cpu",
        "--head",
        "attentive",
    ]
    assert cli_main(argv) == 0
    assert "held-out top-1 accuracy" in capsys.readouterr().out
    assert load_classifier(run).classes == ["blue", "green", "red"]
    assert cli_main(["finetune", "--data", str(images)]) == 2  # no checkpoint
