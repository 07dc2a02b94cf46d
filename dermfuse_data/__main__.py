"""Command line of dermfuse_data.

``python -m dermfuse_data check --dataset NAME --root DIR [--json] [--no-verify-images]``
    index a dataset as its publisher ships it and report counts, splits, missing values and problems
    (exit 0 fine, 1 problems, 2 unreadable; see :mod:`dermfuse_data.check`).
``python -m dermfuse_data synth --dataset NAME --out DIR [--seed N]``
    write the dataset's synthetic miniature in the publisher's layout (:mod:`dermfuse_data.synthetic`).
``python -m dermfuse_data split --dataset NAME [--root DIR] --out FILE.csv [--seed N] ...``
    the train/val/test partition training uses, as ``sample_id, group, label, label_name, split``
    (:mod:`dermfuse_data.split_export`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from dermfuse_data.errors import DatasetError
from dermfuse_data.sources import SOURCE_MODULES


def build_parser() -> argparse.ArgumentParser:
    """The ``check`` / ``synth`` argument parser."""
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
    check.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="source option, e.g. abnormality=mass for cbis_ddsm (repeatable)",
    )
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
        "split", help="export the train/val/test partition training uses (sample_id, group, label, label_name, split)"
    )
    split.add_argument("--dataset", required=True, choices=datasets)
    split.add_argument("--root", default=None, help="dataset folder (default: the synthetic miniature)")
    split.add_argument("--out", required=True, help="CSV file to write")
    split.add_argument("--seed", type=int, default=0, help="data.seed of the runs (default 0)")
    split.add_argument("--val-fraction", "--val_fraction", type=float, default=0.15)
    split.add_argument("--test-fraction", "--test_fraction", type=float, default=0.15)
    split.add_argument(
        "--no-official-split",
        dest="use_official_split",
        action="store_false",
        help="resplit (use_official_split=false)",
    )
    split.add_argument("--option", action="append", default=[], metavar="NAME=VALUE", help="source option (repeatable)")
    return parser


def _options(items: list[str]) -> dict[str, str]:
    return dict(o.split("=", 1) if "=" in o else (o, "true") for o in items)


def _check(args: argparse.Namespace) -> int:
    from dermfuse_data.check import check_dataset, exit_code, print_json, print_report

    options = _options(args.option)
    report = check_dataset(args.dataset, args.root, verify_images=args.verify_images, options=options)
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
            args.use_official_split,
            _options(args.option),
        )
    except (DatasetError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    counts = Counter(table.column("split").to_pylist())
    shown = ", ".join(f"{s} {counts.get(s, 0)}" for s in ("train", "val", "test"))
    print(f"wrote {out}: {table.num_rows} samples ({shown}); the split file training reads is {split_file}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    args = build_parser().parse_args(argv)
    return {"check": _check, "synth": _synth, "split": _split}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
