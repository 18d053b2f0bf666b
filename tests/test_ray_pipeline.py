"""The Ray Data pipeline writes what the local batch writes, byte for byte, with the same records:
on a local Ray cluster started here (`ray.init(num_cpus=2)`), on a rerun, from a Dataset, through
a non-local filesystem, and after a worker is killed with -9 mid-job."""
from __future__ import annotations

import json
import os
import signal
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import face_image

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")
#: A Ray cluster of processes and about 100 s in all: `-m 'not slow'` leaves them out, CI runs them.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster of 2 CPUs for this module; its dashboard serves Ray's state API (pids)."""
    ray.init(address="local", num_cpus=2, include_dashboard=True, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Faces in nested folders, names that collide (x.png, x.jpg) and two broken inputs."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(5)
    for i in range(30):
        d = root / ("a" if i % 2 else "b/c")
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(face_image(i % 3, rng)).save(d / f"f{i:02d}.png")
    Image.fromarray(face_image(0, rng)).save(root / "a" / "x.png")
    Image.fromarray(face_image(1, rng)).save(root / "a" / "x.jpg")
    (root / "a" / "broken.png").write_text("not an image")
    (root / "b" / "empty.jpg").write_bytes(b"")
    return root


@pytest.fixture(scope="module")
def settings(tiny_classifier, tiny_generator):
    from facetune.api import ComposeSettings

    return ComposeSettings(classifier=str(tiny_classifier), generator=str(tiny_generator), png=True, seed=4)


def tree(root: Path) -> dict[str, bytes]:
    """Every file under root (dot files included: the record of failed inputs, any temporary file)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def as_set(records, out: Path, reference: Path) -> set[str]:
    """Records as comparable text, their outputs moved under the reference folder."""
    moved = [{**r, "output": r["output"].replace(str(out), str(reference), 1) if r["output"] else None} for r in records]
    return {json.dumps(r, sort_keys=True) for r in moved}


@pytest.fixture(scope="module")
def local_run(photos, settings, tmp_path_factory):
    """The local batch's tree and records: the reference."""
    from facetune.api import compose_many
    from facetune.scale.storage import list_inputs

    out = tmp_path_factory.mktemp("local") / "songs"
    records = list(compose_many(list_inputs([str(photos)]), out, settings))
    assert sum(r["status"] == "done" for r in records) == 32 and sum(r["status"] == "failed" for r in records) == 2
    return out, records


def test_ray_writes_the_local_batch_tree_and_records_and_a_rerun_skips_it(cluster, photos, settings, local_run, tmp_path):
    from facetune.scale.ray_pipeline import compose_ray

    reference, expected = local_run
    out = tmp_path / "songs"
    records = list(compose_ray([str(photos)], out, settings))
    assert len(records) == len(expected) == 34
    assert as_set(records, out, reference) == as_set(expected, reference, reference)
    assert tree(out) == tree(reference) and "a/x.png.mid" in tree(out) and "a/x.png.png" in tree(out) and ".facetune-failed.json" in tree(out)
    again = list(compose_ray([str(photos)], out, settings))
    assert [r["status"] for r in again].count("skipped") == 32
    assert all("failed before with the same content" in r["error"] for r in again if r["status"] == "failed")
    assert tree(out) == tree(reference)


def test_a_ray_dataset_of_paths_is_an_input(cluster, photos, settings, local_run, tmp_path):
    from facetune.scale.ray_pipeline import compose_ray

    reference, expected = local_run
    paths = sorted(str(p) for p in photos.rglob("*") if p.is_file())
    records = list(compose_ray(ray.data.from_items([{"path": p} for p in paths]), tmp_path / "songs", settings, root=str(photos)))
    assert {r["input"] for r in records} == set(paths)
    assert tree(tmp_path / "songs") == tree(reference)


def test_a_worker_killed_mid_job_leaves_the_same_tree(cluster, photos, settings, local_run, tmp_path):
    """kill -9 one compose actor (its pid from Ray's state API) once the first song is back: Ray
    restarts it and runs its batches again; the tree and the records are still the local batch's."""
    from ray.util.state import list_actors

    from facetune.scale.ray_pipeline import RaySettings, compose_ray

    reference, expected = local_run
    out = tmp_path / "songs"
    stream = compose_ray([str(photos)], out, replace(settings, png=True), RaySettings(batch_size=2))
    records = [next(stream)]
    [victim] = [a for a in list_actors(filters=[("state", "=", "ALIVE")]) if "ComposeStage" in a.class_name][:1]
    os.kill(victim.pid, signal.SIGKILL)
    records += list(stream)
    [after] = list_actors(filters=[("actor_id", "=", victim.actor_id)], detail=True)
    assert after.num_restarts >= 1  # it was killed while the job still needed it, and Ray restarted it
    assert len(records) == 34
    assert as_set(records, out, reference) == as_set(expected, reference, reference)
    assert tree(out) == tree(reference)


def test_songs_made_for_a_remote_folder_are_uploaded_byte_identical(photos, settings, local_run):
    """The stages run in this process against pyarrow's in-memory mock filesystem (a process's
    own), the path an s3:// or gs:// output folder takes: songs made in scratch, then uploaded."""
    from facetune.scale.ray_pipeline import ClassifyStage, ComposeStage, Destination, plan
    from facetune.scale.storage import list_inputs, open_uri

    reference, expected = local_run
    dest = Destination("mock:///bucket/songs")
    rows, _ = plan(list_inputs([str(photos)]), dest, settings)
    batch = {k: np.array([r[k] for r in rows], dtype=object) for k in rows[0]}
    classified = ClassifyStage(settings)(batch)
    out = ComposeStage(settings, dest.location)({k: np.array(v, dtype=object) for k, v in classified.items()})
    records = [json.loads(r) for r in out["record"]]
    moved = {json.dumps({**r, "output": r["output"] and r["output"].replace("mock:///bucket/songs", str(reference))}, sort_keys=True) for r in records}
    assert moved == as_set(expected, reference, reference)
    fs, root = open_uri(dest.location)
    for rel, data in tree(reference).items():
        if not rel.startswith("."):
            with fs.open_input_stream(f"{root}/{rel}") as fh:
                assert fh.read() == data, rel
    assert dest.existing(["a/x.png.mid", "a/missing.mid"]) == {"a/x.png.mid"}


def test_the_cli_composes_on_ray_and_says_how_to_get_ray_without_it(cluster, photos, tiny_classifier, tiny_generator, local_run, tmp_path, monkeypatch):
    import sys

    from click.testing import CliRunner

    from facetune.cli import main

    reference, _ = local_run
    out = tmp_path / "songs"
    args = ["compose", str(photos), "--out-dir", str(out), "--classifier", str(tiny_classifier), "--generator", str(tiny_generator), "--png", "--seed", "4"]
    result = CliRunner().invoke(main, [*args, "--format", "json", "--ray"])
    assert result.exit_code == 1  # the two broken inputs
    assert len(result.output.strip().splitlines()) == 34 and tree(out) == tree(reference)
    monkeypatch.setitem(sys.modules, "ray", None)
    result = CliRunner().invoke(main, [*args[:3], str(tmp_path / "other"), "--ray"])
    assert result.exit_code == 1 and "pip install 'facetune[ray]'" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "other").exists()


def test_two_shards_on_ray_write_the_local_batch_tree(cluster, photos, settings, local_run, tmp_path):
    from facetune.scale.ray_pipeline import compose_ray

    reference, expected = local_run
    out = tmp_path / "songs"
    records = [r for k in (1, 2) for r in compose_ray([str(photos)], out, replace(settings, shard=(k, 2)))]
    assert as_set(records, out, reference) == as_set(expected, reference, reference) and len(records) == 34
    assert {k: v for k, v in tree(out).items() if not k.startswith(".")} == {k: v for k, v in tree(reference).items() if not k.startswith(".")}


def test_actors_run_one_thread(cluster):
    """Ray gives each actor OMP_NUM_THREADS (1 for half a CPU): ONNX Runtime and BLAS run one thread."""

    @ray.remote(num_cpus=0.5)
    class Probe:
        def threads(self) -> str:
            return os.environ.get("OMP_NUM_THREADS", "")

    assert ray.get(Probe.remote().threads.remote()) == "1"
