"""Batch compose on a Ray cluster with Ray Data: `facetune compose IN --out-dir OUT --ray [ADDRESS]`.

The driver lists the inputs and names every output exactly as the local batch does
(`api.output_names`, `api.shard_owns`), finds what exists already, then streams the rest through
two stages of actors, each loading its model once: classify (read, decode, find the face, run the
classifier) and compose (generate the songs of a batch together, write them). The stages call the
local batch's own code (`api.iter_classify`, `api._compose_chunk`), so the songs and records are
byte for byte the local batch's. Failed inputs are records, not job failures; a worker that dies
is restarted by Ray and its batch run again, rewriting the same bytes.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..api import GENERATION_BATCH, ComposeSettings
from ..errors import FacetuneError, OutputError
from .storage import Destination, is_uri, list_inputs, read_uri

#: The one line that tells a user how to get Ray.
RAY_EXTRA = "pip install 'facetune[ray]'"


@dataclass(frozen=True)
class RaySettings:
    """How the Ray run is laid out; `--ray [ADDRESS]` sets the address."""

    #: None: Ray's own rule (RAY_ADDRESS, else the cluster `ray start` made on this machine, else a
    #: new local one); "local": always a new local one; "auto": the running cluster or an error;
    #: HOST:PORT or ray://HOST:10001 for a remote one.
    address: str | None = None
    #: Actors per stage (classify, compose); None: one per CPU of the cluster.
    workers: int | None = None
    #: CPUs each actor reserves: two stages share each core, as the local batch overlaps them.
    actor_cpus: float = 0.5
    #: Inputs per Ray batch, which are also the songs generated together.
    batch_size: int = GENERATION_BATCH
    #: CPUs of a local Ray that this run starts (None: all of the machine's).
    num_cpus: int | None = None


def require_ray() -> Any:
    """Ray, or one line saying how to install it: the light install leaves it out."""
    try:
        import ray
        import ray.data  # noqa: F401  (Ray Data comes with the `data` extra of Ray)
    except ImportError:
        raise FacetuneError(f"--ray needs Ray Data, which is not installed: {RAY_EXTRA} (or pip install 'ray[data]')") from None
    return ray


def start_ray(ray_settings: RaySettings = RaySettings()) -> None:
    """Join (or start) the cluster, once per process; Ray's own progress bars show on a terminal."""
    import logging

    from .. import console

    ray = require_ray()
    if not ray.is_initialized():
        local = ray_settings.address in (None, "local")
        try:
            ray.init(address=ray_settings.address, num_cpus=ray_settings.num_cpus if local else None, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING if console.is_quiet() else logging.INFO)
        except ConnectionError as exc:
            hint = "is it running? A cluster made by `ray start` also wants its token: export RAY_AUTH_MODE=token, with the token in ~/.ray/auth_token or RAY_AUTH_TOKEN"
            raise FacetuneError(f"cannot join the Ray cluster at {ray_settings.address or 'RAY_ADDRESS'}: {str(exc).splitlines()[0]} ({hint})") from None
    ray.data.DataContext.get_current().enable_progress_bars = not console.is_quiet()


def _row_dicts(batch: dict[str, Any]) -> list[dict[str, Any]]:
    """A Ray batch (column → array) as a list of rows of plain Python values."""
    cols = {k: list(v) for k, v in batch.items()}
    n = len(next(iter(cols.values()))) if cols else 0
    return [{k: (v[i].item() if hasattr(v[i], "item") else v[i]) for k, v in cols.items()} for i in range(n)]


def _columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    return {k: [r[k] for r in rows] for k in rows[0]} if rows else {}


def _digest(row: dict[str, Any], settings: ComposeSettings) -> str | None:
    """An input's fingerprint (its song seed comes from it), read but not decoded; None when it
    cannot be read."""
    from ..errors import InputError
    from ..faces.photos import read_source, source_digest

    try:
        data = read_uri(row["source"], settings.max_bytes) if is_uri(row["source"]) else read_source(row["source"], settings.max_bytes, row["name"])[0]
    except InputError:
        return None
    return source_digest(data)


class ClassifyStage:
    """Read, decode, find the face and classify, for a batch of inputs; the classifier is loaded
    once, when the actor starts. Inputs to skip (their MIDI exists) and inputs that failed before
    with the same content are read and hashed, never decoded."""

    def __init__(self, settings: ComposeSettings) -> None:
        from ..api import load_classifier

        self.settings = settings
        load_classifier(settings.classifier, settings.device, "auto")  # the very call (and cache key) of iter_classify

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        from ..api import compose_record, content_seed, iter_classify

        rows = _row_dicts(batch)
        todo = []
        for row in rows:
            digest = _digest(row, self.settings) if row["skip"] or row["old"] else None
            seed = content_seed(self.settings.seed, digest) if digest else None
            row["record"], row["face"] = "", ""
            if row["skip"]:
                row["record"] = json.dumps(compose_record(input=row["name"], output=row["output"], seed=seed, status="skipped"))
            elif row["old"] and digest == json.loads(row["old"]).get("content"):
                error = f"{row['name']}: {json.loads(row['old'])['error']} (failed before with the same content; --retry-failed tries again)"
                row["record"] = json.dumps(compose_record(input=row["name"], seed=seed, error=error, status="failed"))
            else:
                todo.append(row)
        ready, sources = self._sources(todo)
        s = self.settings
        for i, faces in iter_classify(sources, classifier=s.classifier, classes=s.classes, detect=s.detect, batch_size=s.batch_size, device=s.device, names=[r["name"] for r in ready], max_bytes=s.max_bytes):
            face = faces[0]
            if face.error and face.error.startswith("bytes: "):  # decoded from a URI's bytes: say which
                face.error = f"{ready[i]['name']}: {face.error.removeprefix('bytes: ')}"
            ready[i]["face"] = json.dumps(asdict(face))
        return _columns(rows)

    def _sources(self, todo: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Any]]:
        """What to decode: a local input's path (read as the local batch reads it), a URI's bytes;
        a URI that cannot be read is its error record here."""
        from ..api import FaceEmotion
        from ..errors import InputError

        ready, sources = [], []
        for row in todo:
            source = row["source"]
            if is_uri(source):
                try:
                    source = read_uri(source, self.settings.max_bytes)
                except InputError as exc:
                    row["face"] = json.dumps(asdict(FaceEmotion(row["name"], None, None, {}, None, str(exc))))
                    continue
            ready.append(row)
            sources.append(source)
        return ready, sources


class ComposeStage:
    """Generate the songs of a batch of classified inputs together and write them, with the local
    batch's own code (`api._compose_chunk`); the generator is loaded once, when the actor starts.
    Writes replace: after a retry, a song the lost attempt wrote is written again, the same bytes."""

    def __init__(self, settings: ComposeSettings, out_dir: str) -> None:
        from ..api import load_generator

        self.settings = replace(settings, force=True)
        self.dest = Destination(out_dir)
        load_generator(settings.generator)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        import tempfile

        rows = _row_dicts(batch)
        out = [_result(r) for r in rows if r["record"]]
        todo = [r for r in rows if not r["record"]]
        if not todo:
            return _columns(out)
        if not self.dest.remote:
            return _columns(out + self._compose(todo, self.dest.base))
        with tempfile.TemporaryDirectory(prefix="facetune-ray-") as scratch:
            return _columns(out + self._compose(todo, Path(scratch)))

    def _compose(self, todo: list[dict[str, Any]], base: Path) -> list[dict[str, Any]]:
        """The songs of `todo` written under `base` (the output folder, or a scratch folder whose
        files are uploaded); a failure that dooms the rest (a full disk) fails the batch's rest."""
        from ..api import FaceEmotion, _compose_chunk, compose_record

        chunk = [((r["source"], r["name"], Path(r["rel"]), base / r["rel"]), FaceEmotion(**json.loads(r["face"]))) for r in todo]
        results: list[dict[str, Any]] = []
        try:
            for rec, face, target in _compose_chunk(chunk, base, self.settings):
                row = todo[len(results)]
                if self.dest.remote and rec["status"] == "done":
                    self._upload(target, row, rec)
                rec["output"] = row["output"] if rec["output"] else None
                results.append(_result(row, rec, face))
        except OutputError as exc:
            for row in todo[len(results):]:
                results.append(_result(row, compose_record(input=row["name"], error=f"{row['name']}: not composed: {exc}", status="failed"), None, str(exc)))
        return results

    def _upload(self, target: Path, row: dict[str, Any], rec: dict[str, Any]) -> None:
        """A song made in the scratch folder → its remote place, extras first and the MIDI last."""
        from ..api import extra_outputs

        rel = Path(row["rel"])
        files = [(extra, rel.with_suffix(extra.suffix).as_posix()) for extra in extra_outputs(target, self.settings)]
        try:
            self.dest.upload(files + [(target, row["rel"])])
        except OutputError as exc:
            rec.update(status="failed", error=str(exc), **{k: None for k in ("face", "emotion", "quadrant", "key", "chords", "tempo", "bars", "form")}, probabilities={})


def _result(row: dict[str, Any], rec: dict[str, Any] | None = None, face: Any = None, fatal: str = "") -> dict[str, Any]:
    """One output row: the record (JSON), and how it changes the record of failed inputs: `set` it
    (an input that failed to read, with its content), `pop` it (one that now worked), or `keep`."""
    rec = rec if rec is not None else json.loads(row["record"])
    op, entry = "keep", ""
    if rec["status"] == "skipped" or (face is not None and not face.error):
        op = "pop"
    elif face is not None and face.error and face.content:
        op, entry = "set", json.dumps({"content": face.content, "error": face.error.removeprefix(f"{face.input}: ")})
    return {"record": json.dumps(rec), "key": row["rel"], "failure_op": op, "failure": entry, "fatal": fatal}


def dataset_items(dataset: Any, root: str | None = None) -> list[tuple[str, str, Path]]:
    """(source, name, relative path) from a `ray.data.Dataset` with a `path` column of local paths
    or URIs (say `ray.data.from_items([{"path": uri} ...])`): each path relative to `root`, by
    default to the folder all of them share."""
    import posixpath

    paths = [str(r["path"]) for r in dataset.select_columns(["path"]).iter_rows()]
    if not paths:
        return []
    root = root if root is not None else posixpath.commonpath([posixpath.dirname(p) for p in paths]) if len(paths) > 1 else posixpath.dirname(paths[0])
    return [(p, p, Path(posixpath.relpath(p, root) if root else p)) for p in paths]


def plan(items: Sequence[tuple[str, str, Path]], dest: Destination, settings: ComposeSettings) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One row per input this run (or shard) owns, named as the local batch names it, marked to
    skip when its MIDI exists and carrying its earlier failure when that may still hold; and the
    record of failed inputs. Refuses clashing names before any work, as the local batch does."""
    from ..api import _check_out_dir, _reading_settings, _remove_stale_temporaries, extra_outputs, failures_file, output_names, shard_owns

    base = dest.base
    targets = output_names(items, base, settings)
    own = [k for k, (_, _, rel) in enumerate(items) if shard_owns(rel, settings.shard)]
    record = failures_file(base, settings.shard)
    if not dest.remote:
        _check_out_dir(base)
        _remove_stale_temporaries(base, {record} | {p for k in own for p in (targets[k], *extra_outputs(targets[k], settings))})
    rels = [targets[k].relative_to(base).as_posix() for k in own]
    exist = set() if settings.force else dest.existing(rels)
    failures = _parse_failures(dest.read(record.name))
    reading = _reading_settings(settings)
    rows = []
    for k, rel in zip(own, rels):
        old = failures.get(rel)
        usable = old and not settings.retry_failed and rel not in exist and old.get("settings") == reading
        rows.append({"source": str(items[k][0]), "name": items[k][1], "rel": rel, "output": dest.name(rel), "skip": rel in exist, "old": json.dumps(old) if usable else ""})
    return rows, failures


def _parse_failures(data: bytes | None) -> dict[str, Any]:
    try:
        failed = json.loads(data or b"{}").get("failed")
    except (ValueError, AttributeError):
        return {}
    return dict(failed) if isinstance(failed, dict) else {}


def build_dataset(rows: list[dict[str, Any]], out_dir: str, settings: ComposeSettings, ray_settings: RaySettings) -> Any:
    """The Ray Data pipeline: rows → classify actors → compose actors → one output row per input."""
    ray = require_ray()
    workers = ray_settings.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    size = max(1, min(ray_settings.batch_size, -(-len(rows) // workers)))  # a small job still reaches every worker
    stage = {"batch_size": size, "compute": ray.data.ActorPoolStrategy(size=workers), "num_cpus": ray_settings.actor_cpus}
    ds = ray.data.from_items(rows, override_num_blocks=-(-len(rows) // size))
    ds = ds.map_batches(ClassifyStage, fn_constructor_kwargs={"settings": settings}, **stage)
    return ds.map_batches(ComposeStage, fn_constructor_kwargs={"settings": settings, "out_dir": out_dir}, **stage)


def compose_ray(inputs: Sequence[str] | Any, out_dir: str | Path, settings: ComposeSettings = ComposeSettings(), ray_settings: RaySettings = RaySettings(), *, root: str | None = None) -> Iterator[dict[str, Any]]:
    """`compose_many` on a Ray cluster: the same files and the same records (in the order they
    finish). `inputs` are local paths or URIs (files, folders, globs), the (source, name, relative
    path) items `compose_many` takes (`storage.list_inputs` makes them), or a `ray.data.Dataset`
    with a `path` column (relative paths taken from `root`); `out_dir` is a path or a URI.
    Inputs whose MIDI exists are skipped, failed inputs are records, and a failure that dooms the
    rest (a full disk) raises OutputError once every record is out."""
    from ..api import _check_soundfont, check_seed

    require_ray()
    _check_soundfont(settings)
    check_seed(settings.seed)
    if not isinstance(inputs, (list, tuple)):
        items = dataset_items(inputs, root)
    else:
        items = [i for i in inputs if isinstance(i, tuple)] or list_inputs([str(i) for i in inputs])
    dest = Destination(str(out_dir))
    rows, failures = plan(items, dest, settings)
    if not rows:
        return
    start_ray(ray_settings)
    fatal = ""
    try:
        for batch in build_dataset(rows, dest.location, settings, ray_settings).iter_batches(batch_size=None, batch_format="numpy"):
            for row in _row_dicts(batch):
                _note_failure(failures, row, settings)
                fatal = fatal or row["fatal"]
                yield json.loads(row["record"])
    finally:
        _finish(dest, failures, rows, settings)
    if fatal:
        raise _stopped(fatal)


def _note_failure(failures: dict[str, Any], row: dict[str, Any], settings: ComposeSettings) -> None:
    """Keep the record of failed inputs as the local batch keeps it (`api._compose_todo`)."""
    from ..api import _reading_settings

    if row["failure_op"] == "pop":
        failures.pop(row["key"], None)
    elif row["failure_op"] == "set":
        entry = json.loads(row["failure"])
        failures[row["key"]] = {"content": entry["content"], "settings": _reading_settings(settings), "error": entry["error"]}


def _finish(dest: Destination, failures: dict[str, Any], rows: list[dict[str, Any]], settings: ComposeSettings) -> None:
    """Save the record of failed inputs, and (in a local folder) remove the temporary files of
    writes that a killed worker left behind: the tree ends as an uninterrupted run's."""
    import tempfile

    from ..api import _remove_stale_temporaries, _save_failures, extra_outputs, failures_file

    record = failures_file(dest.base, settings.shard)
    if not dest.remote:
        _save_failures(record, failures)
        _remove_stale_temporaries(dest.base, {p for r in rows for t in [dest.base / r["rel"]] for p in (t, *extra_outputs(t, settings))})
        return
    with tempfile.TemporaryDirectory(prefix="facetune-ray-") as scratch:
        _save_failures(Path(scratch) / record.name, failures)
        if (Path(scratch) / record.name).exists():
            dest.upload([(Path(scratch) / record.name, record.name)])
        else:
            dest.remove(record.name)


def _stopped(message: str) -> OutputError:
    """The OutputError that ends the run, saying what a worker hit (its own message, one line)."""
    exc = OutputError(message)
    exc.args = (message,)
    return exc
