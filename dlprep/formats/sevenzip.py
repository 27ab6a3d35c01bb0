"""One member of a ``.7z`` archive, streamed in chunks: never extracted to disk, never whole.

Three decoders, chosen by :func:`choose_decoder` (``auto``: the first that is available):

* ``7z``: a 7-Zip program on PATH (``7z``, ``7zz`` or ``7za``): ``7z x -so ARCHIVE MEMBER``,
  its stdout read in chunks (``7z l -slt`` lists the members first).
* ``libarchive``: libarchive through libarchive-c (the ``api`` extra; needs the system's
  libarchive.so): a pull reader, about twice py7zr's speed (docs/PERFORMANCE.md).
* ``py7zr`` (the ``api`` extra, pure Python): its writer-factory interface pushes the
  decompressed bytes from a thread into a bounded queue. py7zr would decompress in blocks of
  up to 128 MB; its block size (``py7zr.py7zr.get_memory_limit``) is set to 4 MB.

Every decoder yields the member's :class:`Member` (name, declared size) first, then its bytes;
:func:`member_chunks` holds them to :class:`~dlprep.limits.ExtractLimits` (the declared size is
checked before anything is inflated, the bytes as they come out).
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import DlprepError, ExtractionError, FormatError, MissingDependencyError
from ..limits import DEFAULT_LIMITS, Budget, ExtractLimits, check_declared

SEVEN_ZIP_MAGIC = b"7z\xbc\xaf\x27\x1c"
CHUNK = 1 << 20
#: programs that understand ``x -so`` (7-Zip's own build, p7zip's full and standalone ones)
PROGRAMS = ("7z", "7zz", "7za")
DECODERS = ("auto", "7z", "libarchive", "py7zr")
Which = Callable[[str], "str | None"]


@dataclass(frozen=True)
class Member:
    """An archive member: its name and declared (decompressed) size, if known."""

    name: str
    size: int | None


def is_seven_zip(path: Path) -> bool:
    """True when the file at ``path`` starts with the 7z signature."""
    with open(path, "rb") as fh:
        return fh.read(len(SEVEN_ZIP_MAGIC)) == SEVEN_ZIP_MAGIC


def seven_zip_program(which: Which = shutil.which) -> str | None:
    """The path of a 7-Zip program on PATH (``7z``, ``7zz`` or ``7za``), or None."""
    for name in PROGRAMS:
        found = which(name)
        if found:
            return found
    return None


def libarchive_available() -> bool:
    """True when libarchive-c imports and finds the libarchive shared library."""
    try:
        import libarchive  # noqa: F401
    except (ImportError, OSError, AttributeError):
        return False
    return True


def _has_py7zr() -> bool:
    try:
        import py7zr  # noqa: F401
    except ImportError:
        return False
    return True


def choose_decoder(decoder: str = "auto", *, which: Which = shutil.which,
                   has_libarchive: Callable[[], bool] = libarchive_available,
                   has_py7zr: Callable[[], bool] = _has_py7zr) -> tuple[str, str | None]:
    """``(decoder, program path or None)``. ``auto``: the 7z program when one is on PATH
    (it decompresses on its own threads), else libarchive, else py7zr. A decoder asked for by
    name that is not available, or none at all, is a one-line error."""
    if decoder not in DECODERS:
        raise DlprepError(f"--decoder: {decoder!r} is not one of {', '.join(DECODERS)}")
    if decoder in ("auto", "7z"):
        program = seven_zip_program(which)
        if program:
            return "7z", program
        if decoder == "7z":
            raise DlprepError(f"--decoder 7z: no 7-Zip program on PATH (looked for "
                              f"{', '.join(PROGRAMS)}); install p7zip or 7zip, or use "
                              f"--decoder libarchive|py7zr")
    if decoder in ("auto", "libarchive") and has_libarchive():
        return "libarchive", None
    if decoder in ("auto", "py7zr") and has_py7zr():
        return "py7zr", None
    want = "libarchive-c (and the libarchive library)" if decoder == "libarchive" else (
        "py7zr" if decoder == "py7zr" else "a 7z program, libarchive-c or py7zr")
    raise MissingDependencyError(f"reading .7z dumps needs {want}: pip install 'dlprep[api]' "
                                 f"or install p7zip")


def _last_line(data: bytes) -> str:
    lines = [ln.strip() for ln in data.decode("utf-8", "replace").splitlines() if ln.strip()]
    return lines[-1][:200] if lines else ""


def _why(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:160]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _damaged(path: Path, why: str) -> FormatError:
    return FormatError(path, -1, f"not a readable 7z archive ({why}; truncated or damaged "
                                 f"download?)")


def find_member(members: Iterable[Member], path: Path, wanted: str) -> Member:
    """The member whose base name is ``wanted`` (any folder, any case), or a FormatError
    listing the members there are."""
    members = list(members)
    for m in members:
        if _base(m.name) == wanted.lower():
            return m
    names = ", ".join(m.name for m in members[:8]) or "none"
    more = f" and {len(members) - 8} more" if len(members) > 8 else ""
    raise FormatError(path, -1, f"no {wanted} in this archive (members: {names}{more})")


def _base(name: str) -> str:
    return name.replace("\\", "/").rsplit("/", 1)[-1].lower()


def member_chunks(path: Path, wanted: str, *, decoder: str = "auto",
                  limits: ExtractLimits | None = None,
                  which: Which = shutil.which) -> Iterator[bytes]:
    """The bytes of the member named ``wanted`` of the 7z archive ``path``, in chunks of
    about 1 MB, held to ``limits``. Close the generator to stop early (the program is
    killed, the thread stopped)."""
    path = Path(path)
    limits = limits or DEFAULT_LIMITS
    kind, program = choose_decoder(decoder, which=which)
    if kind == "7z":
        assert program is not None
        source = _program_chunks(path, wanted, program)
    elif kind == "libarchive":
        source = _libarchive_chunks(path, wanted)
    else:
        source = _py7zr_chunks(path, wanted)
    packed = os.stat(path).st_size
    with contextlib.closing(source):
        member = next(source)
        assert isinstance(member, Member)
        if member.size is not None:
            check_declared(path, member.size, packed, limits, member.name)
        budget = Budget(path, packed, limits)
        for chunk in source:
            assert isinstance(chunk, bytes)
            budget.add_bytes(member.name, len(chunk))
            if member.size is not None and budget.total > member.size:
                raise ExtractionError(f"{path}: {member.name}: more than the {member.size:,} "
                                      f"bytes its header declares")
            yield chunk
        if member.size is not None and budget.total < member.size:
            raise FormatError(path, -1, f"{member.name} ends after {budget.total:,} of its "
                                        f"{member.size:,} bytes (truncated archive?)")


# --- the 7z program ---------------------------------------------------------------------------

def list_program(path: Path, program: str) -> list[Member]:
    """The members of ``path`` from ``7z l -slt`` (directories left out)."""
    proc = subprocess.run([program, "l", "-slt", str(path)], capture_output=True,
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise _damaged(path, _last_line(proc.stderr) or _last_line(proc.stdout) or
                       f"{Path(program).name} exit status {proc.returncode}")
    members: list[Member] = []
    cur: dict[str, str] = {}
    started = False
    for line in proc.stdout.decode("utf-8", "replace").splitlines() + [""]:
        if line.startswith("----------"):
            started = True
            continue
        if not started:
            continue
        if not line.strip():
            is_dir = cur.get("Folder") == "+" or cur.get("Attributes", "").startswith("D")
            if "Path" in cur and not is_dir:
                size = cur.get("Size", "")
                members.append(Member(cur["Path"], int(size) if size.isdigit() else None))
            cur = {}
            continue
        key, sep, value = line.partition(" = ")
        if sep:
            cur[key.strip()] = value.strip()
    return members


def _program_chunks(path: Path, wanted: str, program: str) -> Iterator[Member | bytes]:
    member = find_member(list_program(path, program), path, wanted)
    yield member
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([program, "x", "-so", "-y", str(path), member.name],
                                stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)
        finished = False
        try:
            assert proc.stdout is not None
            while chunk := proc.stdout.read(CHUNK):
                yield chunk
            rc = proc.wait()
            finished = True
            if rc != 0:
                err.seek(0)
                why = _last_line(err.read()) or f"exit status {rc}"
                raise FormatError(path, -1, f"{Path(program).name} could not decompress "
                                            f"{member.name} ({why}; truncated or damaged "
                                            f"download?)")
        finally:
            if not finished:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


# --- libarchive -------------------------------------------------------------------------------

def _libarchive_chunks(path: Path, wanted: str) -> Iterator[Member | bytes]:
    import libarchive
    from libarchive.exception import ArchiveError

    seen: list[Member] = []
    try:
        with libarchive.file_reader(str(path), format_name="7zip") as archive:
            for entry in archive:
                if entry.isdir:
                    continue
                member = Member(entry.pathname, entry.size)
                seen.append(member)
                if _base(member.name) != wanted.lower():
                    continue
                yield member
                yield from entry.get_blocks(CHUNK)
                return
    except ArchiveError as exc:
        what = getattr(exc, "msg", None) or str(exc)
        if seen and _base(seen[-1].name) == wanted.lower():
            raise FormatError(path, -1, f"could not decompress {seen[-1].name} ({what}; "
                                        f"truncated or damaged download?)") from None
        raise _damaged(path, " ".join(str(what).split())[:160]) from None
    find_member(seen, path, wanted)  # raises: no such member


# --- py7zr ------------------------------------------------------------------------------------

class _Stop(Exception):
    """Raised inside py7zr's writer when the reader went away."""


_END = object()


def _small_blocks() -> int:
    return 4 * CHUNK


def _py7zr_chunks(path: Path, wanted: str) -> Iterator[Member | bytes]:
    import py7zr
    import py7zr.py7zr as impl
    from py7zr.io import Py7zIO, WriterFactory

    # py7zr decompresses in blocks of min(128 MB, free memory / 4) (``get_memory_limit``,
    # read at each extraction): 4 MB blocks keep memory flat at no measurable cost
    if callable(getattr(impl, "get_memory_limit", None)):
        impl.get_memory_limit = _small_blocks

    try:
        with py7zr.SevenZipFile(path, mode="r") as z:
            members = [Member(i.filename, i.uncompressed) for i in z.list()
                       if not i.is_directory]
    except (py7zr.exceptions.ArchiveError, EOFError, OSError, ValueError, KeyError,
            IndexError, TypeError) as exc:
        raise _damaged(path, _why(exc)) from exc
    member = find_member(members, path, wanted)
    yield member
    chunks: queue.Queue[object] = queue.Queue(maxsize=4)
    stop = threading.Event()

    def put(item: object) -> None:
        while not stop.is_set():
            try:
                chunks.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _Stop

    class Writer(Py7zIO):
        def __init__(self) -> None:
            self.n = 0

        def write(self, s: bytes | bytearray) -> int:
            view = memoryview(s)
            for i in range(0, len(view), CHUNK):  # a block may be larger than one chunk
                put(bytes(view[i:i + CHUNK]))
            self.n += len(view)
            return len(view)

        def read(self, size: int | None = None) -> bytes:
            return b""

        def seek(self, offset: int, whence: int = 0) -> int:
            return self.n

        def flush(self) -> None:
            pass

        def size(self) -> int:
            return self.n

    class Factory(WriterFactory):
        def create(self, filename: str) -> Py7zIO:
            return Writer()

    def run() -> None:
        try:
            with py7zr.SevenZipFile(path, mode="r") as z:
                z.extract(targets=[member.name], factory=Factory())
            put(_END)
        except _Stop:
            pass
        except BaseException as exc:  # handed to the reader, which raises it
            with contextlib.suppress(_Stop):
                put(exc)

    thread = threading.Thread(target=run, name="py7zr-member", daemon=True)
    thread.start()
    try:
        while True:
            item = chunks.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise FormatError(path, -1, f"could not decompress {member.name} "
                                            f"({_why(item)}; truncated or damaged "
                                            f"download?)") from item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        thread.join(timeout=30)
