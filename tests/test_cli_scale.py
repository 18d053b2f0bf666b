"""`compose --ray` and URI output folders: usage errors before anything runs (exit 2), and the one
line that says how to get Ray (exit 1). The Ray runs themselves are in test_ray_pipeline.py."""
from __future__ import annotations

import sys

from click.testing import CliRunner

from facetune.cli import main


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def test_ray_needs_an_output_folder_and_paths(tmp_path):
    result = invoke("compose", str(tmp_path), "--ray")
    assert result.exit_code == 2 and "--ray composes a batch: give --out-dir DIR" in result.output
    result = invoke("compose", "-", "--out-dir", str(tmp_path / "o"), "--ray")
    assert result.exit_code == 2 and "not from stdin" in result.output


def test_a_uri_output_folder_needs_ray(tmp_path):
    result = invoke("compose", str(tmp_path), "--out-dir", "s3://bucket/songs")
    assert result.exit_code == 2 and "writing to one needs --ray" in result.output


def test_an_out_dir_that_is_a_file_is_still_a_usage_error(tmp_path):
    (tmp_path / "f").write_text("x")
    result = invoke("compose", str(tmp_path), "--out-dir", str(tmp_path / "f"))
    assert result.exit_code == 2 and "is a file; --out-dir names a folder" in result.output


def test_without_ray_one_line_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    result = invoke("compose", str(tmp_path), "--out-dir", str(tmp_path / "o"), "--ray")
    assert result.exit_code == 1 and "pip install 'facetune[ray]'" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_ray_alone_or_with_an_address(tmp_path, monkeypatch):
    """`--ray` last takes no value (Ray's own rule: address None); `--ray=ADDRESS` names one."""
    seen = []
    monkeypatch.setattr("facetune.scale.ray_pipeline.require_ray", lambda: None)
    monkeypatch.setattr("facetune.scale.ray_pipeline.compose_ray", lambda items, out, settings, rs: seen.append((len(items), rs.address)) or iter(()))
    (tmp_path / "a.png").write_bytes(b"x")
    for flag in ("--ray=10.0.0.1:6379", "--ray"):
        assert invoke("compose", str(tmp_path), "--out-dir", str(tmp_path / "o"), flag).exit_code == 0
    assert seen == [(1, "10.0.0.1:6379"), (1, None)]
