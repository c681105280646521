"""Where the trainer reads and writes bytes: local paths, `gs://` and `s3://`, all through fsspec.

The trainer runs in three places (a Kubernetes pod, a Vertex CustomJob, a local process) and only the
URI scheme tells them apart. gcsfs and s3fs pick up their usual configuration from the environment
(`STORAGE_EMULATOR_HOST`, `AWS_ENDPOINT_URL`, workload identity, ...); nothing here reads credentials.
Where a source has credentials of its own (`trainer.credentials`), every function takes them as
`options`: fsspec storage options for that URI's filesystem (None: the ambient identity, as before).

A checkpoint counts as complete when its `trainer_state.json` is present: the Trainer writes that file
after the weights, optimizer and RNG state, and `upload_dir` uploads it last, so a folder interrupted by
preemption (locally or half-uploaded) is never chosen for a resume.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterator
from pathlib import Path

REMOTE_SCHEMES = ("gs", "gcs", "s3")
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
COMPLETE_MARKER = "trainer_state.json"


class StorageError(Exception):
    """A path could not be read or written (missing object, no such bucket, denied)."""


def scheme(uri: str) -> str:
    return uri.split("://", 1)[0].lower() if "://" in uri else "file"


def is_remote(uri: str | None) -> bool:
    return bool(uri) and scheme(uri) in REMOTE_SCHEMES


def _fs(uri: str, options: dict | None = None):
    # gcsfs's experimental zonal/HNS support probes every bucket's layout on first use, which stalls for
    # a minute where the probe is not answered (the emulator) and buys the trainer nothing. It is read
    # when gcsfs is imported, which fsspec does lazily on the first gs:// path, i.e. after this line.
    os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    import fsspec  # imported lazily: `trainer.flags` users never need it

    return fsspec.core.url_to_fs(uri, **(options or {}))


def read_lines(uri: str, options: dict | None = None) -> Iterator[str]:
    """Yield the lines of a text file (local or remote), without their line endings."""
    try:
        fs, path = _fs(uri, options)
        with fs.open(path, "rt", encoding="utf-8") as fh:
            for line in fh:
                yield line.rstrip("\r\n")
    except FileNotFoundError as e:
        raise StorageError(f"{uri}: no such file") from e
    except UnicodeDecodeError as e:
        raise StorageError(f"{uri}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    except (PermissionError, OSError) as e:
        raise StorageError(f"{uri}: cannot read ({type(e).__name__}: {e})") from e


def _uri(uri: str, path: str) -> str:
    """A path fsspec listed, as a URI of the same scheme as `uri`."""
    return f"{scheme(uri)}://{path}" if is_remote(uri) else path


def list_folder(uri: str, options: dict | None = None) -> list[str] | None:
    """Every file under `uri` (recursively, sorted) when it is a folder or a prefix; None when it is a
    file; StorageError when it is neither."""
    try:
        fs, path = _fs(uri, options)
        if fs.isfile(path.rstrip("/")) and not uri.endswith("/"):
            return None
        if not fs.isdir(path):
            raise StorageError(f"{uri}: no such file or folder")
        return sorted(_uri(uri, p) for p in fs.find(path.rstrip("/")))
    except FileNotFoundError as e:
        raise StorageError(f"{uri}: no such file or folder") from e
    except (PermissionError, OSError) as e:
        raise StorageError(f"{uri}: cannot read ({type(e).__name__}: {e})") from e


def open_binary(uri: str, options: dict | None = None):
    """An open binary file (a context manager) at `uri`; StorageError when it can't be opened."""
    try:
        fs, path = _fs(uri, options)
        return fs.open(path, "rb")
    except FileNotFoundError as e:
        raise StorageError(f"{uri}: no such file") from e
    except (PermissionError, OSError) as e:
        raise StorageError(f"{uri}: cannot read ({type(e).__name__}: {e})") from e


def read_text(uri: str, options: dict | None = None) -> str:
    """The whole text file at `uri`, which must be UTF-8."""
    with open_binary(uri, options) as fh:
        raw = fh.read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise StorageError(f"{uri}: not UTF-8 text ({e.reason} at byte {e.start})") from e


def join(base: str, *parts: str) -> str:
    if is_remote(base):
        return posixpath.join(base.rstrip("/"), *parts)
    return str(Path(base, *parts))


def upload_dir(
    local_dir: str | os.PathLike, dest: str, last: tuple[str, ...] = (COMPLETE_MARKER,), exclude: tuple[re.Pattern, ...] = (), options: dict | None = None
) -> int:
    """Copy a local folder to `dest` (a gs:// or s3:// prefix); files named in `last` go last, and
    top-level entries whose name matches a pattern in `exclude` are skipped.

    Returns the number of files uploaded.
    """
    local_dir = Path(local_dir)
    fs, root = _fs(dest, options)
    files = sorted(p for p in local_dir.rglob("*") if p.is_file() and not any(x.match(p.relative_to(local_dir).parts[0]) for x in exclude))
    files.sort(key=lambda p: p.name in last)  # stable: everything else first, the markers at the end
    try:
        for path in files:
            rel = path.relative_to(local_dir).as_posix()
            fs.put_file(str(path), posixpath.join(root.rstrip("/"), rel))
    except OSError as e:
        raise StorageError(f"upload to {dest} failed ({type(e).__name__}: {e})") from e
    return len(files)


def download_dir(src: str, local_dir: str | os.PathLike, skip: re.Pattern | None = None, options: dict | None = None) -> int:
    """Copy every file under `src` into `local_dir` (those whose relative path matches `skip` left
    out); returns the number of files copied."""
    fs, root = _fs(src, options)
    local_dir = Path(local_dir)
    root = root.rstrip("/")
    n = 0
    for path in fs.find(root):
        rel = path[len(root) :].lstrip("/")
        if skip is not None and skip.search(rel):
            continue
        n += 1
        target = local_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(path, str(target))
    return n


def complete_checkpoints(base: str, options: dict | None = None) -> list[tuple[int, str]]:
    """(step, uri) of every complete `checkpoint-N` folder directly under `base`, oldest first."""
    found: list[tuple[int, str]] = []
    if is_remote(base):
        fs, root = _fs(base, options)
        root = root.rstrip("/")
        try:
            entries = fs.ls(root, detail=False, refresh=True)
        except FileNotFoundError:
            return []
        proto = scheme(base)
        for entry in entries:
            name = posixpath.basename(entry.rstrip("/"))
            m = CHECKPOINT_RE.match(name)
            if m and fs.exists(posixpath.join(entry, COMPLETE_MARKER)):
                found.append((int(m.group(1)), f"{proto}://{entry.rstrip('/')}"))
    else:
        root = Path(base)
        if not root.is_dir():
            return []
        for entry in root.iterdir():
            m = CHECKPOINT_RE.match(entry.name)
            if m and entry.is_dir() and (entry / COMPLETE_MARKER).is_file():
                found.append((int(m.group(1)), str(entry)))
    return sorted(found)


def write_bytes(uri: str, payload: bytes, options: dict | None = None) -> None:
    """Write (or overwrite) one object or local file. A local file is replaced atomically (written
    beside it, then renamed), so a reader never sees half of it; an object store's PUT already is."""
    if not is_remote(uri):
        target = Path(uri)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
        partial.write_bytes(payload)
        partial.replace(target)
        return
    try:
        fs, path = _fs(uri, options)
        with fs.open(path, "wb") as fh:
            fh.write(payload)
    except OSError as e:
        raise StorageError(f"write to {uri} failed ({type(e).__name__}: {e})") from e
