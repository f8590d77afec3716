"""`compgs <command> ...`: dispatch to one command module, turn errors into one line.

Commands are registered by dotted path so that `compgs info` does not import
the trainer; each command is a typed function that tyro turns into flags.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import io
import logging
import sys
from collections.abc import Sequence

# name -> (module:function, one-line summary shown by `compgs --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("compgs.cli.info:info", "describe a splat file (.ply .splat .spz .cgs)"),
    "convert": ("compgs.cli.convert:convert", "convert between splat formats"),
    "compress": ("compgs.cli.compress:compress", "post-training k-means compression to .cgs"),
    "decompress": ("compgs.cli.compress:decompress", "expand a .cgs file to .ply/.splat/.spz"),
    "train": ("compgs.cli.train:train", "train 3DGS / CompGS on a scene folder (--method, --data)"),
    "eval": ("compgs.cli.eval:eval_run", "evaluate a training run (PSNR, SSIM, LPIPS, size, FPS)"),
    "compare": ("compgs.cli.compare:compare", "paper-style table + rate-distortion plot of runs"),
    "demo": ("compgs.cli.demo:demo", "run the main job on the embedded default scene"),
    "generate-scene": ("compgs.cli.generate_scene:generate_scene", "write the default scene"),
    "scene-info": ("compgs.cli.scene_info:scene_info", "describe a scene folder"),
    "compress-model": ("compgs.cli.compress_model:compress_model", "k-means codebooks for a CNN"),
    "view": ("compgs.cli.view:view", "open a splat file in the browser viewer (on localhost)"),
    "export": ("compgs.cli.export:export", "write a static web viewer folder for a scene"),
    "batch": (
        "compgs.cli.batch:batch",
        "train + compress + evaluate a scene collection (local/Ray)",
    ),
    "prepare": ("compgs.cli.prepare:prepare", "raw capture -> scene folder (prepare arkit ...)"),
    "datasets": ("compgs.cli.datasets:datasets", "scene lists: ARKit-200, DL3DV-140"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: compgs <command> [options]   (compgs <command> --help for its options)", ""]
    lines += [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
    return "\n".join(lines)


def _setup_logging() -> None:
    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(show_path=False, show_time=False, markup=False)],
    )


def _fail(message: str, code: int = 1) -> None:
    print(f"compgs: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def run(argv: Sequence[str]) -> object:
    """Run one command in-process (tests call this); errors propagate."""
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        if not argv:
            raise SystemExit(2)
        return None
    if argv[0] in ("-V", "--version"):
        from compgs import __version__

        print(f"compgs {__version__}")
        return None
    name = argv[0]
    if name not in COMMANDS:
        _fail(f"unknown command {name!r}; known commands: {', '.join(COMMANDS)}", 2)
    module_name, func_name = COMMANDS[name][0].split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    if getattr(func, "raw_argv", False):  # commands that build their own parser
        return func(list(argv[1:]))
    return parse(func, list(argv[1:]), f"compgs {name}")


def parse(target, args: list[str], prog: str, default=None):
    """tyro.cli with bad-flag reports turned into one line and exit code 2."""
    import tyro

    # tyro reports bad flags in a multi-line box on stderr; keep its words, one line.
    captured = io.StringIO()
    kwargs = {"default": default} if default is not None else {}
    # A command function runs after parsing, outside the redirect: its own warnings and
    # errors must reach the user, and its SystemExit is not a bad flag.
    command = inspect.isfunction(target)
    parse_only = _recorder(target) if command else target
    try:
        with contextlib.redirect_stderr(captured):
            parsed = tyro.cli(parse_only, args=args, prog=prog, **kwargs)
    except SystemExit as e:
        if e.code not in (0, None):
            _fail(f"{prog}: {_one_line(captured.getvalue())}", 2)
        raise
    if not command:
        return parsed
    call_args, call_kwargs = parsed
    return target(*call_args, **call_kwargs)


def _recorder(func):
    """A stand-in with ``func``'s signature and docs that returns its arguments."""

    @functools.wraps(func)
    def record(*args, **kwargs):
        return args, kwargs

    return record


def _one_line(box: str) -> str:
    """The words of tyro's error box, without its frame and help pointer."""
    words = []
    for line in box.splitlines():
        text = line.strip().strip("│╭╮╰╯─ ").strip()
        if text and not text.startswith("For full helptext") and not set(text) <= set("─"):
            if words and text.startswith(words[-1]):  # tyro repeats a box's title in its body
                words.pop()
            words.append(text)
    return " ".join(words) or "bad arguments (see --help)"


def main(argv: Sequence[str] | None = None) -> None:
    from compgs.errors import CompgsError

    argv = sys.argv[1:] if argv is None else list(argv)
    _setup_logging()
    try:
        run(argv)
    except CompgsError as e:
        _fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as e:
        _fail(f"{e.filename or ''}: {e.strerror or e}".lstrip(": "))


if __name__ == "__main__":
    main()
