"""Oxford-IIIT Pets over loopback: plain tars named .tar.gz, list/trainval/test files, bad
images (PNG/GIF/CMYK named .jpg, truncated), breed/species labels, trimaps aligned."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import ROOT, invoke_cli
from loopback import LoopbackServer
from PIL import Image

from dlprep.errors import FormatError
from dlprep.prepare.pets import BREEDS, read_split_file

# name -> (class id, species); real photos stand in for pets, bad files mimic TFDS's list
TRAINVAL = [("Abyssinian_1", 1, 1), ("american_bulldog_10", 2, 2), ("Abyssinian_5", 1, 1),
            ("beagle_116", 5, 2), ("Egyptian_Mau_14", 12, 1), ("boxer_3", 9, 2)]
TEST = [("Abyssinian_2", 1, 1), ("boxer_7", 9, 2), ("chihuahua_121", 11, 2),
        ("Bengal_3", 6, 1)]
PHOTOS = ["china.jpg", "flower.jpg", "rocket.jpg", "retina.jpg", "hubble_deep_field.jpg",
          "road-to-versailles-at-louveciennes.jpg"]


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:  # plain tar, as upstream ships it
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _split_text(rows: list[tuple[str, int, int]]) -> str:
    return "".join(f"{n} {c} {s} {c}\n" for n, c, s in rows)


def pets_archives(realdata: Path) -> tuple[bytes, bytes, dict[str, np.ndarray]]:
    """images.tar.gz and annotations.tar.gz bytes, and the synthetic pet's colour box."""
    photos = iter(PHOTOS)
    images: dict[str, bytes] = {}
    trimaps: dict[str, bytes] = {}
    boxes = {}
    for name, _, _ in TRAINVAL + TEST:
        if name == "Abyssinian_5":  # PNG with alpha, named .jpg
            img = Image.new("RGBA", (120, 80), (0, 0, 255, 255))
            img.paste((255, 0, 0, 255), (40, 20, 80, 60))
            data = _encode(img, "PNG")
            boxes[name] = np.array([40, 20, 80, 60])
        elif name == "beagle_116":  # GIF bytes named .jpg
            data = _encode(Image.open(realdata / "images" / "rocket.jpg").convert("P"), "GIF")
        elif name == "Egyptian_Mau_14":  # CMYK JPEG
            data = _encode(Image.open(realdata / "images" / "china.jpg").convert("CMYK"), "JPEG")
        elif name == "chihuahua_121":  # truncated: skipped and reported
            data = (realdata / "images" / "flower.jpg").read_bytes()[:5000]
        else:
            data = (realdata / "images" / next(photos, "china.jpg")).read_bytes()
        images[f"images/{name}.jpg"] = data
        size = Image.open(io.BytesIO(data)).size if name != "chihuahua_121" else (640, 427)
        tri = np.full((size[1], size[0]), 2, np.uint8)
        tri[size[1] // 4: size[1] // 2, size[0] // 4: size[0] // 2] = 1
        tri[size[1] // 4 - 1, size[0] // 4: size[0] // 2] = 3
        if name == "Abyssinian_5":
            tri[:] = 2
            tri[20:60, 40:80] = 1
        trimaps[f"annotations/trimaps/{name}.png"] = _encode(Image.fromarray(tri, "L"), "PNG")
        trimaps[f"annotations/trimaps/._{name}.png"] = b"\x00\x05\x16\x07AppleDouble"
    images["images/Abyssinian_1.mat"] = b"MATLAB 5.0 junk"
    list_txt = ("#Image CLASS-ID SPECIES BREED ID\n#ID: 1:37 Class ids\n#SPECIES: 1:Cat 2:Dog\n"
                "#BREED ID: 1-25:Cat 1:12:Dog\n" + _split_text(TRAINVAL + TEST))
    annotations = {"annotations/list.txt": list_txt.encode(),
                   "annotations/trainval.txt": _split_text(TRAINVAL).encode(),
                   "annotations/test.txt": _split_text(TEST).encode(),
                   "annotations/xmls/Abyssinian_1.xml": b"<annotation/>", **trimaps}
    return _tar(images), _tar(annotations), boxes


def test_read_split_file() -> None:
    rows = read_split_file("#comment\nAbyssinian_100 1 1 1\n\nyorkshire_terrier_9 37 2 25\n", "t")
    assert rows == [("Abyssinian_100", 1, 1), ("yorkshire_terrier_9", 37, 2)]
    with pytest.raises(FormatError, match="line 1"):
        read_split_file("Abyssinian_100 x 1 1\n", "t")
    assert len(BREEDS) == 37 and BREEDS[0] == "Abyssinian" and BREEDS[36] == "yorkshire_terrier"


@pytest.fixture
def pets_server(realdata: Path, tmp_path: Path):
    images, annotations, boxes = pets_archives(realdata)
    text = (ROOT / "recipes" / "oxford-pets.toml").read_text()
    for name, data in (("images.tar.gz", images), ("annotations.tar.gz", annotations)):
        block = text.split(f'name = "{name}"', 1)[1].split("[[files]]", 1)[0]
        new = block
        for line in block.splitlines():
            if line.startswith("sha256"):
                new = new.replace(line, f'sha256 = "{hashlib.sha256(data).hexdigest()}"')
            if line.startswith("size"):
                new = new.replace(line, f"size = {len(data)}")
        text = text.replace(block, new)
    recipe = tmp_path / "oxford-pets.toml"
    recipe.write_text(text)
    with LoopbackServer() as srv:
        srv.serve("images.tar.gz", images)
        srv.serve("annotations.tar.gz", annotations)
        yield srv, recipe, boxes


def _fetch(tmp_path: Path, srv: LoopbackServer, recipe: Path, *extra: str) -> tuple[str, Path]:
    proc = invoke_cli("fetch", "oxford-pets", "--recipe", str(recipe), "--mirror", srv.base_url,
                   *extra, cache_dir=tmp_path / "c")
    assert proc.returncode == 0, proc.stderr
    return proc.stderr, Path(proc.stdout.strip().splitlines()[-1])


def test_pets_breeds_official_split_and_bad_images(tmp_path: Path, pets_server) -> None:
    srv, recipe, _ = pets_server
    stderr, path = _fetch(tmp_path, srv, recipe, "--size", "48")
    assert "chihuahua_121.jpg" in stderr  # the skip is reported
    with h5py.File(path, "r") as f:
        assert f["images"].shape == (9, 48, 48, 3)
        classes = [c.decode() for c in f["classes"][()]]
        assert len(classes) == 37 and classes[0] == "Abyssinian" and classes[8] == "boxer"
        ids = [i.decode() for i in f["meta/ids"][()]]
        assert ids == [n for n, _, _ in TRAINVAL + TEST if n != "chihuahua_121"]
        np.testing.assert_array_equal(f["labels"][()], [0, 1, 0, 4, 11, 8, 0, 8, 5])
        np.testing.assert_array_equal(f["meta/species_labels"][()], [0, 1, 0, 1, 0, 1, 0, 1, 0])
        np.testing.assert_array_equal(f["splits/train"][()], np.arange(6))
        np.testing.assert_array_equal(f["splits/test"][()], [6, 7, 8])
        skipped = json.loads(f.attrs["skipped"])
        assert [s["name"] for s in skipped] == ["images/chihuahua_121.jpg"]
        # the alpha PNG named .jpg decoded: red box on blue, not garbage
        abys5 = f["images"][2].astype(int)
        assert abys5[24, 24, 0] > 200 and abys5[24, 24, 2] < 50
        assert "trimaps" not in f
    assert srv.requests("/images.tar.gz") == 1


def test_pets_species_with_trimaps_aligned(tmp_path: Path, pets_server) -> None:
    srv, recipe, boxes = pets_server
    _, path = _fetch(tmp_path, srv, recipe, "--label", "species", "--trimaps", "--size", "32",
                     "--resize", "pad", "--workers", "2")
    with h5py.File(path, "r") as f:
        assert [c.decode() for c in f["classes"][()]] == ["Cat", "Dog"]
        np.testing.assert_array_equal(f["labels"][()], [0, 1, 0, 1, 0, 1, 0, 1, 0])
        assert f["meta/breed_labels"][()][5] == 8
        tri = f["trimaps"][()]
        assert tri.shape == (9, 32, 32, 1) and tri.dtype == np.uint8
        assert set(np.unique(tri)) <= {0, 1, 2, 3} and {1, 2} <= set(np.unique(tri))
        # Abyssinian_5: where the trimap says pet (1), the image is the red box
        img, mask = f["images"][2], tri[2, :, :, 0]
        assert (mask == 1).sum() > 20
        red, blue = img[mask == 1], img[mask == 2]  # edges blend (bilinear vs nearest)
        assert (red[:, 0] > 200).mean() > 0.7 and (red[:, 2] < 80).mean() > 0.7
        assert (blue[:, 2] > 200).mean() > 0.8 and (blue[:, 0] < 80).mean() > 0.8
        assert (mask[:5] == 0).all()  # 120x80 padded to square: padding rows are 0
