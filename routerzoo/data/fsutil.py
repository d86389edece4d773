"""Crash-safe directory writes and single-writer locks (standard library only).

Two building blocks for anything routerzoo writes as a directory (datasets, router artifacts):

:func:`atomic_directory`
    ``with atomic_directory(target, overwrite=...) as tmp:`` yields a fresh temporary directory
    *beside* ``target`` (same file system); write everything into it. When the block ends without
    an exception the temporary directory replaces ``target`` in one rename, so a reader (or a crash
    at any moment) sees either the complete old version or the complete new one, never a mix.
    On any exception the temporary directory is deleted and ``target`` is untouched.

:func:`exclusive_lock`
    ``with exclusive_lock(target):`` holds an exclusive advisory lock (``fcntl.flock``) on a lock
    file beside ``target`` (``.<name>.lock``); a second writer gets a :class:`~routerzoo.errors.UserError`
    naming the path at once instead of waiting or interleaving. The lock is released when the
    block ends or the process dies (the kernel drops ``flock`` locks with the file descriptor).
    The lock file itself is left in place: deleting it would let two writers lock two different
    files of the same name.

Example::

    from routerzoo.data.fsutil import atomic_directory

    with atomic_directory(Path("routers/knn"), overwrite=True) as tmp:
        (tmp / "config.json").write_text("{}")
        save_weights(tmp / "weights.safetensors")
    # routers/knn now holds exactly these files

Replacing an existing directory uses Linux's ``renameat2(RENAME_EXCHANGE)`` (an atomic swap) where
available; elsewhere the old directory is first renamed to ``.<name>.old-*`` and the new one moved
into place (two renames; if the second fails the first is undone). The old version is deleted only
after the new one is in place. Leftover ``.<name>.tmp-*`` / ``.<name>.old-*`` directories from a
killed process are harmless and are removed by the next successful write of the same target.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from routerzoo.errors import UserError

try:  # POSIX only; on other platforms the lock is a no-op
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = ["atomic_directory", "atomic_write_bytes", "atomic_write_text", "check_output_dir", "exclusive_lock",
           "file_sha256", "lock_path"]

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 hex digest of a file's bytes, read in 1 MiB blocks."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, durable: bool = False) -> Path:
    """Write one file all-or-nothing: the bytes go to a temporary file beside ``path`` that then
    replaces it in one rename, so a reader never sees half a file. The parent folder is created.

    Args:
        durable: also fsync the file before the rename and the folder after it, so the new file
            survives a power cut (state a server must not lose; slower).

    Returns:
        ``path`` as a Path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        _fsync_dir(path.parent)  # the rename itself
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """:func:`atomic_write_bytes` of ``text`` encoded as UTF-8."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def lock_path(target: str | os.PathLike) -> Path:
    """The lock file guarding ``target``: ``.<name>.lock`` in the same folder."""
    target = Path(target)
    return target.parent / f".{target.name}.lock"


@contextlib.contextmanager
def exclusive_lock(target: str | os.PathLike) -> Iterator[Path]:
    """Hold an exclusive, non-blocking advisory lock for writing ``target``.

    Args:
        target: the file or directory about to be written (it need not exist; its parent folder
            is created if needed).

    Yields:
        The lock file's path.

    Raises:
        UserError: another process (or another ``exclusive_lock`` in this one) holds the lock.
    """
    target = Path(target)
    lock = lock_path(target)
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise UserError(f"cannot write {target}: {exc.strerror or exc}") from None
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise UserError(f"{target} is being written by another routerzoo process (lock {lock} is held); "
                                    "wait for it to finish and try again") from None
                raise
        yield lock
    finally:
        os.close(fd)  # releases the flock


def check_output_dir(target: str | os.PathLike, *, overwrite: bool, what: str = "output directory") -> Path:
    """Fail early (before any expensive work) when ``target`` cannot be written as a directory.

    Raises:
        UserError: ``target`` is a file, or a non-empty directory while ``overwrite`` is false, or
            its parent is a file.
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise UserError(f"{what} {target} exists and is a file, not a directory; choose another path")
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"cannot create {what} {target}: {parent} is a file")
            break
    if target.is_dir() and not overwrite and any(target.iterdir()):
        raise UserError(f"{what} {target} already exists and is not empty; pass --overwrite (overwrite=True) to "
                        "replace it, or choose another path")
    return target


def _libc_renameat2():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_renameat2 = _libc_renameat2()


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths; False when the platform cannot."""
    if _renameat2 is None:
        return False
    rc = _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _replace_dir(tmp: Path, target: Path) -> None:
    """Put directory ``tmp`` at ``target``; the old ``target`` (if any) is deleted afterwards."""
    if not target.exists():
        os.rename(tmp, target)
        return
    if not any(target.iterdir()):
        os.rename(tmp, target)  # rename(2) replaces an empty directory atomically
        return
    if _exchange(tmp, target):
        shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old version
        return
    old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
    try:
        os.rename(target, old / "d")
        try:
            os.rename(tmp, target)
        except BaseException:
            os.rename(old / "d", target)
            raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


def _remove_leftovers(target: Path, locked: bool) -> None:
    """Delete ``.<name>.old-*`` (and, under the lock, ``.<name>.tmp-*``) left by a killed writer."""
    patterns = [f".{target.name}.old-*"] + ([f".{target.name}.tmp-*"] if locked else [])
    for pattern in patterns:
        for stale in target.parent.glob(pattern):
            shutil.rmtree(stale, ignore_errors=True)


class WriteError(UserError, OSError):
    """A directory write failed at the operating system (full disk, file too large, read-only): one
    line for the CLI (a UserError), and still an OSError for callers that handle those."""


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike, overwrite: bool = False, *, lock: bool = True,
                     what: str = "output directory") -> Iterator[Path]:
    """Write a directory all-or-nothing.

    Args:
        target: the directory to create or replace.
        overwrite: replace an existing non-empty ``target``; when false such a target is a
            :class:`~routerzoo.errors.UserError` (an empty directory is always fine).
        lock: hold :func:`exclusive_lock` on ``target`` for the whole write, so two writers of the
            same target fail clearly instead of racing.
        what: how error messages name ``target`` ("dataset directory", "router artifact", ...).

    Yields:
        An empty temporary directory beside ``target``: write the new content there.

    Raises:
        UserError: ``target`` is a file, is non-empty without ``overwrite``, or is locked.

    On success the temporary directory becomes ``target`` in a single rename (the old version is
    kept until then); on any exception it is removed and ``target`` is left exactly as it was.
    """
    target = Path(target)
    check_output_dir(target, overwrite=overwrite, what=what)
    with exclusive_lock(target) if lock else contextlib.nullcontext():
        check_output_dir(target, overwrite=overwrite, what=what)  # again, now that we hold the lock
        try:
            tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
        except OSError as exc:
            raise UserError(f"cannot write {what} {target}: {exc.strerror or exc}") from None
        try:
            yield tmp
            _fsync_dir(tmp)
            _replace_dir(tmp, target)
        except OSError as exc:  # a full disk (ENOSPC), a file too large (EFBIG), a read-only folder, ...
            shutil.rmtree(tmp, ignore_errors=True)
            code = f" [{errno.errorcode.get(exc.errno, exc.errno)}]" if exc.errno else ""
            kept = f"{target} is unchanged" if target.exists() else "nothing was written"
            raise WriteError(f"cannot write {what} {target}: {exc.strerror or exc}{code}; {kept}") from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _fsync_dir(target.parent)
        _remove_leftovers(target, lock)
