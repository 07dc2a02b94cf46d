"""Which grid combinations of a sweep need a training run, which only an evaluation, which nothing.

A sweep YAML may hold a ``dermfuse:`` block (stripped before the sweep goes to wandb)::

    dermfuse:
      equivalent:            # combinations that are the same experiment: the first one runs, the rest reuse it
        - when: {model.init_args.net.init_args.fusion: image}
          ignore: [model.init_args.net.init_args.modality_dropout, data.test_meta_missing_fraction]
      test_time: [data.test_meta_missing_fraction]   # read at test time only: scored on the trained checkpoint

A combination matching a rule's ``when`` has its ``ignore`` keys set to their first grid value
(its *canonical* form); combinations with the same canonical form are equivalent. Test-time keys
are left out of the training command: each distinct training is fitted once, and each combination
of test-time values is then scored on its best checkpoint by ``python -m dermfuse_models.runner eval
--set key=value`` (:mod:`~dermfuse_models.runner.evaluate`), never by retraining.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BLOCK = "dermfuse"


@dataclass(frozen=True)
class PlannedRun:
    """What one grid combination needs.

    ``train``: it is the first combination of its training (it is fitted, test-time keys left out);
    ``trained_by``: index of the combination whose training it uses; ``evaluate``: its test-time values
    are scored on that checkpoint; ``same_as``: index of an earlier equivalent combination (nothing to do).
    """

    index: int
    overrides: dict[str, Any]
    train_overrides: dict[str, Any]
    test_overrides: dict[str, Any]
    train: bool
    trained_by: int
    evaluate: bool
    same_as: int | None


def check_block(sweep: dict, path: str | Path) -> dict:
    """The sweep's ``dermfuse`` block, checked against its ``parameters`` (``ValueError`` naming the file)."""
    block = sweep.get(BLOCK) or {}
    params = sweep.get("parameters") or {}
    if not isinstance(block, dict) or set(block) - {"equivalent", "test_time"}:
        raise ValueError(f"{path}: '{BLOCK}' may hold 'equivalent' and 'test_time' only, got {block!r}")

    def known(key: str, where: str) -> None:
        if key not in params:
            raise ValueError(f"{path}: {where} names {key!r}, which is not one of the parameters {sorted(params)}")

    for key in block.get("test_time") or []:
        known(key, f"{BLOCK}.test_time")
    for n, rule in enumerate(block.get("equivalent") or []):
        where = f"{BLOCK}.equivalent[{n}]"
        if not isinstance(rule, dict) or set(rule) != {"when", "ignore"} or not isinstance(rule["when"], dict):
            raise ValueError(f"{path}: {where} needs 'when: {{key: value}}' and 'ignore: [keys]', got {rule!r}")
        for key, value in rule["when"].items():
            known(key, f"{where}.when")
            spec = params[key]
            if value not in spec.get("values", [spec.get("value")]):
                raise ValueError(f"{path}: {where}.when {key}={value!r} is none of the parameter's values")
        for key in rule["ignore"]:
            known(key, f"{where}.ignore")
    return block


def canonical(overrides: dict[str, Any], sweep: dict) -> dict[str, Any]:
    """``overrides`` with the keys an applying ``equivalent`` rule ignores set to their first grid value."""
    params = sweep["parameters"]
    out = dict(overrides)
    for rule in (sweep.get(BLOCK) or {}).get("equivalent") or []:
        if all(overrides.get(k) == v for k, v in rule["when"].items()):
            for key in rule["ignore"]:
                spec = params[key]
                out[key] = spec["values"][0] if "values" in spec else spec["value"]
    return out


def _key(overrides: dict[str, Any]) -> str:
    return json.dumps(overrides, sort_keys=True, default=str)


def plan_runs(sweep: dict, runs: list[dict[str, Any]]) -> list[PlannedRun]:
    """One :class:`PlannedRun` per grid combination of ``runs`` (see module doc)."""
    test_keys = list((sweep.get(BLOCK) or {}).get("test_time") or [])
    first_of: dict[str, int] = {}
    trained_by: dict[str, int] = {}
    plan = []
    for i, overrides in enumerate(runs):
        canon = canonical(overrides, sweep)
        train = {k: v for k, v in canon.items() if k not in test_keys}
        test = {k: v for k, v in canon.items() if k in test_keys}
        same_as = first_of.setdefault(_key(canon), i)
        first_training = trained_by.setdefault(_key(train), i)
        plan.append(
            PlannedRun(
                index=i,
                overrides=overrides,
                train_overrides={k: v for k, v in overrides.items() if k not in test_keys},
                test_overrides=test,
                train=first_training == i,
                trained_by=first_training,
                evaluate=bool(test_keys) and same_as == i,
                same_as=None if same_as == i else same_as,
            )
        )
    return plan


def for_wandb(sweep: dict) -> tuple[dict, list[str]]:
    """The sweep as wandb gets it (no ``dermfuse`` block, no test-time parameters) and notes to print."""
    block = sweep.get(BLOCK) or {}
    out = {k: v for k, v in sweep.items() if k not in (BLOCK, "smoke_config")}
    test_keys = list(block.get("test_time") or [])
    out["parameters"] = {k: v for k, v in sweep["parameters"].items() if k not in test_keys}
    notes = []
    if test_keys:
        notes.append(
            f"test-time parameters {test_keys} are not trained on wandb; score each run's checkpoint with "
            "python -m dermfuse_models.runner eval --ckpt <checkpoint> --set <key>=<value>"
        )
    if block.get("equivalent"):
        notes.append(
            "wandb grids cannot skip equivalent combinations (dermfuse.equivalent); run with --local to train each once"
        )
    return out, notes
