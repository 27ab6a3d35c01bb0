"""The image pipeline on real photos and on generated images in every Pillow mode."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dlprep.formats.images import (
    POLICIES,
    DecodeJob,
    ImageDecodeError,
    ImageRef,
    ImageSpec,
    decode_image,
    decode_many,
    normalize_image,
    tar_refs,
    to_mode,
)

PHOTOS = ("china.jpg", "flower.jpg", "hubble_deep_field.jpg", "retina.jpg",
          "road-to-versailles-at-louveciennes.jpg", "rocket.jpg")


def png_bomb_header(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG signature + IHDR announcing a huge image, with one tiny IDAT (a 'bomb')."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("policy", POLICIES)
def test_real_photos_through_every_policy(realdata: Path, policy: str) -> None:
    for name in PHOTOS:
        data = (realdata / "images" / name).read_bytes()
        for spec in (ImageSpec(64, 64, 3, policy), ImageSpec(40, 56, 1, policy)):
            out = decode_image(data, spec, name)
            assert out.shape == spec.shape and out.dtype == np.uint8
            assert 10 < out.mean() < 245 and out.std() > 5  # real content, not a blank tile


def test_policies_differ_in_geometry(realdata: Path) -> None:
    data = (realdata / "images" / "flower.jpg").read_bytes()  # 640x427 landscape
    pad = decode_image(data, ImageSpec(64, 64, 3, "pad", fill=0), "flower")
    # 427/640*64 = 42.7 -> 43 rows of picture, 10-11 rows of padding above and below
    assert pad[:10].max() == 0 and pad[-10:].max() == 0 and pad[12:52].std() > 5
    crop = decode_image(data, ImageSpec(64, 64, 3, "shorter-side+center-crop"), "flower")
    assert crop[:4].std() > 0 and crop[-4:].std() > 0
    stretch = decode_image(data, ImageSpec(64, 64, 3, "stretch"), "flower")
    assert not np.array_equal(stretch, crop)


def test_exif_orientation_is_honoured_on_a_rotated_copy(realdata: Path) -> None:
    original = Image.open(realdata / "images" / "flower.jpg")
    original.load()
    # store the pixels rotated 90 degrees counter-clockwise and say so in EXIF (6 = rotate
    # 90 CW to display): a reader that honours EXIF must recover the landscape picture
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = encode(original.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=95,
                     exif=exif.tobytes())
    assert Image.open(io.BytesIO(rotated)).size == (427, 640)
    spec = ImageSpec(48, 72, 3, "stretch")
    want = decode_image(encode(original, "JPEG", quality=95), spec).astype(int)
    got = decode_image(rotated, spec).astype(int)
    ignored = np.asarray(Image.open(io.BytesIO(rotated)).convert("RGB").resize((72, 48)), int)
    assert np.abs(got - want).mean() < 6
    assert np.abs(ignored - want).mean() > 3 * np.abs(got - want).mean()
    pad = decode_image(rotated, ImageSpec(64, 64, 3, "pad"))
    assert pad[:10].max() == 0 and pad[-10:].max() == 0  # landscape again: bands top and bottom


@pytest.mark.parametrize("mode", ["1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX",
                                  "CMYK", "YCbCr", "LAB", "HSV", "I", "I;16", "I;16B", "F"])
def test_every_pillow_mode_becomes_rgb_or_l(mode: str) -> None:
    img = Image.new(mode, (30, 20))
    for channels in (3, 1):
        out = normalize_image(img.copy(), ImageSpec(16, 16, channels))
        assert out.shape == (16, 16, channels) and out.dtype == np.uint8


def test_mode_conversion_values() -> None:
    assert to_mode(Image.new("I;16", (4, 4), 65535), 1).getpixel((0, 0)) == 255
    assert to_mode(Image.new("I;16", (4, 4), 32896), 1).getpixel((0, 0)) == 128
    assert to_mode(Image.new("F", (4, 4), 0.5), 1).getpixel((0, 0)) == 128
    assert to_mode(Image.new("RGBA", (4, 4), (255, 0, 0, 0)), 3).getpixel((0, 0)) == (255, 255, 255)
    assert to_mode(Image.new("RGBA", (4, 4), (255, 0, 0, 255)), 3).getpixel((0, 0)) == (255, 0, 0)
    assert to_mode(Image.new("LA", (4, 4), (0, 0)), 1).getpixel((0, 0)) == 255
    assert to_mode(Image.new("CMYK", (4, 4), (0, 0, 0, 0)), 3).getpixel((0, 0)) == (255, 255, 255)
    pal = Image.new("P", (4, 4), 1)
    pal.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    assert to_mode(pal, 3).getpixel((0, 0)) == (0, 255, 0)


@pytest.mark.parametrize("mode,fmt", [("1", "PNG"), ("L", "PNG"), ("LA", "PNG"), ("P", "PNG"),
                                      ("RGBA", "PNG"), ("I;16", "PNG"), ("CMYK", "JPEG"),
                                      ("L", "JPEG"), ("CMYK", "TIFF"), ("F", "TIFF"),
                                      ("LAB", "TIFF"), ("RGB", "GIF"), ("RGB", "BMP"),
                                      ("RGBA", "WEBP")])
def test_encoded_files_in_many_modes_decode(mode: str, fmt: str) -> None:
    rng = np.random.default_rng(0)
    base = Image.fromarray(rng.integers(0, 256, (24, 36, 3), dtype=np.uint8))
    img = base.convert(mode) if mode not in ("I;16", "F", "LAB") else (
        Image.fromarray(np.asarray(base.convert("L"), np.uint16) * 257).convert(mode)
        if mode != "LAB" else base.convert("LAB"))
    data = encode(img, fmt)
    for channels in (3, 1):
        out = decode_image(data, ImageSpec(12, 12, channels), f"x.{fmt.lower()}")
        assert out.shape == (12, 12, channels)


def test_truncated_jpeg_and_bomb_header_raise(realdata: Path) -> None:
    data = (realdata / "images" / "china.jpg").read_bytes()
    with pytest.raises(ImageDecodeError, match="truncated"):
        decode_image(data[: len(data) // 3], ImageSpec(32, 32), "cut.jpg")
    with pytest.raises(ImageDecodeError, match="bomb") as info:
        decode_image(png_bomb_header(), ImageSpec(32, 32), "bomb.png")
    assert info.value.file == "bomb.png"
    # a modest image over a lowered limit is refused from its header, before decoding
    with pytest.raises(ImageDecodeError, match="bomb"):
        decode_image(data, ImageSpec(32, 32, max_pixels=100_000), "china.jpg")
    with pytest.raises(ImageDecodeError, match="not an image format Pillow reads") as info:
        decode_image(b"GIF89a garbage", ImageSpec(32, 32), "bad.gif")
    assert "object at 0x" not in str(info.value)  # no <_io.BytesIO object at 0x...> in reasons


def test_decode_many_orders_results_and_reports_skips(realdata: Path) -> None:
    good = [ImageRef(n, str(realdata / "images" / n)) for n in PHOTOS]
    jobs = [DecodeJob(r) for r in good[:3]] + [DecodeJob(ImageRef("bomb.png",
                                                                   data=png_bomb_header()))] + \
        [DecodeJob(r) for r in good[3:]]
    spec = ImageSpec(24, 24)
    serial = list(decode_many(jobs, spec))
    assert [r.error != "" for r in serial] == [False, False, False, True, False, False, False]
    assert all(r.image.shape == (24, 24, 3) for r in serial if r.image is not None)
    # the same jobs on a Dask cluster: tests/test_scale_builders.py


def test_perceptual_and_exact_hashes(realdata: Path) -> None:
    data = (realdata / "images" / "rocket.jpg").read_bytes()
    reencoded = encode(Image.open(io.BytesIO(data)), "JPEG", quality=80)
    jobs = [DecodeJob(ImageRef("a", data=data)), DecodeJob(ImageRef("b", data=reencoded))]
    exact = [r.content_hash for r in decode_many(jobs, ImageSpec(32, 32), hash_mode="exact")]
    perceptual = [r.content_hash for r in decode_many(jobs, ImageSpec(32, 32),
                                                      hash_mode="perceptual")]
    assert exact[0] != exact[1] and perceptual[0] == perceptual[1]


def test_plain_tar_members_are_byte_spans(tmp_path: Path, realdata: Path) -> None:
    import tarfile

    archive = tmp_path / "photos.tar.gz"  # plain tar despite the name, like Oxford Pets
    with tarfile.open(archive, "w") as tar:
        tar.add(realdata / "images" / "rocket.jpg", "images/rocket.jpg")
    refs = tar_refs(archive, "images/")
    assert refs["images/rocket.jpg"].offset > 0 and refs["images/rocket.jpg"].data is None
    assert refs["images/rocket.jpg"].read() == (realdata / "images" / "rocket.jpg").read_bytes()


def test_max_pixels_above_pillows_default_is_honoured() -> None:
    header = png_bomb_header(14_000, 14_000)  # 196 M px: over 2x Pillow's default limit
    with pytest.raises(ImageDecodeError, match="bomb"):
        decode_image(header, ImageSpec(8, 8, 1), "big.png")
    with pytest.raises(ImageDecodeError) as info:  # allowed now: fails later, on the pixels
        decode_image(header, ImageSpec(8, 8, 1, max_pixels=200_000_000), "big.png")
    assert "bomb" not in str(info.value)
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # Pillow's global is restored


def test_oversized_files_are_refused_unread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            realdata: Path) -> None:
    import zipfile

    from dlprep.formats import images

    monkeypatch.setattr(images, "MAX_FILE_BYTES", 50_000)  # the limit, lowered for the test
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("cls/zeros.png", b"\0" * 200_000)  # compresses to a few hundred bytes
    with pytest.raises(ImageDecodeError, match="over the 50,000-byte limit"):
        ImageRef("cls/zeros.png", str(archive), member="cls/zeros.png").read()
    with pytest.raises(ImageDecodeError, match="limit"):
        ImageRef("china.jpg", str(realdata / "images" / "china.jpg")).read()
