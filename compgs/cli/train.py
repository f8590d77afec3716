"""`compgs train --data DIR [--method 3dgs] [...]`: the ns-train of this project.

`--method NAME` picks a preset (compgs/methods.py); every TrainConfig field can
then be overridden by its flag. `--resume RUN_DIR` continues a run with its
stored config.yml (flags given with it override the stored values).
"""

from __future__ import annotations

from pathlib import Path

# The and the paper's spelling of nested flags.
_CLI_ALIASES = {"--codebook-from": "--compgs.codebook-from"}


def _port(text: str) -> int:
    from compgs.errors import InputError, check_port

    try:
        port = int(text)
    except ValueError:
        raise InputError(f"--viewer-port {text!r}: expected a port number") from None
    return check_port(port, "--viewer-port")


def _pop_option(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            value = argv[i + 1]
            del argv[i : i + 2]
            return value
        if arg.startswith(name + "="):
            del argv[i]
            return arg.split("=", 1)[1]
    return None


def train(argv: list[str]) -> None:
    from compgs.cli.main import parse
    from compgs.errors import InputError
    from compgs.methods import METHODS, get_method
    from compgs.train.config import TrainConfig, load_yaml
    from compgs.train.run import train as run_training
    from compgs.train.rundir import find_run
    from compgs.train.trainer import resolve_device

    argv = list(argv)
    if "-h" in argv or "--help" in argv:
        print(
            "methods: " + ", ".join(f"{name} ({summary})" for name, (summary, _) in METHODS.items())
        )
    resume = _pop_option(argv, "--resume")
    method = _pop_option(argv, "--method")
    viewer = "--viewer" in argv
    argv = [arg for arg in argv if arg != "--viewer"]
    viewer_port = _port(_pop_option(argv, "--viewer-port") or "8080")
    argv = [_CLI_ALIASES.get(arg, arg) for arg in argv]
    if resume is not None:
        run_dir, _ = find_run(Path(resume))
        default = load_yaml(TrainConfig, run_dir / "config.yml")
        if method and method != default.method:
            raise InputError(f"{run_dir} was trained with {default.method!r}, not {method!r}")
    else:
        default = get_method(method or "3dgs")
    config = parse(TrainConfig, argv, "compgs train", default=default)
    resolve_device(config.device)  # before minutes of scene loading
    source = config.compgs.codebook_from
    if source is not None and not config.compgs.quantize:
        raise InputError(f"--codebook-from needs a CompGS method, not {config.method!r}")
    if source is not None and not Path(source).exists():
        raise InputError(f"--codebook-from {source}: no such run folder or file")
    if resume is None and not Path(config.data).is_dir():
        raise InputError(f"{config.data}: no such scene folder (pass --data DIR)")
    hooks = []
    if viewer:  # the live view (compgs.view.live): a viser server, as a trainer hook
        from compgs.view.live import LiveView

        hooks.append(LiveView(port=viewer_port))  # logs its URL
    try:
        run_dir = run_training(config, resume=Path(resume) if resume else None, extra_hooks=hooks)
    finally:
        for hook in hooks:
            hook.close()
    import json

    from compgs.eval.report import print_metrics

    metrics = json.loads((run_dir / "metrics.json").read_text())
    print_metrics(metrics, f"{config.method} on {Path(config.data).name}: {run_dir}")


train.raw_argv = True  # parses its own flags (method presets first, then overrides)
