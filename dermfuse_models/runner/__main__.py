"""``python -m dermfuse_models.runner <command> [args]``: every dermfuse command in one place."""

from __future__ import annotations

import difflib
import importlib
import sys

#: command -> (module, what it does); LightningCLI subcommands go to the CLI with their name
COMMANDS = {
    "fit": ("cli", "train (LightningCLI: --config ... --key=value)"),
    "validate": ("cli", "validate a checkpoint (LightningCLI)"),
    "test": ("cli", "test a checkpoint (LightningCLI)"),
    "predict": (
        "predict",
        "--ckpt C --input FOLDER [--meta CSV]: class probabilities / masks of new images "
        "(with --config: LightningCLI's predict)",
    ),
    "two-stage": ("two_stage", "DualNet: predict masks with the stage-1 segmenter once, then fit stage 2"),
    "sweep": ("sweep", "a paper's ablations (experiments/<paper>/sweep.yaml)"),
    "report": ("report", "runs/report.md: papers' numbers beside ours (mean +- s.d. over seeds, 95% CI)"),
    "profile": ("profile", "parameters, GMACs and GFLOPs of each paper's net"),
    "explain": ("explain", "explanations of a trained checkpoint into <run>/explain/"),
    "eval": ("evaluate", "score a checkpoint on a split or another dataset into <run>/eval/<time>-.../"),
}


def usage() -> str:
    """The command list."""
    lines = ["usage: python -m dermfuse_models.runner <command> [args]", "commands:"]
    lines += [f"  {name:<10} {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Dispatch to the command's module (third-party noise filtered, :mod:`.terminal`); usage (exit 2) otherwise."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(usage(), end="")
        return 0
    if not argv or argv[0] not in COMMANDS:
        print(usage(), file=sys.stderr, end="")
        if argv:
            close = difflib.get_close_matches(argv[0], COMMANDS, n=1)
            print(
                f"error: unknown command {argv[0]!r}" + (f"; did you mean {close[0]!r}?" if close else ""),
                file=sys.stderr,
            )
        return 2
    from dermfuse_models.runner.terminal import quiet_third_party

    with quiet_third_party():
        return _dispatch(argv)


def _dispatch(argv: list[str]) -> int:
    """Run command ``argv[0]`` with the rest of ``argv``."""
    name = COMMANDS[argv[0]][0]
    if argv[0] == "predict" and any(a in ("-c", "--config") or a.startswith("--config=") for a in argv):
        name = "cli"  # LightningCLI's predict on a config (written into <run>/eval/<time>-predict/)
    module = importlib.import_module(f"dermfuse_models.runner.{name}")
    if module.__name__.endswith(".cli"):
        module.run_from_command_line(argv)
        return 0
    rest = argv if argv[0] == "explain" else argv[1:]
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
