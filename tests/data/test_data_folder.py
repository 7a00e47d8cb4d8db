from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from robustad.data.folder import load_images, save_image
from robustad.errors import DataError, InputError


def _gray(path: Path, value: int, size=(6, 4)) -> Path:
    Image.new("L", size, value).save(path)  # PIL size is (W, H)
    return path


def _rgb(path: Path, rgb=(255, 0, 0), size=(6, 4), mode="RGB") -> Path:
    Image.new(mode, size, rgb if mode == "RGB" else (*rgb, 128)).save(path)
    return path


def test_directory_is_listed_sorted_case_insensitive_non_recursive(tmp_path):
    _gray(tmp_path / "b.PNG", 10)
    _gray(tmp_path / "a.png", 20)
    _gray(tmp_path / "c.bmp", 30)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub").mkdir()
    _gray(tmp_path / "sub" / "d.png", 40)
    x, paths = load_images(tmp_path)
    assert [p.name for p in paths] == ["a.png", "b.PNG", "c.bmp"]
    assert x.shape == (3, 1, 4, 6) and x.dtype == torch.float32
    assert torch.allclose(x[:, 0, 0, 0], torch.tensor([20, 10, 30]) / 255)


def test_empty_directory(tmp_path):
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(DataError) as err:
        load_images(tmp_path)
    assert str(tmp_path) in str(err.value) and ".png" in str(err.value) and ".webp" in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="does not exist") as err:
        load_images([tmp_path / "ghost.png"])
    assert "ghost.png" in str(err.value)


def test_empty_path_list():
    with pytest.raises(DataError, match="empty"):
        load_images([])


def test_garbage_file_named_in_error(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"this is not a png at all")
    with pytest.raises(DataError, match="cannot read image") as err:
        load_images(tmp_path)
    assert str(bad) in str(err.value)


def test_truncated_png_named_in_error(tmp_path):
    good = tmp_path / "full.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(good)
    cut = tmp_path / "cut.png"
    cut.write_bytes(good.read_bytes()[:400])
    with pytest.raises(DataError) as err:
        load_images([good, cut])
    assert str(cut) in str(err.value)


def test_modes_map_to_channels(tmp_path):
    _rgb(tmp_path / "rgba.png", (0, 255, 0), mode="RGBA")
    Image.new("P", (6, 4), 0).save(tmp_path / "pal.png")
    Image.new("LA", (6, 4), (128, 7)).save(tmp_path / "la.png")
    Image.new("1", (6, 4), 1).save(tmp_path / "bw.png")
    Image.fromarray(np.full((4, 6), 65535 // 5, dtype=np.uint16)).save(tmp_path / "deep.png")

    rgba, _ = load_images(tmp_path / "rgba.png")
    assert rgba.shape == (1, 3, 4, 6)
    assert torch.allclose(rgba[0, :, 0, 0], torch.tensor([0.0, 1.0, 0.0]))  # alpha dropped
    assert load_images(tmp_path / "pal.png")[0].shape == (1, 3, 4, 6)
    la, _ = load_images(tmp_path / "la.png")
    assert la.shape == (1, 1, 4, 6) and abs(float(la[0, 0, 0, 0]) - 128 / 255) < 1e-6
    bw, _ = load_images(tmp_path / "bw.png")
    assert bw.shape == (1, 1, 4, 6) and float(bw.min()) == 1.0
    deep, _ = load_images(tmp_path / "deep.png")
    assert deep.shape == (1, 1, 4, 6) and abs(float(deep[0, 0, 0, 0]) - 0.2) < 1e-4


def test_mixed_channels_error_names_examples(tmp_path):
    g = _gray(tmp_path / "g.png", 0)
    c = _rgb(tmp_path / "c.png")
    with pytest.raises(DataError, match="pass channels=1 or channels=3") as err:
        load_images(tmp_path)
    assert str(g) in str(err.value) and str(c) in str(err.value)


def test_explicit_channel_conversion(tmp_path):
    _gray(tmp_path / "g.png", 51)
    _rgb(tmp_path / "c.png", (255, 0, 0))
    one, _ = load_images(tmp_path, channels=1)
    assert one.shape == (2, 1, 4, 6)
    assert torch.allclose(one[:, 0, 0, 0], torch.tensor([0.299, 0.2]), atol=1e-6)  # c.png sorts first
    three, _ = load_images(tmp_path, channels=3)
    assert three.shape == (2, 3, 4, 6)
    assert torch.allclose(three[1, :, 0, 0], torch.full((3,), 0.2))


def test_mixed_sizes_error_lists_sizes(tmp_path):
    a = _gray(tmp_path / "a.png", 0, size=(6, 4))
    b = _gray(tmp_path / "b.png", 0, size=(8, 8))
    with pytest.raises(DataError) as err:
        load_images(tmp_path)
    msg = str(err.value)
    assert "4x6" in msg and "8x8" in msg and str(a) in msg and str(b) in msg
    assert "not resized unless" in msg and "size=" in msg


def test_size_resizes_every_image(tmp_path):
    _gray(tmp_path / "a.png", 255, size=(6, 4))
    _gray(tmp_path / "b.png", 0, size=(8, 8))
    _gray(tmp_path / "c.png", 100, size=(5, 5))
    x, _ = load_images(tmp_path, size=5)
    assert x.shape == (3, 1, 5, 5)
    assert torch.allclose(x[0], torch.ones(1, 5, 5)) and torch.all(x[1] == 0)
    assert torch.allclose(x[2], torch.full((1, 5, 5), 100 / 255))  # already 5x5: untouched


@pytest.mark.parametrize(("kwargs", "pattern"), [({"size": 0}, "size"), ({"channels": 2}, "channels")])
def test_bad_arguments(tmp_path, kwargs, pattern):
    _gray(tmp_path / "a.png", 0)
    with pytest.raises(InputError, match=pattern):
        load_images(tmp_path, **kwargs)


def test_not_a_directory_or_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_images(tmp_path / "nowhere")


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif"])
def test_save_image_round_trip(tmp_path, suffix):
    img = torch.rand(3, 7, 5)
    path = save_image(img, tmp_path / "out" / f"img{suffix}")
    back, paths = load_images([path])
    assert paths == [path] and back.shape == (1, 3, 7, 5)
    assert torch.allclose(back[0], img, atol=0.5 / 255 + 1e-6)


def test_save_image_gray_and_uint8(tmp_path):
    save_image(torch.full((1, 3, 3), 0.5), tmp_path / "g.png")
    save_image(np.full((3, 3), 200, np.uint8), tmp_path / "h.png")
    x, _ = load_images(tmp_path)
    assert x.shape == (2, 1, 3, 3)
    assert torch.allclose(x[:, 0, 0, 0], torch.tensor([128 / 255, 200 / 255]))


@pytest.mark.parametrize("img", [torch.zeros(2, 3, 3), torch.full((1, 2, 2), 1.5), torch.zeros(1, 1, 2, 2)])
def test_save_image_rejects_bad_input(tmp_path, img):
    with pytest.raises(InputError):
        save_image(img, tmp_path / "x.png")


def test_links_to_nothing_in_a_folder_are_named_not_skipped(tmp_path):
    _gray(tmp_path / "a.png", 10)
    (tmp_path / "gone.png").symlink_to(tmp_path / "deleted.png")
    with pytest.raises(DataError, match="gone.png' is a link to nothing"):
        load_images(tmp_path)
    (tmp_path / "gone.png").unlink()
    (tmp_path / "x.png").symlink_to(tmp_path / "y.png")
    (tmp_path / "y.png").symlink_to(tmp_path / "x.png")  # a loop
    with pytest.raises(DataError, match="x.png' is a link to nothing .* and so are 1 more"):
        load_images(tmp_path)
    (tmp_path / "x.png").unlink()
    (tmp_path / "y.png").unlink()
    (tmp_path / "b.png").symlink_to(tmp_path / "a.png")  # a working link is an image like any other
    assert load_images(tmp_path)[0].shape[0] == 2


def test_an_image_claiming_too_many_pixels_is_refused_before_decoding(tmp_path, monkeypatch):
    path = _gray(tmp_path / "wide.png", 0, size=(40, 30))
    monkeypatch.setenv("ROBUSTAD_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(DataError, match=r"is 40x30 pixels, more than the 1,000 robustad reads; downscale it"):
        load_images(path)
    monkeypatch.setenv("ROBUSTAD_MAX_IMAGE_PIXELS", "1200")
    assert load_images(path)[0].shape == (1, 1, 30, 40)
    monkeypatch.setenv("ROBUSTAD_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(DataError, match="not a positive number of pixels"):
        load_images(path)
