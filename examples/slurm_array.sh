#!/bin/bash
# A SLURM job array: every task composes its shard of the photos into one shared output folder.
#   sbatch --array=1-8 examples/slurm_array.sh /shared/photos /shared/songs
# Each input belongs to exactly one shard (a stable hash of its relative path), so the eight tasks
# together write exactly what one `facetune compose PHOTOS --out-dir SONGS` would, and a task that
# is requeued or rerun skips the songs it already wrote. A task exits 1 when some of its inputs
# failed (its JSON records say which and why); reruns do not retry those unless --retry-failed.
#SBATCH --job-name=facetune
#SBATCH --cpus-per-task=2
#SBATCH --mem=2G
#SBATCH --output=facetune-%A_%a.log
set -uo pipefail
photos=${1:?photos folder}
songs=${2:?output folder}
n=${SLURM_ARRAY_TASK_COUNT:-$((SLURM_ARRAY_TASK_MAX - SLURM_ARRAY_TASK_MIN + 1))}
k=$((SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN + 1))
mkdir -p "$songs"
facetune compose "$photos" --out-dir "$songs" --shard "$k/$n" --format json > "$songs/.records-$k-of-$n.jsonl"
