#!/usr/bin/env bash
# Compose a song for every photo under a folder, then summarise the run from facetune's JSON Lines.
#   bash examples/batch.sh PHOTOS_DIR SONGS_DIR
# Exit code: facetune's own (0 all ok, 1 some inputs failed, 2 usage error).
set -uo pipefail
photos=${1:-examples/photos}
songs=${2:-songs}
log=$(mktemp)
facetune --quiet compose "$photos" --out-dir "$songs" --format json --seed 42 >"$log"
status=$?
python3 - "$log" <<'PY'
import collections, json, sys
records = [json.loads(line) for line in open(sys.argv[1])]
status = collections.Counter(r["status"] for r in records)
emotions = collections.Counter(r["emotion"] for r in records if r["status"] == "done")
print(f"done {status['done']}, skipped {status['skipped']}, failed {status['failed']}")
for emotion, n in emotions.most_common():
    print(f"  {emotion:8s} {n}")
for r in records:
    if r["error"]:
        print(f"  failed: {r['error']}")
PY
rm -f "$log"
exit $status
