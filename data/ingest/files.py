"""Durable writes and listings on a local path or any pyarrow filesystem."""

from __future__ import annotations

import os
import uuid

import orjson
import pyarrow.fs as pafs


def is_local(fs: pafs.FileSystem) -> bool:
    return isinstance(fs, pafs.LocalFileSystem)


def fsync_path(fs: pafs.FileSystem, path: str) -> None:
    """Flush a local file (or directory) to disk; object stores are durable on close."""
    if not is_local(fs):
        return
    flags = os.O_RDONLY | (os.O_DIRECTORY if os.path.isdir(path) else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes_atomic(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    """Write to a temporary name, make it durable, then rename over ``path``."""
    parent = path.rsplit("/", 1)[0]
    fs.create_dir(parent, recursive=True)
    if not is_local(fs):  # an object PUT is atomic already
        with fs.open_output_stream(path) as out:
            out.write(data)
        return
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    with open(tmp, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    fsync_path(fs, parent)


def read_json(fs: pafs.FileSystem, path: str) -> dict | None:
    info = fs.get_file_info(path)
    if info.type != pafs.FileType.File:
        return None
    with fs.open_input_stream(path) as f:
        return orjson.loads(f.read())


def list_files(fs: pafs.FileSystem, base: str) -> list[str]:
    if fs.get_file_info(base).type == pafs.FileType.NotFound:
        return []
    infos = fs.get_file_info(pafs.FileSelector(base, recursive=True))
    return sorted(i.path for i in infos if i.type == pafs.FileType.File)


def uri_join(root: str, base: str, path: str) -> str:
    """The URI of ``path`` (inside ``root``'s filesystem) for workers to resolve again."""
    scheme = root.split("://", 1)[0]
    return f"{scheme}://{path}"
