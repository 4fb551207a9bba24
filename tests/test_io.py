"""Video and manifest writers: real files by suffix, atomic replacement, clear errors."""

import json
import os

import imageio.v3 as iio
import numpy as np
import pytest

from ivmixed.io import atomic_path, check_output_path, manifest_path, write_manifest, write_video


def clip(frames=4, h=16, w=24, seed=0):
    return np.random.default_rng(seed).random((frames, h, w, 3), dtype=np.float32)


def test_npy_keeps_float_frames(tmp_path):
    frames = clip()
    out = write_video(frames, tmp_path / "a.npy")
    back = np.load(out)
    assert back.shape == (4, 16, 24, 3) and back.dtype == np.float32
    assert np.array_equal(back, frames)
    batch = np.stack([clip(seed=1), clip(seed=2)])
    assert np.load(write_video(batch, tmp_path / "b.npy")).shape == (2, 4, 16, 24, 3)


def test_gif_is_upscaled_and_animated(tmp_path):
    out = write_video(clip(), tmp_path / "a.gif", fps=5)
    frames = iio.imread(out, index=None)
    assert frames.shape[0] == 4
    assert min(frames.shape[1:3]) >= 128  # 16 px upscaled so a person can see it
    assert frames.shape[1] * 24 == frames.shape[2] * 16  # aspect ratio kept


def test_mp4_is_a_real_video(tmp_path):
    frames = np.zeros((6, 32, 32, 3), np.float32)
    frames[:, :, :16] = 1.0
    out = write_video(frames, tmp_path / "a.mp4", fps=8)
    back = _read_ffmpeg(out)
    assert back.shape[0] == 6
    assert back[0, :, : back.shape[2] // 4].mean() > 200 and back[0, :, -back.shape[2] // 4 :].mean() < 50


def _read_ffmpeg(path):
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    w, h = meta["size"]
    return np.stack([np.frombuffer(f, np.uint8).reshape(h, w, 3) for f in reader])


def test_several_clips_are_tiled_side_by_side(tmp_path):
    out = write_video(np.stack([clip(h=128, w=128), clip(h=128, w=128, seed=3)]), tmp_path / "two.gif")
    assert iio.imread(out, index=None).shape[1:3] == (128, 256)


@pytest.mark.parametrize("name,message", [("a.avi", "unknown file type '.avi'"), ("a", "unknown file type ''")])
def test_bad_suffix_is_refused(tmp_path, name, message):
    with pytest.raises(ValueError, match=message):
        check_output_path(tmp_path / name)


def test_directory_is_refused(tmp_path):
    (tmp_path / "d.gif").mkdir()
    with pytest.raises(ValueError, match="is a folder"):
        check_output_path(tmp_path / "d.gif")


def test_failed_write_leaves_nothing_behind(tmp_path):
    target = tmp_path / "keep.npy"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("disk full")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.npy"]
    with pytest.raises(ValueError, match="expected frames"):
        write_video(np.zeros((3, 3)), tmp_path / "bad.npy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.npy"]


def test_manifest_beside_the_video(tmp_path):
    video = tmp_path / "clip.mp4"
    out = write_manifest({"program": "IV-IV", "seed": 3}, video)
    assert out == manifest_path(video) == tmp_path / "clip.mp4.json"
    assert json.loads(out.read_text()) == {"program": "IV-IV", "seed": 3}
    umask = os.umask(0o022)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_new_video_never_stands_beside_an_old_manifest(tmp_path):
    from ivmixed.io import save_with_manifest

    video = tmp_path / "clip.npy"
    save_with_manifest(clip(), video, {"run": 1})
    assert json.loads(manifest_path(video).read_text()) == {"run": 1}
    with pytest.raises(ValueError, match="expected frames"):  # fails while encoding: the old pair stays
        save_with_manifest(np.zeros((2, 2)), video, {"run": 2})
    assert json.loads(manifest_path(video).read_text()) == {"run": 1}
    save_with_manifest(clip(seed=4), video, {"run": 3})
    assert json.loads(manifest_path(video).read_text()) == {"run": 3}
    assert np.array_equal(np.load(video), clip(seed=4))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.npy", "clip.npy.json"]
