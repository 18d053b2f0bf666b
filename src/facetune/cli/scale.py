"""Where a batch runs: here, or on a Ray cluster with `--ray [ADDRESS]`, whose inputs and
`--out-dir` may be URIs that pyarrow's filesystems open (s3://, gs://, hdfs://)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import click

from ..errors import FacetuneError
from .common import expand_inputs, no_images, own_inputs, usage_check


def _parse_out_dir(value: str) -> Any:
    """--out-dir: a folder (not a file), or a URI for --ray (kept as text: a Path would fold its //)."""
    if "://" in value and not value.startswith("file://"):
        return value
    if Path(value).exists() and not Path(value).is_dir():
        raise ValueError(f"{value} is a file; --out-dir names a folder")
    return Path(value.removeprefix("file://"))


#: --out-dir: a folder (a Path), or a URI kept as text.
check_out_dir = usage_check(_parse_out_dir)
RAY_OPTION = click.option("--ray", "ray_address", is_flag=False, flag_value="", default=None, metavar="[ADDRESS]", help="Compose on a Ray cluster with Ray Data (pip install 'facetune[ray]'). Alone (put it last): RAY_ADDRESS, else the cluster `ray start` made on this machine, else a new local one; --ray=auto, --ray=HOST:6379 or --ray=ray://HOST:10001 name one. Inputs and --out-dir may then be URIs (s3://, gs://, hdfs://).")


def check_ray(ray_address: str | None, inputs: tuple[str, ...], out_dir: Any) -> None:
    """--ray composes a batch read by path or URI; a URI --out-dir needs --ray. Usage errors (exit 2)."""
    if ray_address is None:
        if isinstance(out_dir, str):
            raise click.BadParameter(f"{out_dir} is a URI: writing to one needs --ray", param_hint="'--out-dir'")
        return
    if out_dir is None:
        raise click.UsageError("--ray composes a batch: give --out-dir DIR")
    if "-" in inputs:
        raise click.UsageError("--ray reads inputs by path or URI, not from stdin (-)")


def batch_records(inputs: tuple[str, ...], out_dir: Any, settings: Any, ray_address: str | None, on_read: Callable[[str, str | None], None]) -> tuple[int, Any]:
    """How many inputs a batch has, and its records as they come: composed here
    (`api.compose_many`) or on a Ray cluster (`scale.ray_pipeline.compose_ray`)."""
    if ray_address is None:
        from ..api import compose_many

        items = expand_inputs(inputs, settings.max_bytes)
        own_inputs(items, settings.shard)  # says how many this shard owns; compose_many names every output from all of them
        return len(items), compose_many(items, out_dir, settings, on_read=on_read)
    from ..scale.ray_pipeline import RaySettings, compose_ray, require_ray
    from ..scale.storage import list_inputs

    require_ray()
    items = list_inputs(list(inputs))
    if not items:
        raise FacetuneError(no_images(inputs))
    own_inputs(items, settings.shard)
    return len(items), compose_ray(items, str(out_dir), settings, RaySettings(address=ray_address or None))
