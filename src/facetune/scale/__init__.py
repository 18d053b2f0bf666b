"""Beyond one machine: batch compose on a Ray cluster (`ray_pipeline`), reading and writing
through pyarrow's filesystems (`storage`) so inputs and outputs can be object-store URIs.

Job arrays need nothing from here: `--shard K/N` (`api.shard_owns`) splits a batch by itself."""
