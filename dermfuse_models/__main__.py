"""``python -m dermfuse_models <command>``: ``profile`` (params / FLOPs of the paper nets) or a
LightningCLI subcommand (``fit``, ``validate``, ``test``, ``predict``: same as ``python -m dermfuse_models.cli``).
"""

from __future__ import annotations

import sys

_CLI_COMMANDS = ("fit", "validate", "test", "predict")
_USAGE = (
    "usage: python -m dermfuse_models <command> [args]\n"
    "commands:\n"
    "  profile   parameters, GMACs and GFLOPs of each paper's net (--json, --only NAME, --size N)\n"
    "  fit | validate | test | predict   LightningCLI (python -m dermfuse_models.cli ...)\n"
)


def main(argv: list[str] | None = None) -> int:
    """Dispatch to the subcommand; print usage (exit 2) for anything else."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "profile":
        from dermfuse_models.profile import main as profile_main

        return profile_main(argv[1:])
    if argv and argv[0] in _CLI_COMMANDS:
        from dermfuse_models.cli import main as cli_main

        cli_main(argv)
        return 0
    stream = sys.stdout if argv and argv[0] in ("-h", "--help") else sys.stderr
    print(_USAGE, file=stream, end="")
    return 0 if stream is sys.stdout else 2


if __name__ == "__main__":
    sys.exit(main())
