"""Oxford-IIIT Pet: ``images.tar.gz`` + ``annotations.tar.gz`` (both plain tar) -> images with
breed (37) or species (2) labels, the official trainval/test split, optional trimaps.

Split files (``annotations/trainval.txt``, ``test.txt``): ``<image> <class-id> <species>
<breed-id>`` per line, ids 1-based, species 1 = Cat, 2 = Dog. Samples are trainval lines then
test lines, in file order; ``splits/train`` is trainval, ``splits/test`` is test. Images are
decoded by content (the 12 known-bad files are PNG/GIF bytes, alpha or CMYK JPEGs named .jpg)
and anything undecodable is skipped and listed in the ``skipped`` attribute.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import FormatError
from ..formats.images import DecodeJob, ImageRef, ImageSpec, tar_refs
from ..formats.tarstream import read_members
from .core import PrepareContext
from .images import IMAGE_PARAMS, RUNTIME_OPTIONS, decode_to_writer, image_spec, readable_samples
from .params import Param

__all__ = ["PARAMS", "RUNTIME_OPTIONS", "build", "read_split_file"]

PARAMS = (
    *IMAGE_PARAMS,
    Param("label", "str", "breed", "which label becomes `labels`", ("breed", "species")),
    Param("trimaps", "bool", False, "also store the trimaps as `trimaps` uint8 (N, H, W, 1)"),
)
SPLIT_FILES = (("train", "annotations/trainval.txt"), ("test", "annotations/test.txt"))
SPECIES = ["Cat", "Dog"]
# class id - 1 -> breed, as upstream numbers them (case-insensitive alphabetical; cats capitalised)
BREEDS = (
    "Abyssinian", "american_bulldog", "american_pit_bull_terrier", "basset_hound", "beagle",
    "Bengal", "Birman", "Bombay", "boxer", "British_Shorthair", "chihuahua", "Egyptian_Mau",
    "english_cocker_spaniel", "english_setter", "german_shorthaired", "great_pyrenees",
    "havanese", "japanese_chin", "keeshond", "leonberger", "Maine_Coon", "miniature_pinscher",
    "newfoundland", "Persian", "pomeranian", "pug", "Ragdoll", "Russian_Blue", "saint_bernard",
    "samoyed", "scottish_terrier", "shiba_inu", "Siamese", "Sphynx", "staffordshire_bull_terrier",
    "wheaten_terrier", "yorkshire_terrier",
)


def read_split_file(text: str, where: str) -> list[tuple[str, int, int]]:
    """Parse a Pets split file into ``(image name, class id 1..37, species 1..2)`` rows."""
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        try:
            name, class_id, species = parts[0], int(parts[1]), int(parts[2])
        except (IndexError, ValueError) as exc:
            raise FormatError(where, -1, f"line {lineno}: expected 'name class species breed', "
                                         f"got {line.strip()!r}") from exc
        if not 1 <= class_id <= 37 or species not in (1, 2) or "/" in name:
            raise FormatError(where, -1, f"line {lineno}: class {class_id} / species {species} "
                                         f"out of range")
        rows.append((name, class_id, species))
    return rows


def _read_text_members(archive: Path, wanted: list[str]) -> dict[str, str]:
    found = read_members(archive, wanted)
    missing = [w for w in wanted if w not in found]
    if missing:
        raise FormatError(archive, -1, f"archive lacks {', '.join(missing)}")
    try:
        return {name: data.decode("utf-8") for name, data in found.items()}
    except UnicodeDecodeError as exc:
        raise FormatError(archive, -1, f"split file is not UTF-8 text: {exc}") from None


def build(ctx: PrepareContext, out: Path) -> None:
    images_tar = ctx.files["images.tar.gz"]
    ann_tar = ctx.files["annotations.tar.gz"]
    texts = _read_text_members(ann_tar, [m for _, m in SPLIT_FILES])
    rows, split_of = [], []
    for split, member in SPLIT_FILES:
        part = read_split_file(texts[member], f"{ann_tar}:{member}")
        rows.extend(part)
        split_of.extend([split] * len(part))
    breed_classes = list(BREEDS)
    for name, class_id, _ in rows:  # the file names are the authority (09.3: rsplit('_', 1))
        breed_classes[class_id - 1] = name.rsplit("_", 1)[0]
    breed = np.array([r[1] - 1 for r in rows], np.int64)
    species = np.array([r[2] - 1 for r in rows], np.int64)

    image_refs = tar_refs(images_tar, "images/")
    trimaps = ctx.options["trimaps"]
    mask_refs = tar_refs(ann_tar, "annotations/trimaps/") if trimaps else {}
    jobs = []
    for name, _, _ in rows:
        ref = image_refs.get(f"images/{name}.jpg") or ImageRef(
            f"images/{name}.jpg", missing=f"not in {images_tar.name}")
        mask = mask_refs.get(f"annotations/trimaps/{name}.png") if trimaps else None
        if trimaps and mask is None:
            mask = ImageRef(f"annotations/trimaps/{name}.png",
                            missing=f"trimap not in {ann_tar.name}")
        jobs.append(DecodeJob(ref, mask))
    spec = image_spec(ctx.options)
    mask_spec = ImageSpec(spec.height, spec.width, 1, spec.policy, fill=0,
                          resample=Image.Resampling.NEAREST, keep_values=True) if trimaps else None
    use_species = ctx.options["label"] == "species"
    labels, other = (species, breed) if use_species else (breed, species)
    images = [j.image for j in jobs]
    masks = [j.mask for j in jobs if j.mask is not None]
    # a gzipped tar is unpacked once into a scratch plain tar (bounded), then read by spans
    with readable_samples(images + masks, out) as readable:
        jobs = [DecodeJob(img, readable[len(images) + k] if trimaps else None)
                for k, img in enumerate(readable[:len(images)])]
        result = decode_to_writer(out, jobs, labels, spec, workers=ctx.workers,
                                  dedupe=ctx.options["dedupe"], mask_spec=mask_spec,
                                  progress=ctx.progress)
    try:
        kept = result.kept
        kept_split = np.asarray(split_of)[kept]
        splits = {s: np.flatnonzero(kept_split == s).astype(np.int64) for s, _ in SPLIT_FILES}
        meta = {"ids": [rows[i][0] for i in kept],
                ("breed_labels" if use_species else "species_labels"): other[kept]}
        result.writer.finish(splits=splits, classes=SPECIES if use_species else breed_classes,
                             meta=meta, extra_attrs=result.report_attrs(), **ctx.finish_kwargs())
    finally:
        result.writer.close()
