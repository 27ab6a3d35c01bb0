"""The image pipeline every image source uses: decode -> orient -> convert -> resize -> uint8.

Decoding is Pillow's, with draft mode for JPEG (the DCT scales down while decoding, so a 4000 px
photo bound for 64 px never exists at full size), EXIF orientation applied, every Pillow mode
mapped to RGB or L, and a pixel-count guard against decompression bombs checked on the header
before any pixel is decoded. A file that cannot be decoded raises :class:`ImageDecodeError`
(a ``FormatError``); :func:`decode_many` turns those into a skip list instead of aborting, and
runs across processes with results in input order, so output bytes never depend on the number
of workers.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ..errors import DlprepError, FormatError
from ..magic import sniff_compression

POLICIES = ("shorter-side+center-crop", "pad", "stretch")
DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own default MAX_IMAGE_PIXELS (a 0.25 GB RGB image)
MAX_FILE_BYTES = 512 << 20  # one encoded image file larger than this is refused unread
_ALPHA_BACKGROUND = (255, 255, 255)


class ImageDecodeError(FormatError):
    """One image could not be decoded (corrupt, truncated, bomb-sized, unknown format)."""


@dataclass(frozen=True)
class ImageSpec:
    """What every decoded image becomes: uint8 ``(height, width, channels)``.

    ``policy``: ``shorter-side+center-crop`` (scale the shorter side to fit, crop the centre),
    ``pad`` (scale the longer side to fit, pad with ``fill``) or ``stretch`` (ignore aspect).
    ``channels``: 3 (RGB) or 1 (L, ITU-R 601-2 luma). ``max_pixels``: width x height above which
    a file is refused as a decompression bomb. ``resample``: a ``PIL.Image.Resampling`` value;
    masks use ``NEAREST`` so label values survive.
    """

    height: int
    width: int
    channels: int = 3
    policy: str = "shorter-side+center-crop"
    fill: int = 0
    max_pixels: int = DEFAULT_MAX_PIXELS
    resample: int = Image.Resampling.BILINEAR
    keep_values: bool = False  # masks: keep raw L/P values, no colour conversion

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise DlprepError(f"resize policy {self.policy!r}: use one of {', '.join(POLICIES)}")
        if self.channels not in (1, 3):
            raise DlprepError(f"channels must be 1 or 3, got {self.channels}")
        if self.height < 1 or self.width < 1:
            raise DlprepError(f"image size must be positive, got {self.height}x{self.width}")

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, self.channels)


# ---------------------------------------------------------------------------------------------
# mode conversion


def _scale_to_8bit(img: Image.Image) -> Image.Image:
    """16-bit / 32-bit integer and float grayscale -> L by range, not by clipping."""
    arr = np.asarray(img)
    if img.mode == "F":
        arr = arr.astype(np.float64)
        top = 1.0 if np.nanmax(arr, initial=0.0) <= 1.0 else 255.0
        out = np.clip(np.nan_to_num(arr) / top * 255.0 + 0.5, 0, 255)
    else:
        arr = arr.astype(np.int64)
        top = 255 if arr.max(initial=0) <= 255 else 65535
        out = np.clip(arr, 0, top) * 255 // top
    return Image.fromarray(out.astype(np.uint8), "L")


def to_mode(img: Image.Image, channels: int) -> Image.Image:
    """Convert any Pillow mode to ``RGB`` (channels=3) or ``L`` (channels=1).

    Transparent images (LA, PA, RGBA, RGBa, P with transparency) are composited onto white;
    CMYK/YCbCr/LAB/HSV go through Pillow's converters; I;16*/I/F are scaled by their range.
    """
    target = "RGB" if channels == 3 else "L"
    mode = img.mode
    if mode == target:
        return img
    if mode.startswith("I;16") or mode in ("I", "F"):
        gray = _scale_to_8bit(img)
        return gray if target == "L" else gray.convert("RGB")
    if mode == "P" or mode == "PA":
        img = img.convert("RGBA" if mode == "PA" or "transparency" in img.info else "RGB")
    elif mode == "1":
        img = img.convert("L")
    elif mode == "RGBa":
        img = img.convert("RGBA")
    elif mode in ("LAB", "HSV", "CMYK", "YCbCr"):
        img = img.convert("RGB")
    elif mode == "La":
        img = img.convert("LA")
    if img.mode in ("RGBA", "LA"):
        background = Image.new(img.mode[:-1], img.size,
                               _ALPHA_BACKGROUND if img.mode == "RGBA" else _ALPHA_BACKGROUND[0])
        background.paste(img, mask=img.getchannel("A"))
        img = background
    return img if img.mode == target else img.convert(target)


# ---------------------------------------------------------------------------------------------
# geometry


def fit_image(img: Image.Image, spec: ImageSpec) -> Image.Image:
    """Resize ``img`` to ``spec``'s size following its policy (centre crop, pad or stretch)."""
    w, h = img.size
    tw, th = spec.width, spec.height
    if spec.policy == "stretch":
        return img.resize((tw, th), spec.resample)
    if spec.policy == "shorter-side+center-crop":
        scale = max(tw / w, th / h)
        cw, ch = tw / scale, th / scale  # the crop box in source pixels
        left, top = max(0.0, (w - cw) / 2), max(0.0, (h - ch) / 2)
        box = (left, top, min(float(w), left + cw), min(float(h), top + ch))
        return img.resize((tw, th), spec.resample, box=box)
    scale = min(tw / w, th / h)
    nw, nh = max(1, min(tw, round(w * scale))), max(1, min(th, round(h * scale)))
    inner = img.resize((nw, nh), spec.resample)
    fill: int | tuple[int, ...] = spec.fill if img.mode in ("L", "P") else (spec.fill,) * len(
        img.getbands())
    canvas = Image.new(img.mode, (tw, th), fill)
    canvas.paste(inner, ((tw - nw) // 2, (th - nh) // 2))
    return canvas


def _draft_size(spec: ImageSpec) -> tuple[int, int]:
    """The size JPEG draft mode must keep on both axes: the larger output side, so that any
    policy and any EXIF rotation still resizes down, never up."""
    side = max(spec.width, spec.height)
    return (side, side)


# ---------------------------------------------------------------------------------------------
# decoding


def open_checked(data: bytes, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open (header only) and refuse bombs; raise ImageDecodeError naming ``name``."""
    pillow_limit = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = max_pixels  # Pillow's own header check uses our limit
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(name, -1, f"decompression bomb refused ({exc})") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageDecodeError(name, -1, f"not a decodable image ({exc})") from exc
    finally:
        Image.MAX_IMAGE_PIXELS = pillow_limit
    w, h = img.size
    if w * h > max_pixels:
        raise ImageDecodeError(name, -1, f"decompression bomb refused: {w}x{h} = {w * h:,} "
                                         f"pixels > limit {max_pixels:,}")
    if w < 1 or h < 1:
        raise ImageDecodeError(name, -1, f"empty image {w}x{h}")
    return img


def normalize_image(img: Image.Image, spec: ImageSpec, name: str = "<image>") -> np.ndarray:
    """Orient, convert and resize an opened image; uint8 ``spec.shape``."""
    try:
        if img.format == "JPEG" and not spec.keep_values:
            img.draft("RGB" if spec.channels == 3 else "L", _draft_size(spec))
        img.load()
        img = ImageOps.exif_transpose(img)
        if spec.keep_values:
            if img.mode not in ("L", "P", "1"):
                img = to_mode(img, 1)
            elif img.mode == "1":
                img = img.convert("L")
        else:
            img = to_mode(img, spec.channels)
        out = fit_image(img, spec)
        arr = np.asarray(out, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError,
            Image.DecompressionBombError) as exc:
        raise ImageDecodeError(name, -1, f"cannot decode: {exc}") from exc
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.shape != spec.shape:  # pragma: no cover - guarded by the converters above
        raise ImageDecodeError(name, -1, f"decoded to {arr.shape}, expected {spec.shape}")
    return arr


def decode_image(data: bytes, spec: ImageSpec, name: str = "<image>") -> np.ndarray:
    """Decode encoded image bytes into uint8 ``(H, W, C)`` per ``spec``.

    Raises :class:`ImageDecodeError` for corrupt, truncated, unknown or bomb-sized input.
    """
    with open_checked(data, name, spec.max_pixels) as img:
        return normalize_image(img, spec, name)


# ---------------------------------------------------------------------------------------------
# where image bytes come from (picklable, so worker processes read them themselves)


@dataclass(frozen=True)
class ImageRef:
    """One image's bytes: a file, a byte span of a file (a member of a plain tar), a zip
    member, or inline bytes. ``name`` is what reports show."""

    name: str
    path: str = ""
    offset: int = -1
    size: int = -1
    member: str = ""
    data: bytes | None = None
    missing: str = ""  # why there are no bytes (e.g. "not in images.tar.gz"): reported as a skip

    def read(self) -> bytes:
        """The encoded bytes; ImageDecodeError when missing, short or over MAX_FILE_BYTES."""
        if self.missing:
            raise ImageDecodeError(self.name, -1, self.missing)
        if self.data is not None:
            return self.data
        if self.member:
            with zipfile.ZipFile(self.path) as zf:
                self._check_size(zf.getinfo(self.member).file_size)
                return zf.read(self.member)
        with open(self.path, "rb") as fh:
            self._check_size(self.size if self.offset >= 0 else os.fstat(fh.fileno()).st_size)
            if self.offset >= 0:
                fh.seek(self.offset)
                data = fh.read(self.size)
                if len(data) != self.size:
                    raise ImageDecodeError(self.name, self.offset,
                                           f"archive ends early ({len(data)} of {self.size} bytes)")
                return data
            return fh.read()

    def _check_size(self, size: int) -> None:
        if size > MAX_FILE_BYTES:
            raise ImageDecodeError(self.name, -1, f"{size:,} bytes is over the {MAX_FILE_BYTES:,}"
                                                  f"-byte limit for one image file")


def tar_refs(archive: Path, prefix: str = "") -> dict[str, ImageRef]:
    """Map member name -> ImageRef for the regular files of a tar (``prefix`` filters names).

    Plain tars give byte spans (workers read them directly); compressed tars are read once,
    in order, into inline bytes. Unsafe names (absolute, ``..``) are rejected.
    """
    refs: dict[str, ImageRef] = {}
    plain = _is_plain_tar(archive)
    try:
        with tarfile.open(archive, "r:" if plain else "r:*") as tar:
            for member in tar:
                if not member.isfile() or not member.name.startswith(prefix):
                    continue
                _check_member_name(archive, member.name)
                if plain:
                    refs[member.name] = ImageRef(member.name, str(archive), member.offset_data,
                                                 member.size)
                else:
                    fh = tar.extractfile(member)
                    refs[member.name] = ImageRef(member.name, data=fh.read() if fh else b"")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise FormatError(archive, -1, f"corrupt tar archive: {exc}") from exc
    return refs


def _is_plain_tar(path: Path) -> bool:
    """True for an uncompressed tar (Oxford Pets' ``.tar.gz`` files are, despite the name)."""
    with open(path, "rb") as fh:
        head = fh.read(512)
    return len(head) == 512 and sniff_compression(head) is None


def _check_member_name(archive: Path, name: str) -> None:
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or ".." in parts:
        from ..errors import ExtractionError

        raise ExtractionError(f"{archive}: unsafe member name {name!r}")


def zip_refs(archive: Path) -> dict[str, ImageRef]:
    """Map member name -> ImageRef for the files of a zip archive."""
    try:
        with zipfile.ZipFile(archive) as zf:
            names = [i.filename for i in zf.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError) as exc:
        raise FormatError(archive, -1, f"corrupt zip archive: {exc}") from exc
    for n in names:
        _check_member_name(archive, n)
    return {n: ImageRef(n, str(archive), member=n) for n in names}


# ---------------------------------------------------------------------------------------------
# many images, possibly in parallel


@dataclass(frozen=True)
class DecodeJob:
    """One sample: its image and, optionally, a mask decoded with ``mask_spec`` (same geometry)."""

    image: ImageRef
    mask: ImageRef | None = None


@dataclass
class DecodeResult:
    """What a worker returns for one job: arrays, or the reason it was skipped."""

    image: np.ndarray | None
    mask: np.ndarray | None = None
    error: str = ""
    content_hash: str = ""


def _decode_job(job: DecodeJob, spec: ImageSpec, mask_spec: ImageSpec | None,
                hash_mode: str) -> DecodeResult:
    try:
        data = job.image.read()
        digest = hashlib.sha256(data).hexdigest() if hash_mode == "exact" else ""
        image = decode_image(data, spec, job.image.name)
        mask = None
        if job.mask is not None and mask_spec is not None:
            mask = decode_image(job.mask.read(), mask_spec, job.mask.name)
        if hash_mode == "perceptual":
            digest = difference_hash(image)
        return DecodeResult(image, mask, content_hash=digest)
    except FormatError as exc:
        return DecodeResult(None, error=exc.what)
    except OSError as exc:
        return DecodeResult(None, error=f"cannot read: {exc.strerror or exc}")


def _decode_chunk(jobs: Sequence[DecodeJob], spec: ImageSpec, mask_spec: ImageSpec | None,
                  hash_mode: str) -> list[DecodeResult]:
    return [_decode_job(j, spec, mask_spec, hash_mode) for j in jobs]


def difference_hash(image: np.ndarray, side: int = 8) -> str:
    """64-bit dHash of a decoded uint8 (H, W, C) image, as 16 hex digits (perceptual dedupe)."""
    gray = Image.fromarray(image[..., 0] if image.shape[2] == 1 else image).convert("L")
    small = np.asarray(gray.resize((side + 1, side), Image.Resampling.BILINEAR), dtype=np.int16)
    bits = (small[:, 1:] > small[:, :-1]).ravel()
    return f"{int(''.join('1' if b else '0' for b in bits), 2):016x}"


def decode_many(jobs: Sequence[DecodeJob], spec: ImageSpec, *, mask_spec: ImageSpec | None = None,
                workers: int = 1, chunk: int = 64, hash_mode: str = "none",
                progress: Callable[[int], None] | None = None) -> Iterator[DecodeResult]:
    """Decode ``jobs`` in input order; ``workers`` > 1 uses that many processes.

    Yields one :class:`DecodeResult` per job, in order (skips carry ``error``). ``hash_mode``:
    ``none``, ``exact`` (sha256 of the file bytes) or ``perceptual`` (dHash of the output).
    """
    if hash_mode not in ("none", "exact", "perceptual"):
        raise DlprepError(f"dedupe mode {hash_mode!r}: use none, exact or perceptual")
    chunks = [jobs[i:i + chunk] for i in range(0, len(jobs), chunk)]
    if workers <= 1 or len(chunks) <= 1:
        for part in chunks:
            results = _decode_chunk(part, spec, mask_spec, hash_mode)
            if progress:
                progress(len(part))
            yield from results
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        # bounded look-ahead keeps memory flat: at most 2 chunks per worker in flight
        pending = []
        it = iter(chunks)
        for part in it:
            pending.append(pool.submit(_decode_chunk, part, spec, mask_spec, hash_mode))
            if len(pending) >= 2 * workers:
                break
        while pending:
            results = pending.pop(0).result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(_decode_chunk, nxt, spec, mask_spec, hash_mode))
            if progress:
                progress(len(results))
            yield from results
