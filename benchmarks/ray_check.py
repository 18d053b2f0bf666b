"""The Ray pipeline's figures (issue 24): throughput against the local batch, Ray's fixed start-up
cost, a two-node cluster on one machine, a worker killed with -9, and per-stage timings.

    python benchmarks/ray_check.py [--crops 2000] [--repeats 3] [--only throughput two-nodes fault stages] [--one-thread]

- throughput: songs per second over --crops FER2013 test crops (../shared/data/fer2013/test),
  each run a fresh process into a fresh folder: the local batch (`compose_many`, what
  `facetune compose IN --out-dir OUT` runs), Ray with 1 worker (`ray.init(num_cpus=1)`, one actor
  per stage) and Ray with 2 workers (`num_cpus=2`, two per stage), alternated, --repeats rounds,
  medians. Per run: the whole process's wall time, the job alone (after `ray.init`), Ray's fixed
  start-up (`ray.init`, and the job's first record). Every Ray tree is compared byte for byte
  with the local batch's, records as sets.
- two-nodes: `ray start --head --num-cpus 1` plus a second raylet `ray start --address … --num-cpus 1`
  on this machine, the pipeline run against that cluster: byte-identical tree, same records,
  and on which nodes the actors ran (Ray's state API).
- fault: a local cluster of 2 CPUs; a classify actor once the first record is back and a compose
  actor after 200 records are killed with -9 (pids from Ray's state API): byte-identical tree,
  same records.
- stages: one core (a fresh process, OMP_NUM_THREADS=1), per input: reading, decoding (and detection), classifying,
  generating, writing the MIDI; and MTCNN face detection on a 512×512 photo.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FER = ROOT.parent / "shared" / "data" / "fer2013" / "test"
PHOTO = ROOT / "examples" / "photos" / "astronaut.png"
RAY = str(Path(sys.executable).parent / "ray")


def make_inputs(root: Path, n: int) -> None:
    """n crops from happy, sad and angry in turn, in nested folders."""
    lists = [sorted((FER / c).glob("*.*")) for c in ("happy", "sad", "angry")]
    crops = [p for trio in zip(*lists) for p in trio][:n]
    for i, p in enumerate(crops):
        d = root / f"set{i % 4}" / p.parent.name
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, d / p.name)


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def record_set(records: list[dict], out: Path) -> set[str]:
    return {json.dumps({**r, "output": r["output"] and r["output"].replace(str(out), "OUT", 1)}, sort_keys=True) for r in records}


def one_run(mode: str, workers: int, inp: str, out: str) -> None:
    """In a fresh process: one run, its timings and records as JSON on stdout."""
    t0 = time.perf_counter()
    from facetune import console
    from facetune.api import ComposeSettings, compose_many
    from facetune.scale.ray_pipeline import RaySettings, compose_ray, start_ray
    from facetune.scale.storage import list_inputs

    console.set_verbosity(True, False)
    if mode == "local":
        t1 = time.perf_counter()
        stream = compose_many(list_inputs([inp]), out, ComposeSettings())
    else:
        start_ray(RaySettings(address="local", num_cpus=workers))
        t1 = time.perf_counter()
        stream = compose_ray([inp], out, ComposeSettings(), RaySettings(workers=workers))
    records = [next(stream)]
    first = time.perf_counter()
    records += list(stream)
    t2 = time.perf_counter()
    print(json.dumps({"imports": t1 - t0 if mode == "local" else None, "start": t1 - t0, "first": first - t1, "job": t2 - t1, "records": records}))


def measure(mode: str, workers: int, inp: Path, out: Path, env: dict[str, str] | None = None) -> dict:
    t = time.perf_counter()
    p = subprocess.run([sys.executable, __file__, "--one", mode, str(workers), str(inp), str(out)], capture_output=True, text=True, check=True, env={**os.environ, **(env or {})})
    result = json.loads(p.stdout.strip().splitlines()[-1])
    result["wall"] = time.perf_counter() - t
    return result


def throughput(tmp: Path, n: int, repeats: int, one_thread: bool) -> None:
    """`one_thread` adds the local batch with OMP_NUM_THREADS=1 (one ONNX Runtime thread, as each
    Ray actor gets): on a machine busier than its cores, the default thread pool's spinning costs."""
    contenders = [("local", 0, "local", None), ("ray", 1, "ray1", None), ("ray", 2, "ray2", None)]
    contenders += [("local", 0, "local-1-thread", {"OMP_NUM_THREADS": "1"})] if one_thread else []
    runs: dict[str, list[dict]] = {key: [] for _, _, key, _ in contenders}
    reference = None
    for r in range(repeats):
        for mode, workers, key, env in contenders:
            out = tmp / f"{key}-{r}"
            res = measure(mode, workers, tmp / "in", out, env)
            songs, recs = tree(out), record_set(res.pop("records"), out)
            if reference is None:
                reference = (songs, recs)
            res["same"] = songs == reference[0] and recs == reference[1]
            runs[key].append(res)
            shutil.rmtree(out)
            print(f"round {r + 1} {key}: wall {res['wall']:.2f} s, job {res['job']:.2f} s, start {res['start']:.2f} s, first record {res['first']:.2f} s, byte-identical to the first local run: {res['same']}", flush=True)
    med = {k: {f: statistics.median(x[f] for x in v) for f in ("wall", "job", "start", "first")} for k, v in runs.items()}
    for k, m in med.items():
        print(f"{k}: median wall {m['wall']:.2f} s = {n / m['wall']:.1f} songs/s whole process; job {m['job']:.2f} s = {n / m['job']:.1f} songs/s; start-up {m['start']:.2f} s; first record after {m['first']:.2f} s")
    for k in [k for k in runs if k != "local"]:
        print(f"{k} / local: {med['local']['wall'] / med[k]['wall']:.2f}x whole process, {med['local']['job'] / med[k]['job']:.2f}x job alone")
    print(f"all runs byte-identical with the same records: {all(x['same'] for v in runs.values() for x in v)}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_nodes(tmp: Path, reference: Path, reference_records: set[str]) -> None:
    """A head with 1 CPU and a second raylet with 1 CPU, both `ray start --block` children of this
    script, ended by their process groups' ids when done. `ray start` makes a cluster that asks for
    a token (~/.ray/auth_token, made by Ray): the driver sends it with RAY_AUTH_MODE=token."""
    os.environ["RAY_AUTH_MODE"] = "token"
    import ray
    from ray.util.state import list_actors

    from facetune.api import ComposeSettings
    from facetune.scale.ray_pipeline import RaySettings, compose_ray

    port = free_port()
    address = f"127.0.0.1:{port}"
    temp = tempfile.mkdtemp(prefix="ft-ray-", dir="/tmp")
    common = ["--num-cpus", "1", "--block", "--disable-usage-stats"]
    procs = [subprocess.Popen([RAY, "start", "--head", "--port", str(port), "--temp-dir", temp, "--include-dashboard", "true", *common], start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        time.sleep(8)
        procs.append(subprocess.Popen([RAY, "start", "--address", address, *common], start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        ray.init(address=address, log_to_driver=False)
        while len([n for n in ray.nodes() if n["Alive"]]) < 2:
            time.sleep(0.5)
        print(f"two nodes: {[(n['NodeID'][:8], n['Resources'].get('CPU')) for n in ray.nodes() if n['Alive']]}")
        out = tmp / "two-nodes"
        t = time.perf_counter()
        records = list(compose_ray([str(tmp / "in")], out, ComposeSettings(), RaySettings(address=address)))
        took = time.perf_counter() - t
        nodes = {(a.class_name.split("(")[-1].rstrip(")"), a.node_id[:8]) for a in list_actors(filters=[("class_name", "!=", "")], limit=1000) if "Stage" in a.class_name}
        print(f"two nodes: {len(records)} records in {took:.1f} s; byte-identical tree {tree(out) == tree(reference)}; records equal {record_set(records, out) == reference_records}; actors (stage, node): {sorted(nodes)}")
        ray.shutdown()
    finally:
        for p in reversed(procs):
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=60)
        shutil.rmtree(temp, ignore_errors=True)


def fault(tmp: Path, reference: Path, reference_records: set[str]) -> None:
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=True, log_to_driver=False)
    try:
        killed_run(tmp, reference, reference_records)
    finally:
        ray.shutdown()


def killed_run(tmp: Path, reference: Path, reference_records: set[str]) -> None:
    from ray.util.state import list_actors

    from facetune.api import ComposeSettings
    from facetune.scale.ray_pipeline import RaySettings, compose_ray

    out = tmp / "fault"
    stream = compose_ray([str(tmp / "in")], out, ComposeSettings(), RaySettings(batch_size=16))
    records, killed = [], []
    for rec in stream:
        records.append(rec)
        for when, stage in ((1, "ClassifyStage"), (200, "ComposeStage")):
            alive = [a for a in list_actors(filters=[("state", "=", "ALIVE")]) if stage in a.class_name] if len(records) == when else []
            if alive:
                os.kill(alive[0].pid, signal.SIGKILL)
                killed.append((stage, alive[0].actor_id, alive[0].pid, when))
    restarts = {stage: list_actors(filters=[("actor_id", "=", aid)], detail=True)[0].num_restarts for stage, aid, _, _ in killed}
    print(f"fault: killed with -9 (stage, pid, after that many records): {[(s, pid, n) for s, _, pid, n in killed]}; restarts {restarts}; {len(records)} records; "
          f"byte-identical tree {tree(out) == tree(reference)}; records equal {record_set(records, out) == reference_records}")


def stages(tmp: Path, n: int) -> None:
    """Each stage's time per input on one core: in a fresh process with OMP_NUM_THREADS=1, so that
    ONNX Runtime and numpy's BLAS each run one thread, as in a Ray actor."""
    subprocess.run([sys.executable, __file__, "--stages", str(tmp), str(n)], check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def stages_here(tmp: Path, n: int) -> None:
    import numpy as np

    from facetune.api import ComposeSettings, content_seed, load_classifier, load_generator, write_song
    from facetune.faces.photos import find_faces, read_image_bytes, source_digest
    from facetune.music.composer import compose_emotions

    files = sorted((tmp / "in").rglob("*.*"))[:n]
    clf, gen = load_classifier(None, "cpu", "auto"), load_generator(None)
    active = clf.active(None)
    t = {}
    s = time.perf_counter()
    data = [read_image_bytes(f) for f in files]
    t["read"] = time.perf_counter() - s
    s = time.perf_counter()
    crops = [find_faces(d, size=clf.crop_size, margin=clf.face_margin)[0].crop for d in data]
    t["decode"] = time.perf_counter() - s
    s = time.perf_counter()
    probs = np.concatenate([clf.predict(np.stack(crops[i:i + 128]), active) for i in range(0, len(crops), 128)])
    t["classify"] = time.perf_counter() - s
    wanted = [(active[int(p.argmax())], content_seed(0, source_digest(d))) for p, d in zip(probs, data)]
    s = time.perf_counter()
    comps = [c for i in range(0, len(wanted), 64) for c in compose_emotions(wanted[i:i + 64], gen)]
    t["generate"] = time.perf_counter() - s
    s = time.perf_counter()
    for k, comp in enumerate(comps):
        write_song(comp, tmp / "stages" / f"{k}.mid", ComposeSettings())
    t["write"] = time.perf_counter() - s
    photo = PHOTO.read_bytes()
    s = time.perf_counter()
    for _ in range(20):
        find_faces(photo, size=clf.crop_size, margin=clf.face_margin)
    detect = (time.perf_counter() - s) / 20
    print("stages, ms per input on one core: " + ", ".join(f"{k} {1000 * v / len(files):.2f}" for k, v in t.items()) + f"; total {1000 * sum(t.values()) / len(files):.2f}")
    print(f"stages: decoding and MTCNN detection of a 512x512 photo ({PHOTO.name}): {1000 * detect:.1f} ms")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        one_run(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--stages":
        stages_here(Path(sys.argv[2]), int(sys.argv[3]))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crops", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", nargs="+", default=["throughput", "two-nodes", "fault", "stages"])
    ap.add_argument("--one-thread", action="store_true", help="Throughput: also the local batch with OMP_NUM_THREADS=1.")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_inputs(tmp / "in", args.crops)
        print(f"{args.crops} crops; load: {os.getloadavg()}", flush=True)
        if "throughput" in args.only:
            throughput(tmp, args.crops, args.repeats, args.one_thread)
        if {"two-nodes", "fault"} & set(args.only):
            res = measure("local", 0, tmp / "in", tmp / "reference")
            reference_records = record_set(res["records"], tmp / "reference")
            print(f"reference: the local batch, {len(res['records'])} records in {res['job']:.1f} s", flush=True)
            if "two-nodes" in args.only:
                two_nodes(tmp, tmp / "reference", reference_records)
            if "fault" in args.only:
                fault(tmp, tmp / "reference", reference_records)
        if "stages" in args.only:
            stages(tmp, args.crops)
        print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
