"""Image decoding on shards: index ranges of a job list, run by :mod:`dlprep.scale`.

Every image builder decodes through here (``decode_to_writer`` in :mod:`.images`, and the
``image-folder`` builder's ``plan_shards``/``run_shard``/``assemble``): the jobs are cut into
consecutive index ranges (:func:`decode_plan`, at most :data:`MAX_PER_SHARD` images, about 32
shards for a small set so that two workers really share the work); each shard decodes its range
and writes the images (and masks) that decoded to its part file, returning per job the reason
it was skipped and, for dedupe, its content hash. Each part also holds every decoded image's
exact per-channel pixel sums and squared sums (:func:`~dlprep.pixelstats.image_sums`), so
the train split's mean/std are reduced from them, without reading the pixels back.
:func:`write_decoded` then walks the shards in order, drops skips and duplicates exactly as one
process would, and copies the kept pixels into the prepared file, so the bytes never depend on
the number of workers or the cluster.
"""

from __future__ import annotations

import base64
import dataclasses
import errno
import io
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DlprepError
from ..formats.images import DecodeJob, ImageRef, ImageSpec, decode_job
from ..pixelstats import image_sums
from ..scale.shards import ShardSpec, ranges
from ..store import ImageTensorWriter

log = logging.getLogger("dlprep")

MAX_PER_SHARD = 256
TARGET_SHARDS = 32
PART_FORMAT = 3  # images, per-image sums, [masks] (in the specs: older parts start over)


def shard_size(n: int) -> int:
    """Images per shard for ``n`` jobs: about :data:`TARGET_SHARDS` shards, 1 to
    :data:`MAX_PER_SHARD` images each (a pure function of ``n``: never of the workers)."""
    return max(1, min(MAX_PER_SHARD, -(-n // TARGET_SHARDS)))


def _ref_value(ref: ImageRef | None) -> list[Any] | None:
    if ref is None:
        return None
    data = None if ref.data is None else base64.b64encode(ref.data).decode("ascii")
    return [ref.name, ref.path, ref.offset, ref.size, ref.member, data, ref.missing,
            ref.packed_tar]


def _ref_of(value: list[Any] | None) -> ImageRef | None:
    if value is None:
        return None
    name, path, offset, size, member, data, missing, packed = value
    return ImageRef(name, path, offset, size, member,
                    None if data is None else base64.b64decode(data), missing, packed)


def _spec_value(spec: ImageSpec | None) -> dict[str, Any] | None:
    if spec is None:
        return None
    return {k: int(v) if k == "resample" else v for k, v in dataclasses.asdict(spec).items()}


def decode_plan(jobs: Sequence[DecodeJob], spec: ImageSpec, *,
                mask_spec: ImageSpec | None = None, hash_mode: str = "none") -> list[ShardSpec]:
    """The decode shards of ``jobs`` (ids ``img-000000`` ...), in job order."""
    if hash_mode not in ("none", "exact", "perceptual"):
        raise DlprepError(f"dedupe mode {hash_mode!r}: use none, exact or perceptual")
    common = {"spec": _spec_value(spec), "mask_spec": _spec_value(mask_spec), "hash": hash_mode,
              "part_format": PART_FORMAT}
    return [ShardSpec.make(f"img-{k:06d}", start=a, end=b, options={
        **common, "jobs": [[_ref_value(j.image), _ref_value(j.mask)] for j in jobs[a:b]]})
        for k, (a, b) in enumerate(ranges(len(jobs), shard_size(len(jobs))))]


def run_decode(spec: ShardSpec, part: Path | None) -> dict[str, Any]:
    """A shard function: decode the spec's jobs; the part holds the images that decoded
    (``.npy`` data, then the masks when asked); returns ``errors`` (one per job, "" when it
    decoded) and, when deduplicating, ``hashes``."""
    assert part is not None
    image_spec = ImageSpec(**spec.option("spec"))
    mask_opt = spec.option("mask_spec")
    mask_spec = ImageSpec(**mask_opt) if mask_opt else None
    hash_mode = spec.option("hash")
    images: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    errors: list[str] = []
    hashes: list[str] = []
    for image, mask in spec.option("jobs"):
        res = decode_job(DecodeJob(_ref_of(image), _ref_of(mask)),  # type: ignore[arg-type]
                          image_spec, mask_spec, hash_mode)
        errors.append(res.error if res.image is None else "")
        hashes.append(res.content_hash)
        if res.image is not None:
            images.append(res.image)
            if mask_spec is not None:
                masks.append(res.mask)  # type: ignore[arg-type]
    buf = io.BytesIO()  # numpy's own file writes lose errno: ENOSPC must stay ENOSPC
    stacked = _stack(images, image_spec)
    np.save(buf, stacked, allow_pickle=False)
    np.save(buf, image_sums(stacked), allow_pickle=False)
    if mask_spec is not None:
        np.save(buf, _stack(masks, mask_spec), allow_pickle=False)
    try:
        with open(part, "wb") as fh:
            fh.write(buf.getbuffer())
    except OSError as exc:  # a full disk is not retried: one clear line
        raise disk_error(exc, part) from None
    out: dict[str, Any] = {"errors": errors}
    if hash_mode != "none":
        out["hashes"] = hashes
    return out


def disk_error(exc: OSError, path: Path) -> DlprepError | OSError:
    """A full disk or quota as one clear line naming the folder; other errors unchanged."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DlprepError(f"{path.parent}: no space left on the device while writing decoded "
                           f"images ({exc.strerror}); free some space or use another "
                           f"--cache-dir")
    return exc


def _stack(arrays: list[np.ndarray], spec: ImageSpec) -> np.ndarray:
    shape = (spec.height, spec.width, spec.channels)
    if not arrays:
        return np.zeros((0, *shape), np.uint8)
    return np.ascontiguousarray(np.stack(arrays), np.uint8)


def _read_part(path: Path, masks: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """A part's images, their per-image sums and (when ``masks``; else None) their masks."""
    with open(path, "rb") as fh:
        images = np.load(fh, allow_pickle=False)
        sums = np.load(fh, allow_pickle=False)
        return images, sums, np.load(fh, allow_pickle=False) if masks else None


@dataclasses.dataclass
class DecodedSet:
    """An ImageTensorWriter filled with the samples that decoded (``kept``: input indices)."""

    writer: ImageTensorWriter
    kept: np.ndarray
    skipped: list[dict[str, str]] = dataclasses.field(default_factory=list)
    duplicates: list[dict[str, str]] = dataclasses.field(default_factory=list)

    def report_attrs(self) -> dict[str, str]:
        """Root attributes recording what was left out (JSON lists, see docs/FORMAT.md)."""
        out = {"skipped": json.dumps(self.skipped)}
        if self.duplicates:
            out["duplicates"] = json.dumps(self.duplicates)
        return out


def write_decoded(out: Path, names: Sequence[str], labels: np.ndarray, spec: ImageSpec,
                  plan: Sequence[ShardSpec], stats: Sequence[dict[str, Any]],
                  parts: Sequence[Path], *, dedupe: str = "none",
                  mask_spec: ImageSpec | None = None, mask_name: str = "trimaps",
                  skipped: Sequence[dict[str, str]] = (),
                  log_each_skip: bool = True) -> DecodedSet:
    """Write the decoded shards (``plan``, their ``stats`` and ``parts``, in order) to ``out``:
    skips reported (after ``skipped``, entries the listing left out), duplicates dropped (the
    first kept), the rest copied in input order with ``labels``; masks to ``mask_name``.
    ``names``: every job's image name. Returns the open writer (call ``finish``)."""
    n = len(names)
    kept: list[int] = []
    skips: list[dict[str, str]] = list(skipped)
    duplicates: list[dict[str, str]] = []
    seen: dict[str, str] = {}
    take: list[np.ndarray] = []  # per shard: positions among its decoded images to keep
    for shard, st in zip(plan, stats, strict=True):
        pos, mine = 0, []
        hashes = st.get("hashes")
        for k, error in enumerate(st["errors"]):
            i = shard.start + k
            name = names[i]
            if error:
                skips.append({"name": name, "reason": error})
                if log_each_skip:
                    log.warning("skipped %s: %s", name, error)
                continue
            pos += 1
            if dedupe != "none":
                h = hashes[k]  # type: ignore[index]
                if h in seen:
                    duplicates.append({"name": name, "same_as": seen[h]})
                    continue
                seen[h] = name
            mine.append(pos - 1)
            kept.append(i)
        take.append(np.asarray(mine, np.int64))
    if skips:
        log.warning("skipped %d of %d images (listed in the 'skipped' attribute of the "
                    "prepared file)", len(skips), n + len(skipped))
    if not kept:
        raise DlprepError(f"no image could be decoded ({len(skips)} skipped"
                          + (f", e.g. {skips[0]['name']}: {skips[0]['reason']}"
                             if skips else "") + ")")
    keep = np.asarray(kept, np.int64)
    labels = np.asarray(labels, np.int64)
    writer = ImageTensorWriter(out, len(keep), spec.shape)
    try:
        done = 0
        sums = np.zeros((len(keep), 2, spec.channels), np.uint64)
        for part, rows in zip(parts, take, strict=True):
            if len(rows):
                images, part_sums, _ = _read_part(part, False)
                writer.write(images[rows], labels[keep[done:done + len(rows)]])
                sums[done:done + len(rows)] = part_sums[rows]
                done += len(rows)
        writer.set_row_sums(sums)
        if mask_spec is not None:
            dset = writer.f.create_dataset(mask_name, shape=(len(keep), *mask_spec.shape),
                                           dtype=np.uint8)
            done = 0
            for part, rows in zip(parts, take, strict=True):
                if len(rows):
                    _, _, masks = _read_part(part, True)
                    dset[done:done + len(rows)] = masks[rows]  # type: ignore[index]
                    done += len(rows)
            for k, label in enumerate(("batch", "height", "width", "channel")):
                dset.dims[k].label = label
    except BaseException:
        writer.close()
        raise
    return DecodedSet(writer, keep, skips, duplicates)
