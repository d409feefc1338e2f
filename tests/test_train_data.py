"""Training data: frame folders, lists, videos at N fps, mixtures, the resumable sampler, crops."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from surgenet.exceptions import InputError
from surgenet.train.augment import CropSpec, MultiCrop, random_resized_crop
from surgenet.train.data import (Mixture, MultiCropDataset, StepSampler, VideoFrames, collate_crops,
                                 extract_frames, frame_folder, frame_list, load_skipping, open_source)


def write_image(path: Path, value: int, size=(20, 16)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)
    return path


def write_video(path: Path, frames: int = 30, fps: int = 10) -> Path:
    """Frame i is a flat grey of level 8 * i, so a decoded frame tells its index."""
    av = pytest.importorskip("av")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 8 * i, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


class ListSource:
    def __init__(self, n: int, name: str = "s"):
        self.n, self.name = n, name

    def __len__(self):
        return self.n

    def load(self, i):
        return i


def test_frame_folder_and_lists(tmp_path):
    for i, rel in enumerate(["b/2.png", "a/1.jpg", "a/0.png"]):
        write_image(tmp_path / "frames" / rel, 10 * i)
    (tmp_path / "frames" / "notes.txt").write_text("not a frame")
    folder = frame_folder(tmp_path / "frames")
    assert [Path(folder.paths[i]).relative_to(tmp_path / "frames").as_posix() for i in range(len(folder))] == \
        ["a/0.png", "a/1.jpg", "b/2.png"]
    assert np.asarray(folder.load(2)).mean() == 0  # b/2.png was written first, level 0
    (tmp_path / "list.txt").write_text("# frames\nframes/b/2.png\n\nframes/a/0.png\n")
    (tmp_path / "list.csv").write_text("frame,phase\nframes/a/1.jpg,3\nframes/a/0.png,1\n")
    assert [np.asarray(frame_list(tmp_path / "list.txt").load(i)).mean() for i in range(2)] == [0, 20]
    csv_source = open_source(tmp_path / "list.csv")
    assert len(csv_source) == 2 and np.asarray(csv_source.load(0)).mean() == pytest.approx(10, abs=1)
    with pytest.raises(InputError):
        open_source(tmp_path / "missing")


def test_video_sampled_at_n_fps_and_extracted(tmp_path):
    video = write_video(tmp_path / "clip.mp4")  # 3 s at 10 fps
    source = open_source(video, fps=2)
    assert isinstance(source, VideoFrames) and len(source) == 6
    # Sample k at k / 2 s is frame 5k, of level 40k (within the codec's rounding).
    levels = [np.asarray(source.load(k)).mean() for k in (4, 0, 5, 2)]
    np.testing.assert_allclose(levels, [160, 0, 200, 80], atol=4)
    out = tmp_path / "frames"
    assert extract_frames(video, out, fps=2) == 6
    files = sorted(out.glob("*.jpg"))
    assert [f.name for f in files][:2] == ["clip_000000.jpg", "clip_000001.jpg"]
    np.testing.assert_allclose([np.asarray(Image.open(f)).mean() for f in files], [40 * k for k in range(6)], atol=4)


def test_extract_frames_command(tmp_path, capsys):
    from surgenet.train.cli import main

    write_video(tmp_path / "videos" / "case1" / "a.mp4", frames=20)
    assert main(["extract-frames", str(tmp_path / "videos"), str(tmp_path / "out"), "--fps", "1"]) == 0
    assert sorted(p.name for p in (tmp_path / "out" / "case1" / "a").iterdir()) == ["a_000000.jpg", "a_000001.jpg"]


def test_single_source_epoch_is_a_seeded_permutation():
    mix = Mixture([ListSource(10)], seed=3)
    e0, e1 = mix.epoch_order(0), mix.epoch_order(1)
    assert sorted(e0) == list(range(10)) and sorted(e1) == list(range(10))
    assert not np.array_equal(e0, e1)
    np.testing.assert_array_equal(e0, Mixture([ListSource(10)], seed=3).epoch_order(0))
    assert not np.array_equal(e0, Mixture([ListSource(10)], seed=4).epoch_order(0))


def test_weighted_mixture_shares_and_coverage():
    mix = Mixture([ListSource(100, "big"), ListSource(5, "small")], weights=[3, 1], samples_per_epoch=40)
    order = mix.epoch_order(0)
    assert len(order) == 40
    sources = Counter(mix.locate(int(f))[0] for f in order)
    assert sources == {0: 30, 1: 10}
    # The small source is drawn in whole permutations: in 10 draws each of its 5 frames twice.
    assert Counter(int(f) for f in order if f >= 100) == {100 + i: 2 for i in range(5)}
    # The big source does not repeat a frame before it has shown them all (30 + 30 + 30 < 100).
    seen = np.concatenate([[f for f in mix.epoch_order(e) if f < 100] for e in range(3)])
    assert len(set(seen.tolist())) == 90
    with pytest.raises(InputError):
        Mixture([ListSource(3)], weights=[-1])


def test_sampler_shards_ranks_and_resumes():
    mix = Mixture([ListSource(12)], seed=0)
    one = list(StepSampler(mix, global_batch=4, epochs=2))
    assert len(one) == 6 and all(len(b) == 4 for b in one)
    ranks = [list(StepSampler(mix, 4, 2, rank=r, world_size=2)) for r in range(2)]
    for step, batch in enumerate(one):
        assert ranks[0][step] + ranks[1][step] == batch
    resumed = list(StepSampler(mix, 4, 2, start_step=4))
    assert resumed == one[4:]
    assert [s.epoch for b in one for s in b] == [0] * 12 + [1] * 12
    assert sorted(s.frame_id for b in one[:3] for s in b) == list(range(12))
    with pytest.raises(InputError):
        StepSampler(mix, 4, 1, world_size=3)


def test_unreadable_frames_are_skipped_and_counted(tmp_path, caplog):
    write_image(tmp_path / "f" / "0.png", 0)
    (tmp_path / "f" / "1.png").write_bytes(b"\x89PNG broken")
    write_image(tmp_path / "f" / "2.png", 200)
    mix = Mixture([frame_folder(tmp_path / "f")])
    image, skipped = load_skipping(mix, 1)
    assert skipped == 1 and np.asarray(image).mean() == 200
    assert "1.png" in caplog.text
    crops = MultiCrop(16, 8, local_crops=1)
    dataset = MultiCropDataset(mix, crops)
    batch = collate_crops([dataset[s] for b in StepSampler(mix, 3, 1) for s in b])
    assert batch[1] == 1 and [tuple(c.shape) for c in batch[0]] == [(3, 3, 16, 16)] * 2 + [(3, 3, 8, 8)]


def test_multicrop_views_are_deterministic_per_seed():
    rng = np.random.default_rng(0)
    image = Image.fromarray((rng.random((40, 50, 3)) * 255).astype(np.uint8))
    crops = MultiCrop(24, 12, local_crops=3)
    a = crops(image, np.random.default_rng([1, 2, 3]))
    b = crops(image, np.random.default_rng([1, 2, 3]))
    c = crops(image, np.random.default_rng([1, 2, 4]))
    assert [tuple(x.shape) for x in a] == [(3, 24, 24)] * 2 + [(3, 12, 12)] * 3
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])


def test_full_scale_crop_is_the_resized_image_and_normalisation():
    image = Image.fromarray(np.arange(16 * 16 * 3, dtype=np.uint8).reshape(16, 16, 3))
    # Scale 1 leaves no room except an aspect ratio of exactly 1: the fallback takes the whole image.
    crop = random_resized_crop(image, 8, (1.0, 1.0), np.random.default_rng(0))
    np.testing.assert_array_equal(np.asarray(crop), np.asarray(image.resize((8, 8), Image.Resampling.BICUBIC)))
    grey = Image.new("RGB", (8, 8), (124, 116, 104))  # ImageNet mean * 255 (0.485, 0.456, 0.406)
    view = MultiCrop(8, 4, local_crops=0).view(grey, CropSpec(8, (1.0, 1.0), blur_p=0.0), _NoJitter())
    assert view.abs().max().item() < 0.02


class _NoJitter:
    """A generator that declines every random operation (flip, jitter, grey, blur, solarise)."""

    def uniform(self, low, high):
        return 1.0 if low <= 1.0 <= high else (low + high) / 2

    def integers(self, low, high):
        return low

    def random(self):
        return 0.99
