"""Finished runs as the report compares them: one record per run, the runs it leaves out, seed groups.

* A **run** is a folder with ``metrics.json`` (``runs/<experiment>/.../``); its ``config.yaml`` and, for
  sweep runs, ``sweep_run.json`` say what ran.
* Runs **left out** of every comparison, each listed with its reason: failed runs (``metrics.json``
  ``status`` other than finished), debug runs (``fast_dev_run``, ``limit_*_batches`` / ``overfit_batches``,
  or ``max_epochs`` below ``min_epochs``).
* A **protocol** is what the numbers are measured on: dataset, source options (normalised with the
  source's defaults, so CBIS-DDSM ``{}`` and ``{abnormality: both}`` are one protocol and mass-only is
  another) and task.
* A **comparison** is the runs of one paper that differ only by ``seed_everything``: same resolved config
  (minus bookkeeping keys such as run folders, loggers and progress bars), same data split file, same
  kind of data (synthetic or real). Each gets a label (``A``, ``B``, ...) stable across the tables and
  panels of the report, in the order of its first run.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import string
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from dermfuse_data.sources import SOURCE_MODULES, get_source
from dermfuse_models.runner.runs import run_config, run_metric_files, run_metrics
from dermfuse_models.runner.sweep import SEED_KEY, describe

#: runs with fewer epochs are debug runs (``--min-epochs``)
MIN_EPOCHS = 2
#: config keys that do not change a run's numbers (dotted; ``trainer.logger`` drops the whole list)
BOOKKEEPING_KEYS = (
    SEED_KEY,
    "run_dir",
    "resume",
    "ckpt_path",
    "weights_only",
    "trainer.default_root_dir",
    "trainer.logger",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "data.root",
    "data.cache_dir",
    "data.cache_workers",
    "data.num_workers",
)
FINISHED = (None, "finished", "ok", "complete", "completed")


@dataclass(frozen=True)
class Protocol:
    """What numbers are measured on: dataset, its source options and the task."""

    dataset: str
    options: tuple[tuple[str, str], ...] = ()
    task: str = "classification"

    def describe(self) -> str:
        """``cbis_ddsm (abnormality=mass), classification``."""
        options = f" ({', '.join(f'{k}={v}' for k, v in self.options)})" if self.options else ""
        return f"{self.dataset}{options}, {self.task}"


def protocol_of(dataset: str, options: dict | None, task: str | None) -> Protocol:
    """The :class:`Protocol` with ``options`` completed by the source's ``read`` defaults."""
    merged = {k: v for k, v in {**_source_defaults(dataset), **(options or {})}.items() if v is not None}
    return Protocol(str(dataset), tuple(sorted((str(k), str(v)) for k, v in merged.items())), task or "classification")


def _source_defaults(dataset: str) -> dict:
    if dataset not in SOURCE_MODULES:  # not a dermfuse dataset (a paper's own name): no defaults to add
        return {}
    read = get_source(dataset).read
    params = inspect.signature(read).parameters.values()
    return {p.name: p.default for p in params if p.name != "root" and p.default is not inspect.Parameter.empty}


@dataclass
class RunRecord:
    """One finished (or failed) run folder."""

    folder: Path
    name: str  # relative to the runs root
    paper: str
    summary: dict
    config: dict
    overrides: dict | None  # sweep runs: their overrides; None otherwise
    excluded: str | None = None

    @property
    def seed(self):
        """``seed_everything`` of the run."""
        return self.summary.get(SEED_KEY, self.config.get(SEED_KEY))

    @property
    def synthetic(self) -> bool:
        """Whether the run used a synthetic miniature."""
        return bool(self.summary.get("synthetic"))

    @property
    def protocol(self) -> Protocol:
        """The run's :class:`Protocol`."""
        s = self.summary
        return protocol_of(str(s.get("dataset", "?")), s.get("source_options"), s.get("task"))

    def fingerprint(self) -> str:
        """Hash of what makes the run's numbers: config minus bookkeeping, split file, synthetic or real,
        and, for a sweep run, its overrides without the seed (a sweep variant is its own comparison)."""
        config = json.loads(json.dumps(self.config, default=str))
        for key in BOOKKEEPING_KEYS:
            _drop(config, key.split("."))
        split = Path(str(self.summary.get("split_file") or "")).name
        sweep = None if self.overrides is None else {k: v for k, v in self.overrides.items() if k != SEED_KEY}
        text = json.dumps([config, split, self.synthetic, self.protocol.describe(), sweep], sort_keys=True, default=str)
        return hashlib.sha1(text.encode()).hexdigest()[:12]


def _drop(tree: dict, path: list[str]) -> None:
    node = tree
    for part in path[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            return
    if isinstance(node, dict):
        node.pop(path[-1], None)


@dataclass
class Comparison:
    """The runs of one paper that differ only by seed: one line of the report per metric."""

    label: str
    paper: str
    protocol: Protocol
    runs: list[RunRecord] = field(default_factory=list)

    @property
    def overrides(self) -> dict:
        """Flattened sweep overrides without the seed ({} for runs of the paper's config)."""
        raw = self.runs[0].overrides or {}
        return flatten({k: v for k, v in raw.items() if k != SEED_KEY})

    @property
    def is_sweep(self) -> bool:
        """Whether the runs come from a sweep."""
        return self.runs[0].overrides is not None

    @property
    def variant(self) -> str:
        """``config`` or ``sweep: fusion=concat ...``."""
        if not self.is_sweep:
            return "config"
        raw = {k: v for k, v in (self.runs[0].overrides or {}).items() if k != SEED_KEY}
        return "sweep: " + describe(raw)

    @property
    def synthetic(self) -> bool:
        """Whether the runs used a synthetic miniature."""
        return self.runs[0].synthetic

    @property
    def seeds(self) -> list:
        """The runs' seeds, in run order."""
        return [r.seed for r in self.runs]


def flatten(tree: dict, prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (sweep values that are dicts merge at their key)."""
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def exclusion_reason(summary: dict, config: dict, min_epochs: int = MIN_EPOCHS) -> str | None:
    """Why a run is left out of the comparisons (failed or debug), or ``None``."""
    status = summary.get("status")
    if status not in FINISHED:
        return f"status {status}"
    trainer = config.get("trainer") or {}
    if trainer.get("fast_dev_run"):
        return "debug: fast_dev_run"
    for key in ("limit_train_batches", "limit_val_batches", "limit_test_batches"):
        if trainer.get(key) not in (None, 1.0):
            return f"debug: {key}={trainer[key]}"
    if trainer.get("overfit_batches"):
        return f"debug: overfit_batches={trainer['overfit_batches']}"
    max_epochs = summary.get("max_epochs", trainer.get("max_epochs"))
    if max_epochs is not None and 0 <= int(max_epochs) < min_epochs:
        return f"debug: max_epochs={max_epochs} < {min_epochs} (--min-epochs)"
    return None


def known_papers(experiments: Path) -> list[str]:
    """Paper slugs: folders of ``experiments`` with a config.yaml or reported.yaml."""
    return sorted(
        p.name
        for p in experiments.iterdir()
        if p.is_dir() and ((p / "config.yaml").is_file() or (p / "reported.yaml").is_file())
    )


def paper_of(experiment: str, papers: list[str]) -> str:
    """The paper an experiment name belongs to (``dualnet_segmenter`` -> ``dualnet``)."""
    if experiment in papers:
        return experiment
    prefixes = [p for p in papers if experiment.startswith(p + "_")]
    return max(prefixes, key=len) if prefixes else experiment


def collect_runs(runs: Path, papers: list[str], min_epochs: int = MIN_EPOCHS) -> list[RunRecord]:
    """Every run folder with a readable ``metrics.json`` under ``runs``, oldest first."""
    records = []
    for path in sorted(run_metric_files(runs), key=lambda p: p.stat().st_mtime):
        summary = run_metrics(path.parent)
        if summary is None:
            continue
        folder = path.parent
        name = str(folder.relative_to(runs))
        config = run_config(folder)
        sweep = folder / "sweep_run.json"
        overrides = None
        if sweep.is_file():
            try:
                overrides = dict(json.loads(sweep.read_text()).get("overrides") or {})
            except (OSError, ValueError):
                overrides = {}
        experiment = summary.get("experiment") or name.split("/")[0]
        records.append(
            RunRecord(
                folder,
                name,
                paper_of(experiment, papers),
                summary,
                config,
                overrides,
                exclusion_reason(summary, config, min_epochs),
            )
        )
    return records


def _label(i: int) -> str:
    letters = string.ascii_uppercase
    return letters[i] if i < len(letters) else _label(i // len(letters) - 1) + letters[i % len(letters)]


def group_comparisons(records: list[RunRecord]) -> dict[str, list[Comparison]]:
    """The compared (not left out) runs grouped into :class:`Comparison` s per paper, labelled in run order."""
    by_paper: dict[str, dict[str, Comparison]] = defaultdict(dict)
    for record in records:
        if record.excluded:
            continue
        groups = by_paper[record.paper]
        key = record.fingerprint()
        if key not in groups:
            groups[key] = Comparison(_label(len(groups)), record.paper, record.protocol)
        groups[key].runs.append(record)
    return {paper: list(groups.values()) for paper, groups in by_paper.items()}
