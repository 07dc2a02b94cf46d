"""Command line of dermfuse_data.

``python -m dermfuse_data check --dataset NAME --root DIR [--json] [--no-verify-images]``
    index a dataset as its publisher ships it and report counts, splits, missing values and problems
    (exit 0 fine, 1 problems, 2 unreadable; see :mod:`dermfuse_data.check`).
``python -m dermfuse_data synth --dataset NAME --out DIR [--seed N]``
    write the dataset's synthetic miniature in the publisher's layout (:mod:`dermfuse_data.synthetic`).
``python -m dermfuse_data split --dataset NAME [--root DIR] [--out FILE.csv] [--seed N] [--resplit]``
    show (and create or extend) the dataset's saved split, the one training uses; ``--out`` exports it as
    ``sample_id, group, label, label_name, split`` (:mod:`dermfuse_data.split_export`); ``--resplit``
    regenerates it from the current samples (:func:`dermfuse_data.splits.load_or_make_splits`).
``python -m dermfuse_data cache list|prune [--older-than DAYS] [--dry-run] [--cache-dir DIR]``
    list the cache folder (``$DERMFUSE_CACHE``) with sizes and last use; prune what was not used for
    DAYS days (:mod:`dermfuse_data.cache_folder`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from dermfuse_data.errors import DatasetError
from dermfuse_data.sources import SOURCE_MODULES
from dermfuse_data.storage import CACHE_ENV, default_cache_dir


def _add_option_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="source option, e.g. abnormality=mass for cbis_ddsm (repeatable)",
    )


def _options(args: argparse.Namespace) -> dict[str, str]:
    return dict(o.split("=", 1) if "=" in o else (o, "true") for o in args.option)


def build_parser() -> argparse.ArgumentParser:
    """The ``check`` / ``synth`` / ``split`` / ``cache`` argument parser."""
    parser = argparse.ArgumentParser(prog="python -m dermfuse_data", description="dermfuse dataset tools")
    sub = parser.add_subparsers(dest="command", required=True)
    datasets = sorted(SOURCE_MODULES)

    check = sub.add_parser(
        "check",
        help="index a dataset on disk and report what is in it and what is wrong (exit 0 ok, 1 problems, 2 unreadable)",
    )
    check.add_argument("--dataset", required=True, choices=datasets)
    check.add_argument("--root", required=True, help="folder as the publisher ships the dataset")
    check.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    _add_option_argument(check)
    check.add_argument(
        "--no-verify-images",
        dest="verify_images",
        action="store_false",
        help="skip decoding every image (only check that the files exist)",
    )

    synth = sub.add_parser("synth", help="write a dataset's synthetic miniature in its publisher's layout")
    synth.add_argument("--dataset", required=True, choices=datasets)
    synth.add_argument("--out", required=True, help="folder to write (created if needed)")
    synth.add_argument("--seed", type=int, default=0)

    split = sub.add_parser(
        "split",
        help="show (create, extend) the dataset's saved split, the one training uses; --out exports it as a CSV",
    )
    split.add_argument("--dataset", required=True, choices=datasets)
    split.add_argument("--root", default=None, help="dataset folder (default: the synthetic miniature)")
    split.add_argument("--out", default=None, help="CSV file to write: sample_id, group, label, label_name, split")
    _add_option_argument(split)
    split.add_argument("--seed", type=int, default=0, help="data.seed of the runs (default 0)")
    split.add_argument("--val-fraction", "--val_fraction", type=float, default=0.15)
    split.add_argument("--test-fraction", "--test_fraction", type=float, default=0.15)
    split.add_argument(
        "--no-official",
        dest="use_official",
        action="store_false",
        help="grouped split even where the publisher has one",
    )
    split.add_argument("--resplit", action="store_true", help="regenerate the split (saved samples may move)")
    split.add_argument("--cache-dir", default=None, help=f"default ${CACHE_ENV} or .cache/dermfuse")

    cache = sub.add_parser("cache", help="list the cache folder, or prune what was not used for a while")
    cache.add_argument("action", choices=("list", "prune"))
    cache.add_argument("--cache-dir", default=None, help=f"default ${CACHE_ENV} or .cache/dermfuse")
    cache.add_argument(
        "--older-than", type=float, default=30.0, metavar="DAYS", help="prune: unused for DAYS days (30)"
    )
    cache.add_argument("--dry-run", action="store_true", help="prune: only list what would be removed")
    return parser


def _check(args: argparse.Namespace) -> int:
    from dermfuse_data.check import check_dataset, exit_code, print_json, print_report

    report = check_dataset(args.dataset, args.root, verify_images=args.verify_images, options=_options(args))
    if args.json:
        print_json(report)
    else:
        print_report(report)
    return exit_code(report)


def _synth(args: argparse.Namespace) -> int:
    from dermfuse_data.sources import get_source
    from dermfuse_data.synthetic import write_synthetic

    source = get_source(args.dataset)
    try:
        root = write_synthetic(args.dataset, args.out, seed=args.seed)
        rows = source.read(root).num_rows
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"wrote a SYNTHETIC miniature of {source.title} ({rows} images, seed {args.seed}) to "
        f"{root}; it is not the real dataset"
    )
    return 0


def _split(args: argparse.Namespace) -> int:
    from collections import Counter

    from dermfuse_data.split_export import export_split

    try:
        out, table, split_file = export_split(
            args.dataset,
            args.out,
            args.root,
            args.seed,
            args.val_fraction,
            args.test_fraction,
            args.use_official,
            _options(args),
            resplit=args.resplit,
            cache_dir=args.cache_dir,
        )
    except (DatasetError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    counts = Counter(table.column("split").to_pylist())
    shown = ", ".join(f"{s} {counts.get(s, 0)}" for s in ("train", "val", "test"))
    print(f"{split_file}: {table.num_rows} samples ({shown})" + (f"; wrote {out}" if out else ""))
    return 0


def _cache(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dermfuse_data.cache_folder import describe, human_size, list_cache, prune_cache

    folder = Path(args.cache_dir).resolve() if args.cache_dir else default_cache_dir()
    if args.action == "list":
        entries = list_cache(folder)
        print(
            f"cache folder {folder} (${CACHE_ENV} moves it): {len(entries)} entries, "
            f"{human_size(sum(e.size for e in entries))}"
        )
        print("\n".join(describe(entries, folder)))
        return 0
    removed, freed = prune_cache(folder, args.older_than, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    print(f"{verb} {len(removed)} entries unused for {args.older_than:g} days, {human_size(freed)}, from {folder}")
    print("\n".join(describe(removed, folder)))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    args = build_parser().parse_args(argv)
    commands = {"check": _check, "synth": _synth, "split": _split, "cache": _cache}
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
