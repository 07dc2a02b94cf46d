"""Run a paper's ablation sweep (``experiments/<paper>/sweep.yaml``, wandb sweep format).

``python -m dermfuse_models.runner.sweep experiments/vitatt/sweep.yaml [--dataset isic2019]
[--data_root /data/ISIC2019] [--seeds 0 1 2] [--dry-run] [--max-runs N] [--local] [-- <extra CLI args>]``

The YAML is a wandb sweep: ``command`` (a block list with wandb's macros ``${env}``,
``${interpreter}``, ``${program}``, ``${args}``), ``method: grid`` and ``parameters`` keyed by
LightningCLI keys (``model.init_args.net.init_args.num_heads``), so the agent's ``--key=value``
arguments reach the model. Before running, the command gets the dataset overlay
``experiments/<paper>/data/<dataset>.yaml`` and, without ``--data_root``, the CPU smoke profile
``experiments/<paper>/smoke.yaml`` on the synthetic miniature (both inserted after the command's
last ``--config``); with ``--data_root`` it gets ``--data.root=<path>``.

* wandb reachable (:func:`dermfuse_models.runner.runs.wandb_mode` is ``online``: an API key configured and
  ``WANDB_MODE`` not offline/disabled) and no ``--local``: the sweep is created on the server and a
  ``wandb agent`` runs it (``--max-runs`` -> ``--count``).
* otherwise the grid is enumerated here (:func:`grid_runs`) and every run is executed locally, one
  after the other, exactly as the agent would run the command, each into its own folder
  ``runs/<experiment>/sweep-<time>/<NN>-<overrides>/`` with ``sweep_run.json`` (its overrides);
  a summary table follows. ``--dry-run`` lists the runs and their commands without running them.

``--seeds 0 1 2`` adds a seed axis: the grid gets the parameter ``seed_everything`` (LightningCLI's seed
of weight initialisation, augmentation and batch order; the data split ``data.seed`` stays), so every
combination runs once per seed, locally or through the wandb agent; the local summary then shows each
combination's mean +- s.d. over its seeds (``make report`` adds their confidence intervals).

A sweep's ``dermfuse:`` block (:mod:`~dermfuse_models.runner.sweep_plan`; stripped before the sweep goes
to wandb) declares equivalent combinations (run once) and test-time parameters (scored on the trained
checkpoint by ``eval`` into ``<run>/eval/<NN>-<values>/``, never retrained). The summary lists every
grid combination with what was done for it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from dermfuse_models.runner.runs import best_checkpoint, run_metrics, runs_root, wandb_mode
from dermfuse_models.runner.sweep_plan import check_block, for_wandb, plan_runs

#: the LightningCLI key of the seed axis (weight init, augmentation, batch order; not the data split)
SEED_KEY = "seed_everything"
#: test metrics shown in the summary when a run has them
SUMMARY_KEYS = ("test/bal_acc", "test/acc", "test/auroc_macro", "test/f1_macro", "test/dice", "test/iou")


def load_sweep(path: str | Path) -> dict:
    """The sweep YAML as a dict, checked for the parts this runner and wandb need."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sweep file {path} does not exist (expected experiments/<paper>/sweep.yaml)")
    sweep = yaml.safe_load(path.read_text()) or {}
    command = sweep.get("command")
    if not isinstance(command, list) or not all(isinstance(c, str) for c in command):
        raise ValueError(f"{path}: 'command' must be a block list of strings (wandb requires a list)")
    if "${args}" not in command and "${args_no_hyphens}" not in command:
        raise ValueError(f"{path}: 'command' must contain ${{args}} so the overrides reach the run")
    params = sweep.get("parameters")
    if not isinstance(params, dict) or not params:
        raise ValueError(f"{path}: 'parameters' must map LightningCLI keys to {{values: [...]}} or {{value: x}}")
    for key, spec in params.items():
        if not isinstance(spec, dict) or not ({"values", "value"} & set(spec)):
            raise ValueError(f"{path}: parameter {key!r} needs 'values: [...]' or 'value: x' (grid sweeps)")
        if "values" in spec and (not isinstance(spec["values"], list) or not spec["values"]):
            raise ValueError(f"{path}: parameter {key!r} 'values' must be a non-empty list")
        values = spec["values"] if "values" in spec else [spec["value"]]
        if any(v is None for v in values):
            raise ValueError(
                f'{path}: parameter {key!r} has a YAML null; write the string "null" instead '
                "(the agent would pass None, which LightningCLI does not read as null)"
            )
    check_block(sweep, path)
    return sweep


def with_seed_axis(sweep: dict, seeds: list[int] | None) -> dict:
    """The sweep with a ``seed_everything`` grid parameter over ``seeds`` (last, so seeds vary fastest)."""
    if not seeds:
        return sweep
    return {**sweep, "parameters": {**sweep["parameters"], SEED_KEY: {"values": [int(s) for s in seeds]}}}


def grid_runs(sweep: dict) -> list[dict[str, Any]]:
    """Every run of a grid sweep: the cartesian product of ``values`` (in file order), plus ``value``s.

    Raises for methods other than ``grid`` (random/bayes need the wandb server).
    """
    method = sweep.get("method", "grid")
    if method != "grid":
        raise ValueError(f"sweep method {method!r} needs the wandb server; the local runner enumerates grids only")
    params = sweep["parameters"]
    varying = [(k, spec["values"]) for k, spec in params.items() if "values" in spec]
    fixed = {k: spec["value"] for k, spec in params.items() if "values" not in spec}
    runs = []
    for combo in itertools.product(*(values for _, values in varying)):
        run = dict(fixed)
        run.update({k: v for (k, _), v in zip(varying, combo)})
        runs.append(run)
    return runs


def shard_runs(runs: list[dict[str, Any]], shard: str | None) -> list[tuple[int, dict[str, Any]]]:
    """``(grid index, overrides)`` of the runs that shard ``"i/n"`` (1-based) owns: every n-th, from the i-th.

    ``None`` owns every run. Job-array tasks ``1/n .. n/n`` together cover the grid exactly once, and
    each run keeps its index in the whole grid (its folder name ``NN-...``), so shards never collide.
    """
    indexed = list(enumerate(runs))
    if shard is None:
        return indexed
    try:
        i, n = (int(part) for part in str(shard).split("/"))
    except ValueError:
        raise ValueError(f"--shard {shard!r}: write i/n with 1 <= i <= n, e.g. --shard 2/4") from None
    if not 1 <= i <= n:
        raise ValueError(f"--shard {shard!r}: write i/n with 1 <= i <= n, e.g. --shard 2/4")
    return indexed[i - 1 :: n]


def format_value(value: Any) -> str:
    """A parameter value exactly as the wandb agent writes it into ``--key=value`` (``str(value)``).

    Python's ``str`` of a bool, list or dict (``False``, ``['a']``, ``{'num_heads': 4}``) is valid
    YAML, which LightningCLI parses; a dict value is merged into the config at its key.
    """
    return f"{value}"


def _insert_after_last_config(command: list[str], extra: list[str]) -> list[str]:
    positions = [i for i, c in enumerate(command) if c == "--config" or c.startswith("--config=")]
    if not positions:
        at = command.index("${args}") if "${args}" in command else len(command)
    else:
        at = positions[-1] + (1 if command[positions[-1]].startswith("--config=") else 2)
    return command[:at] + extra + command[at:]


def profile_command(
    sweep: dict,
    sweep_path: str | Path,
    dataset: str | None = None,
    data_root: str | None = None,
    extra_args: list[str] = (),
) -> list[str]:
    """The sweep's ``command`` with the dataset overlay, smoke profile or data root, and ``extra_args``."""
    paper_dir = Path(sweep_path).parent
    extra: list[str] = []
    if dataset:
        overlay = paper_dir / "data" / f"{dataset}.yaml"
        if not overlay.is_file():
            known = sorted(p.stem for p in (paper_dir / "data").glob("*.yaml"))
            raise FileNotFoundError(f"no dataset overlay {overlay}; datasets for {paper_dir.name}: {known}")
        extra += ["--config", str(overlay)]
    if data_root:
        extra_tail = [f"--data.root={data_root}"]
    else:
        smoke = paper_dir / sweep.get("smoke_config", "smoke.yaml")
        if not smoke.is_file():
            raise FileNotFoundError(f"{smoke} is missing: without --data_root the sweep runs the smoke profile")
        extra += ["--config", str(smoke)]
        extra_tail = []
    command = _insert_after_last_config(list(sweep["command"]), extra)
    at = command.index("${args}") if "${args}" in command else len(command)
    return command[:at] + extra_tail + list(extra_args) + command[at:]


def expand_command(command: list[str], overrides: dict[str, Any], program: str | None = None) -> list[str]:
    """Replace wandb's macros as the agent does (``${args}`` -> ``--key=value`` per override)."""
    out: list[str] = []
    for part in command:
        if part == "${env}":
            continue
        if part == "${interpreter}":
            out.append(sys.executable)
        elif part == "${program}":
            if not program:
                raise ValueError("command uses ${program} but the sweep has no 'program'")
            out.append(program)
        elif part == "${args}":
            out += [f"--{k}={format_value(v)}" for k, v in overrides.items()]
        elif part == "${args_no_hyphens}":
            out += [f"{k}={format_value(v)}" for k, v in overrides.items()]
        else:
            out.append(part)
    return out


def describe(overrides: dict[str, Any]) -> str:
    """Short ``name=value`` text of a run's overrides (dict values: their own items)."""
    parts = []
    for key, value in overrides.items():
        items = value.items() if isinstance(value, dict) else [(key.rsplit(".", 1)[-1], value)]
        parts += [f"{k}={format_value(v)}" for k, v in items]
    return " ".join(parts) or "(defaults)"


def _slug(overrides: dict[str, Any], limit: int = 80) -> str:
    return re.sub(r"[^A-Za-z0-9=._+-]+", "_", describe(overrides)).strip("_")[:limit] or "defaults"


def experiment_of(sweep_path: str | Path) -> str:
    """Experiment name of the sweep's runs (the paper folder's name)."""
    return Path(sweep_path).resolve().parent.name


def evaluate_run(run_dir: Path, test_overrides: dict[str, Any], out: Path) -> tuple[int, float]:
    """Score the run's best checkpoint with the test-time values into ``out`` (in this process, no training).

    Returns ``(status, seconds)``: 0, or 2 with the error printed: like a failed training subprocess,
    a failed evaluation is recorded and the sweep goes on to the next combination.
    """
    from dermfuse_models.runner.evaluate import EVAL_DIR_ENV, evaluate_checkpoint

    start = time.time()
    settings = [f"{k}={format_value(v)}" for k, v in test_overrides.items()]
    try:
        evaluate_checkpoint(best_checkpoint(run_dir), out=out, overrides=settings, progress=False)
        rc = 0
    except Exception as err:  # any failure is this combination's, not the sweep's
        print(f"error: evaluation of {run_dir} with {settings} failed: {type(err).__name__}: {err}", file=sys.stderr)
        rc = 2
    finally:
        os.environ.pop(EVAL_DIR_ENV, None)  # the next combination's trainings must not inherit this folder
    return rc, round(time.time() - start, 1)


def _run(command: list[str]) -> tuple[int, float]:
    start = time.time()
    rc = subprocess.run(command, env={**os.environ, "WANDB_SILENT": "true"}).returncode
    return rc, round(time.time() - start, 1)


def run_local(
    sweep_path: str | Path,
    dataset: str | None = None,
    data_root: str | None = None,
    max_runs: int | None = None,
    dry_run: bool = False,
    extra_args: list[str] = (),
    sweep_dir: str | Path | None = None,
    shard: str | None = None,
    seeds: list[int] | None = None,
) -> list[dict]:
    """Run the grid locally (see module doc); returns one record per grid combination this shard owns.

    Each distinct training is fitted once (``dermfuse.equivalent``, test-time keys left out) and each
    combination with test-time values is scored on its checkpoint by ``eval``
    (:mod:`~dermfuse_models.runner.sweep_plan`). ``shard`` ``"i/n"``: only this share of the trainings
    (:func:`shard_runs`) and the combinations scored on them, e.g. one task of a job array. ``seeds``: a
    seed axis (:func:`with_seed_axis`), every combination once per seed.
    """
    sweep = with_seed_axis(load_sweep(sweep_path), seeds)
    runs = grid_runs(sweep)
    if max_runs is not None:
        runs = runs[:max_runs]
    plan = plan_runs(sweep, runs)
    trainings = [p.index for p in plan if p.train]
    owned = {trainings[k] for k, _ in shard_runs(trainings, shard)}
    profile_command(sweep, sweep_path, dataset, data_root, extra_args)  # fail early on a missing file
    sweep_dir = (
        Path(sweep_dir) if sweep_dir else runs_root() / experiment_of(sweep_path) / time.strftime("sweep-%Y%m%d-%H%M%S")
    )
    records: list[dict] = []
    for item in plan:
        run_dir = (sweep_dir / f"{item.trained_by:02d}-{_slug(plan[item.trained_by].train_overrides)}").resolve()
        record = {"index": item.index, "overrides": item.overrides, "run_dir": str(run_dir), "plan": item}
        records.append(record)
        if item.trained_by not in owned:
            continue  # another shard's training and the combinations scored on it
        step = f"[{item.index + 1}/{len(plan)}]"
        if item.same_as is not None:
            print(f"{step} same as #{item.same_as} (dermfuse.equivalent): nothing to run", flush=True)
            continue
        if item.train:
            command = expand_command(
                profile_command(sweep, sweep_path, dataset, data_root, [*extra_args, f"--run_dir={run_dir}"]),
                item.train_overrides,
                sweep.get("program"),
            )
            record["command"] = command
            print(f"{step} train ({len(owned)} in all): {shlex.join(command)}", flush=True)
            if not dry_run:
                record["returncode"], record["seconds"] = _run(command)
                record["metrics"] = (run_metrics(run_dir) or {}).get("test", {})
                _write_sweep_run(run_dir, sweep_path, item, command, record["returncode"])
        if item.evaluate:
            out = run_dir / "eval" / f"{item.index:02d}-{_slug(item.test_overrides)}"
            record["eval_dir"] = str(out)
            print(f"{step} evaluate #{item.trained_by}'s checkpoint with {describe(item.test_overrides)}", flush=True)
            trained = records[item.trained_by]
            if dry_run:
                continue
            if trained.get("returncode") != 0:
                record["returncode"] = trained.get("returncode")
                continue
            rc, seconds = evaluate_run(run_dir, item.test_overrides, out)
            record["returncode"] = record.get("returncode") or rc
            record["seconds"] = round(record.get("seconds", 0.0) + seconds, 1)
            record["metrics"] = (run_metrics(out) or {}).get("metrics", {})
    for record in records:
        same = record["plan"].same_as
        if same is not None:
            record.update({k: records[same][k] for k in ("returncode", "metrics") if k in records[same]})
    records = [r for r in records if r["plan"].trained_by in owned]
    print_summary(records, dry_run)
    if seeds and not dry_run:
        print_seed_summary(records)
    return records


def _write_sweep_run(run_dir: Path, sweep_path, item, command: list[str], rc: int) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "sweep_run.json").write_text(
        json.dumps(
            {
                "sweep": str(Path(sweep_path)),
                "index": item.index,
                "overrides": item.train_overrides,
                "command": command,
                "returncode": rc,
            },
            indent=2,
        )
    )


def _status(record: dict, dry_run: bool) -> str:
    """What was done for a grid combination (and whether it worked)."""
    item = record["plan"]
    if item.same_as is not None:
        return f"= #{item.same_as} (equivalent)"
    done = "trained" if item.train else f"ckpt of #{item.trained_by}"
    if item.evaluate:
        done += " + eval"
    if dry_run:
        return f"planned: {done}"
    rc = record.get("returncode")
    return done if rc == 0 else f"FAILED ({rc}): {done}"


def print_summary(records: list[dict], dry_run: bool = False) -> None:
    """A table of the grid: overrides, what was run (trained / evaluated on a checkpoint / equivalent), metrics."""
    if not records:
        print("no runs")
        return
    keys = [k for k in SUMMARY_KEYS if any(k in r.get("metrics", {}) for r in records)]
    trained = sum(r["plan"].train for r in records)
    evaluated = sum(r["plan"].evaluate and not r["plan"].train for r in records)
    title = "sweep summary" + (" (dry run: nothing was run)" if dry_run else "")
    print(f"\n{title}: {len(records)} combinations, {trained} trainings, {evaluated} scored on a trained checkpoint")
    header = ["#", "overrides", "status", "s"] + [k.removeprefix("test/") for k in keys]
    rows = []
    for r in records:
        rows.append(
            [str(r["index"]), describe(r["overrides"]), _status(r, dry_run), str(r.get("seconds", ""))]
            + [f"{r['metrics'][k]:.4f}" if k in r.get("metrics", {}) else "" for k in keys]
        )
    _print_table(header, rows)


def print_seed_summary(records: list[dict]) -> None:
    """Per combination (overrides without the seed): mean +- s.d. of each test metric over its finished seeds."""
    combos: dict[str, list[dict]] = {}
    for r in records:
        rest = {k: v for k, v in r["overrides"].items() if k != SEED_KEY}
        combos.setdefault(describe(rest), []).append(r)
    keys = [k for k in SUMMARY_KEYS if any(k in r.get("metrics", {}) for r in records)]
    print("\nover seeds (mean +- s.d., n = finished seeds)")
    header = ["overrides", "n"] + [k.removeprefix("test/") for k in keys]
    rows = []
    for name, runs in combos.items():
        cells = []
        for k in keys:
            values = [r["metrics"][k] for r in runs if k in r.get("metrics", {})]
            sd = f" +- {statistics.stdev(values):.4f}" if len(values) > 1 else ""
            cells.append(f"{statistics.fmean(values):.4f}{sd}" if values else "")
        rows.append([name, str(sum(bool(r.get("metrics")) for r in runs)), *cells])
    _print_table(header, rows)


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(row[c]) for row in [header, *rows]) for c in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)))


def run_wandb_agent(
    sweep_path: str | Path,
    dataset: str | None,
    data_root: str | None,
    max_runs: int | None,
    extra_args: list[str] = (),
    seeds: list[int] | None = None,
) -> int:
    """Create the sweep on the wandb server (command completed as in :func:`profile_command`) and run an agent."""
    import wandb

    sweep = with_seed_axis(load_sweep(sweep_path), seeds)
    command = profile_command(sweep, sweep_path, dataset, data_root, extra_args)
    sweep, notes = for_wandb(sweep)
    for note in notes:
        print(note, file=sys.stderr)
    sweep["command"] = command
    sweep.setdefault("name", f"{experiment_of(sweep_path)}-{dataset or 'default'}")
    project = os.environ.get("WANDB_PROJECT", "dermfuse")
    sweep_id = wandb.sweep(sweep=sweep, project=project)
    agent = [str(Path(sys.executable).parent / "wandb"), "agent", "--project", project]
    if os.environ.get("WANDB_ENTITY"):
        agent += ["--entity", os.environ["WANDB_ENTITY"]]
    if max_runs:
        agent += ["--count", str(max_runs)]
    return subprocess.run(agent + [sweep_id]).returncode


def main(argv: list[str] | None = None) -> int:
    """Command line (see module doc)."""
    parser = argparse.ArgumentParser(
        prog="python -m dermfuse_models.runner.sweep",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("sweep", help="experiments/<paper>/sweep.yaml")
    parser.add_argument("--dataset", default=None, help="dataset overlay experiments/<paper>/data/<dataset>.yaml")
    parser.add_argument(
        "--data_root",
        "--data-root",
        default=None,
        help="real dataset folder (default: smoke profile on the synthetic miniature)",
    )
    parser.add_argument("--dry-run", "--dry_run", action="store_true", help="list the runs, run nothing")
    parser.add_argument("--max-runs", "--max_runs", type=int, default=None, help="run at most N runs")
    parser.add_argument("--local", action="store_true", help="run locally even when wandb is online")
    parser.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="local runner: only the I-th of N shares of the grid (job arrays: --shard $((SLURM_ARRAY_TASK_ID+1))/N; "
        "give every task the same SWEEP_DIR via --sweep_dir)",
    )
    parser.add_argument(
        "--sweep_dir", default=None, help="folder of the sweep's runs (default runs/<paper>/sweep-<time>)"
    )
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=None,
        help="a seed axis: every combination once per seed (seed_everything; the data split stays)",
    )
    args, extra = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    extra = [a for a in extra if a != "--"]
    if not args.local and not args.dry_run and args.shard is None and wandb_mode() == "online":
        return run_wandb_agent(args.sweep, args.dataset, args.data_root, args.max_runs, extra, args.seeds)
    if args.shard is not None:
        shard_runs([], args.shard)  # a malformed --shard fails before anything runs
    records = run_local(
        args.sweep,
        args.dataset,
        args.data_root,
        args.max_runs,
        args.dry_run,
        extra,
        args.sweep_dir,
        args.shard,
        seeds=args.seeds,
    )
    return 0 if all(r.get("returncode", 0) == 0 for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
