"""``python -m dermfuse_models.runner <command> [args]``: every dermfuse command in one place."""

from __future__ import annotations

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
    "report": ("report", "runs/report.md: finished runs beside the papers' numbers"),
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
    """Dispatch to the command's module; print usage (exit 2) for anything else."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        stream = sys.stdout if argv and argv[0] in ("-h", "--help") else sys.stderr
        print(usage(), file=stream, end="")
        return 0 if stream is sys.stdout else 2
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
