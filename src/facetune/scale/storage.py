"""Inputs and outputs wherever pyarrow's filesystems reach: local paths, file://, s3://, gs://,
hdfs:// and abfs:// URIs, so a Ray cluster can read photos from and write songs to an object store.

Local paths are listed and named exactly as `facetune compose` lists them
(`faces.photos.iter_image_files`), so a Ray run's records are the local batch's records."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

from ..errors import InputError, OutputError

#: Filesystems where one upload is already atomic (an object appears whole or not at all): no rename needed.
OBJECT_STORES = frozenset({"s3", "gcs", "abfs"})


def is_uri(location: str) -> bool:
    """A location pyarrow must open (s3://bucket/key …); `file://` and plain paths are local."""
    return "://" in location and not location.startswith("file://")


def local_path(location: str) -> str:
    """A local location as a path: `file:///data/x` → `/data/x`, a plain path unchanged."""
    return location.removeprefix("file://") if location.startswith("file://") else location


@lru_cache(maxsize=16)
def _filesystem(root: str) -> Any:
    """The filesystem of a URI's scheme and bucket, made once per process (an S3 client is costly)."""
    from pyarrow import fs

    return fs.FileSystem.from_uri(root)[0]


def open_uri(uri: str) -> tuple[Any, str]:
    """(filesystem, path inside it) for a URI."""
    from pyarrow import fs

    from urllib.parse import urlsplit

    _, path = fs.FileSystem.from_uri(uri)
    parts = urlsplit(uri)
    return _filesystem(f"{parts.scheme}://{parts.netloc}/"), path


def list_inputs(inputs: Sequence[str]) -> list[tuple[str, str, Path]]:
    """(source, name, path relative to the input given) per image: local inputs as the CLI expands
    them (files, folders recursively, globs), URIs listed through pyarrow (a folder recursively,
    sorted; a missing one is kept, to become its own error record)."""
    from ..faces.photos import IMAGE_SUFFIXES, iter_image_files

    out: list[tuple[str, str, Path]] = []
    for item in inputs:
        if not is_uri(item):
            out += [(str(p), str(p), rel) for p, rel in iter_image_files([local_path(item)])]
            continue
        from pyarrow import fs as pafs

        fs, root = open_uri(item)
        if fs.get_file_info(root).type != pafs.FileType.Directory:
            out.append((item, item, Path(root.rstrip("/").rsplit("/", 1)[-1])))
            continue
        found = fs.get_file_info(pafs.FileSelector(root, recursive=True))
        for path in sorted(f.path for f in found if f.type == pafs.FileType.File and Path(f.path).suffix.lower() in IMAGE_SUFFIXES):
            rel = path[len(root.rstrip("/")) + 1:]
            out.append((f"{item.rstrip('/')}/{rel}", f"{item.rstrip('/')}/{rel}", Path(rel)))
    return out


def read_uri(uri: str, max_bytes: int) -> bytes:
    """The bytes of one input at a URI, refused by its size before any byte is read, as a local
    file is (`faces.photos.read_image_bytes`); any failure is an InputError naming it."""
    from pyarrow import fs as pafs

    try:
        fs, path = open_uri(uri)
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise InputError(f"{uri}: no such file")
        if info.type != pafs.FileType.File:
            raise InputError(f"{uri}: not a regular file")
        if info.size is not None and info.size > max_bytes:
            raise InputError(f"{uri}: file is {info.size:,} bytes, over the {max_bytes:,}-byte limit per input (--max-bytes raises it)")
        with fs.open_input_stream(path) as fh:
            data = fh.read(max_bytes + 1)
    except (OSError, ValueError) as exc:
        raise InputError(f"{uri}: cannot read ({exc})") from None
    if len(data) > max_bytes:
        raise InputError(f"{uri}: file is more than {max_bytes:,} bytes, over the limit per input (--max-bytes raises it)")
    return data


@dataclass(frozen=True)
class Destination:
    """The output folder: a local path (songs written in place, as the local batch writes them) or
    a URI (songs made in a local scratch folder, then uploaded, the MIDI last)."""

    location: str

    @property
    def remote(self) -> bool:
        return is_uri(self.location)

    @property
    def base(self) -> Path:
        """The folder output names are made under (`api.output_names`): the path itself when local,
        the path inside the filesystem for a URI."""
        return Path(local_path(self.location)) if not self.remote else Path(open_uri(self.location)[1])

    def name(self, rel: str) -> str:
        """What a record's `output` says: the path the local batch would print, or the URI."""
        return str(self.base / rel) if not self.remote else f"{self.location.rstrip('/')}/{rel}"

    def existing(self, rels: Sequence[str]) -> set[str]:
        """Which outputs are there already (a rerun skips their inputs)."""
        if not self.remote:
            return {r for r in rels if (self.base / r).exists() and not (self.base / r).is_dir()}
        from pyarrow import fs as pafs

        fs, root = open_uri(self.location)
        infos = fs.get_file_info([f"{root.rstrip('/')}/{r}" for r in rels]) if rels else []
        return {r for r, info in zip(rels, infos) if info.type == pafs.FileType.File}

    def read(self, rel: str) -> bytes | None:
        """A small file under the folder (the record of failed inputs), or None."""
        try:
            if not self.remote:
                return (self.base / rel).read_bytes()
            fs, root = open_uri(self.location)
            with fs.open_input_stream(f"{root.rstrip('/')}/{rel}") as fh:
                return fh.read()
        except (OSError, ValueError):
            return None

    def remove(self, rel: str) -> None:
        """Delete a file under a remote folder if it is there (a record no longer needed)."""
        fs, root = open_uri(self.location)
        try:
            fs.delete_file(f"{root.rstrip('/')}/{rel}")
        except (OSError, FileNotFoundError):
            pass

    def upload(self, files: Sequence[tuple[Path, str]]) -> None:
        """Copy local files to their places under a remote folder, in the order given (the MIDI
        last: its presence marks the song complete); a failure is an OutputError naming it."""
        fs, root = open_uri(self.location)
        for local, rel in files:
            path = f"{root.rstrip('/')}/{rel}"
            staged = path if fs.type_name in OBJECT_STORES else f"{path.rsplit('/', 1)[0]}/.{rel.rsplit('/', 1)[-1]}.upload.tmp"
            try:
                fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
                with fs.open_output_stream(staged) as fh:
                    fh.write(local.read_bytes())
                if staged != path:
                    fs.move(staged, path)
            except OSError as exc:
                raise OutputError(self.name(rel), exc) from None
