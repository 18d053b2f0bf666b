"""Inputs and outputs through pyarrow's filesystems, checked on its in-memory mock filesystem
(`mock://`, one per process), which takes the path an s3:// or gs:// URI takes."""
from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("pyarrow")

from facetune.errors import InputError  # noqa: E402
from facetune.scale.storage import Destination, is_uri, list_inputs, local_path, open_uri, read_uri  # noqa: E402


def put(uri: str, data: bytes) -> None:
    fs, path = open_uri(uri)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as fh:
        fh.write(data)


def test_local_paths_and_file_uris_are_local():
    assert is_uri("s3://bucket/x") and is_uri("mock:///x")
    assert not is_uri("photos/x.png") and not is_uri("file:///data/x.png")
    assert local_path("file:///data/x.png") == "/data/x.png" and local_path("photos") == "photos"


def test_a_uri_folder_is_listed_recursively_and_sorted_with_paths_relative_to_it():
    for name in ("b/2.png", "a/1.JPG", "a/notes.txt", "c.webp"):
        put(f"mock:///listing/{name}", b"x")
    items = list_inputs(["mock:///listing", "mock:///listing/c.webp", "mock:///listing/missing.png"])
    assert [(s, n, r.as_posix()) for s, n, r in items] == [
        ("mock:///listing/a/1.JPG", "mock:///listing/a/1.JPG", "a/1.JPG"),
        ("mock:///listing/b/2.png", "mock:///listing/b/2.png", "b/2.png"),
        ("mock:///listing/c.webp", "mock:///listing/c.webp", "c.webp"),
        ("mock:///listing/c.webp", "mock:///listing/c.webp", "c.webp"),
        ("mock:///listing/missing.png", "mock:///listing/missing.png", "missing.png"),
    ]


def test_local_inputs_are_listed_as_the_cli_lists_them(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.png").write_bytes(b"x")
    (tmp_path / "y.txt").write_bytes(b"y")
    assert list_inputs([str(tmp_path)]) == [(str(tmp_path / "d" / "x.png"), str(tmp_path / "d" / "x.png"), Path("d/x.png"))]


def test_reading_a_uri_names_it_and_refuses_what_is_too_big_or_not_a_file():
    put("mock:///reading/a.png", b"12345")
    assert read_uri("mock:///reading/a.png", 5) == b"12345"
    for uri, limit, said in (("mock:///reading/a.png", 4, "5 bytes, over the 4-byte limit"), ("mock:///reading/none.png", 9, "no such file"), ("mock:///reading", 9, "not a regular file")):
        with pytest.raises(InputError, match=said) as exc:
            read_uri(uri, limit)
        assert str(exc.value).startswith(f"{uri}: ")


def test_a_remote_destination_uploads_finds_reads_and_removes(tmp_path):
    dest = Destination("mock:///bucket/songs")
    assert dest.remote and dest.base == Path("bucket/songs") and dest.name("a/x.mid") == "mock:///bucket/songs/a/x.mid"
    (tmp_path / "x.png").write_bytes(b"picture")
    (tmp_path / "x.mid").write_bytes(b"MThd")
    dest.upload([(tmp_path / "x.png", "a/x.png"), (tmp_path / "x.mid", "a/x.mid")])
    assert dest.existing(["a/x.mid", "a/x.png", "a/y.mid"]) == {"a/x.mid", "a/x.png"}
    assert dest.read("a/x.mid") == b"MThd" and dest.read("nothing.json") is None
    dest.remove("a/x.png")
    dest.remove("a/never-there.png")
    assert dest.existing(["a/x.png"]) == set()


def test_a_local_destination_is_the_folder_itself(tmp_path):
    dest = Destination(str(tmp_path / "songs"))
    assert not dest.remote and dest.base == tmp_path / "songs" and dest.name("a/x.mid") == str(tmp_path / "songs" / "a" / "x.mid")
    (tmp_path / "songs" / "a").mkdir(parents=True)
    (tmp_path / "songs" / "a" / "x.mid").write_bytes(b"MThd")
    (tmp_path / "songs" / "a" / "dir.mid").mkdir()
    assert dest.existing(["a/x.mid", "a/dir.mid", "a/y.mid"]) == {"a/x.mid"}
