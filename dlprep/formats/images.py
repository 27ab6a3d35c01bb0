"""The image pipeline every image source uses: decode -> orient -> convert -> resize -> uint8.

Decoding is Pillow's, with draft mode for JPEG (the DCT scales down while decoding, so a 4000 px
photo bound for 64 px never exists at full size), EXIF orientation applied, every Pillow mode
mapped to RGB or L, and a pixel-count guard against decompression bombs checked on the header
before any pixel is decoded. A file that cannot be decoded raises :class:`ImageDecodeError`
(a ``FormatError``); :func:`decode_many` turns those into a skip list instead of aborting.
Builders decode on shards (:mod:`dlprep.prepare.image_shards`, run by :mod:`dlprep.scale`),
with results in input order, so output bytes never depend on the number of workers.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ..errors import DlprepError, ExtractionError, FormatError
from ..fetch.extract import decompress_file, safe_member_path
from ..limits import ExtractLimits, check_declared
from ..magic import sniff_compression
from .compressed import STREAM_ERRORS, open_maybe_compressed
from .tarstream import TarStream

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
        if self.max_pixels < 1:
            raise DlprepError(f"--max-pixels must be a positive pixel count, got "
                              f"{self.max_pixels}")

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


def _reason(exc: BaseException) -> str:
    """An exception's text without object reprs such as ``<_io.BytesIO object at 0x...>``."""
    text = re.sub(r"\s*<[\w.]+ object at 0x[0-9a-f]+>", "", str(exc)).strip()
    return text or type(exc).__name__


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
    except Image.UnidentifiedImageError:
        raise ImageDecodeError(name, -1, "not an image format Pillow reads (unknown format or "
                                         "corrupt header)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageDecodeError(name, -1, f"not a decodable image ({_reason(exc)})") from exc
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
        raise ImageDecodeError(name, -1, f"cannot decode: {_reason(exc)}") from exc
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


def display_name(name: str) -> str:
    """A name safe to print and store as UTF-8: bytes that are not UTF-8 (kept by Python as
    surrogate escapes in file and member names) are shown as ``\\xNN``."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words (for skip reports)."""
    for test, what in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return what
    return "not a regular file"


@dataclass(frozen=True)
class ImageRef:
    """One image's bytes: a file, a byte span of a file (a member of a plain tar), a zip
    member, a member of a compressed tar (``packed_tar``: readable only once unpacked, see
    :func:`unpack_tar_refs`), or inline bytes. ``name`` is what reports show."""

    name: str
    path: str = ""
    offset: int = -1
    size: int = -1
    member: str = ""
    data: bytes | None = None
    missing: str = ""  # why there are no bytes (e.g. "not in images.tar.gz"): reported as a skip
    packed_tar: bool = False

    def read(self) -> bytes:
        """The encoded bytes; ImageDecodeError when missing, short, not a regular file, or
        over MAX_FILE_BYTES (checked before reading)."""
        if self.missing:
            raise ImageDecodeError(self.name, -1, self.missing)
        if self.data is not None:
            return self.data
        if self.packed_tar:
            raise ImageDecodeError(self.name, -1, "member of a compressed tar not unpacked")
        if self.member:
            return self._read_zip_member()
        # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then refuses it
        fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        with open(fd, "rb", closefd=True) as fh:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ImageDecodeError(self.name, -1, f"{file_kind(st.st_mode)}, not a regular "
                                                      f"file; not read")
            self._check_size(self.size if self.offset >= 0 else st.st_size)
            if self.offset >= 0:
                fh.seek(self.offset)
                data = fh.read(self.size)
                if len(data) != self.size:
                    raise ImageDecodeError(self.name, self.offset,
                                           f"archive ends early ({len(data)} of {self.size} bytes)")
                return data
            data = fh.read(MAX_FILE_BYTES + 1)
            self._check_size(len(data))  # the file grew since fstat
            return data

    def _read_zip_member(self) -> bytes:
        with zipfile.ZipFile(self.path) as zf:
            info = zf.getinfo(self.member)
            self._check_size(info.file_size)
            try:
                check_declared(self.name, info.file_size, info.compress_size)
            except ExtractionError as exc:
                raise ImageDecodeError(self.name, -1, str(exc).removeprefix(f"{self.name}: ")) \
                    from None
            return zf.read(info)

    def _check_size(self, size: int) -> None:
        if size > MAX_FILE_BYTES:
            raise ImageDecodeError(self.name, -1, f"{size:,} bytes is over the {MAX_FILE_BYTES:,}"
                                                  f"-byte limit for one image file")


def tar_refs(archive: Path, prefix: str = "", *,
             limits: ExtractLimits | None = None) -> dict[str, ImageRef]:
    """Map member name -> ImageRef for the regular files of a tar (``prefix`` filters names).

    One pass over the headers; nothing is held in memory. Members of a plain tar are byte
    spans that workers read directly; members of a compressed tar are ``packed_tar`` refs
    (the listing inflates the stream within ``limits``; :func:`unpack_tar_refs` makes them
    readable). Unsafe names (absolute, ``..``) raise ExtractionError; a member declaring more
    bytes than the archive holds raises FormatError naming it and the declared size.
    """
    refs: dict[str, ImageRef] = {}
    plain = _is_plain_tar(archive)
    try:
        with (open(archive, "rb") if plain else open_maybe_compressed(archive, limits=limits)
              ) as fh:
            for member in TarStream(fh, archive, seek=plain):
                if not member.name.startswith(prefix):
                    continue
                safe_member_path(archive, member.name)
                name = display_name(member.name)
                refs[name] = ImageRef(name, str(archive), member.offset_data, member.size) \
                    if plain else ImageRef(name, str(archive), size=member.size,
                                           member=member.name, packed_tar=True)
    except STREAM_ERRORS as exc:
        raise FormatError(archive, -1, f"corrupt tar archive: {exc}") from exc
    return refs


def unpack_tar_refs(refs: Sequence[ImageRef], scratch: Path,
                    limits: ExtractLimits | None = None) -> list[ImageRef]:
    """``refs`` with every ``packed_tar`` member made readable: each compressed tar is
    decompressed once (within ``limits``) into a plain tar in the folder ``scratch``, whose
    members are byte spans. The caller removes ``scratch``."""
    archives = sorted({r.path for r in refs if r.packed_tar})
    spans: dict[tuple[str, str], ImageRef] = {}
    for k, archive in enumerate(archives):
        plain = decompress_file(Path(archive), scratch / f"{k}.tar", limits=limits)
        with open(plain, "rb") as fh:
            for member in TarStream(fh, archive, seek=True):
                spans[(archive, member.name)] = ImageRef(
                    display_name(member.name), str(plain), member.offset_data, member.size)
    out = []
    for r in refs:
        if r.packed_tar:
            span = spans.get((r.path, r.member))
            r = ImageRef(r.name, span.path, span.offset, span.size) if span else ImageRef(
                r.name, missing=f"not found when {Path(r.path).name} was unpacked")
        out.append(r)
    return out


def _is_plain_tar(path: Path) -> bool:
    """True for an uncompressed tar (Oxford Pets' ``.tar.gz`` files are, despite the name)."""
    with open(path, "rb") as fh:
        head = fh.read(512)
    return len(head) == 512 and sniff_compression(head) is None


def zip_refs(archive: Path) -> dict[str, ImageRef]:
    """Map member name -> ImageRef for the regular files of a zip archive (links, devices and
    folders are left out); unsafe names (absolute, ``..``) raise ExtractionError."""
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()
                     and stat.S_IFMT(i.external_attr >> 16) in (0, stat.S_IFREG)]
    except (zipfile.BadZipFile, OSError) as exc:
        raise FormatError(archive, -1, f"corrupt zip archive: {exc}") from exc
    refs = {}
    for info in infos:
        safe_member_path(archive, info.filename)
        name = display_name(info.filename)
        refs[name] = ImageRef(name, str(archive), member=info.filename)
    return refs


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


def decode_job(job: DecodeJob, spec: ImageSpec, mask_spec: ImageSpec | None = None,
               hash_mode: str = "none") -> DecodeResult:
    """Decode one job; a file that does not decode gives a result with ``error`` set."""
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
    except ExtractionError as exc:
        return DecodeResult(None, error=str(exc))
    except OSError as exc:
        return DecodeResult(None, error=f"cannot read: {exc.strerror or exc}")


def difference_hash(image: np.ndarray, side: int = 8) -> str:
    """64-bit dHash of a decoded uint8 (H, W, C) image, as 16 hex digits (perceptual dedupe)."""
    gray = Image.fromarray(image[..., 0] if image.shape[2] == 1 else image).convert("L")
    small = np.asarray(gray.resize((side + 1, side), Image.Resampling.BILINEAR), dtype=np.int16)
    bits = (small[:, 1:] > small[:, :-1]).ravel()
    return f"{int(''.join('1' if b else '0' for b in bits), 2):016x}"


def decode_many(jobs: Sequence[DecodeJob], spec: ImageSpec, *, mask_spec: ImageSpec | None = None,
                hash_mode: str = "none",
                progress: Callable[[int], None] | None = None) -> Iterator[DecodeResult]:
    """Decode ``jobs`` in input order, in this process (builders decode on shards, in
    parallel through :mod:`dlprep.scale`: :mod:`dlprep.prepare.image_shards`).

    Yields one :class:`DecodeResult` per job, in order (skips carry ``error``). ``hash_mode``:
    ``none``, ``exact`` (sha256 of the file bytes) or ``perceptual`` (dHash of the output).
    """
    if hash_mode not in ("none", "exact", "perceptual"):
        raise DlprepError(f"dedupe mode {hash_mode!r}: use none, exact or perceptual")
    for job in jobs:
        yield decode_job(job, spec, mask_spec, hash_mode)
        if progress:
            progress(1)
