"""Each paper's experiment README maps paper statements to code, and the code it names exists.

Issue 4: "Each paper's experiment README gets a fidelity table: paper statement -> class/argument
in code, and every place where the paper was silent and what was chosen." This test makes the
tables checkable: every backticked reference in the code column that names code is resolved:

* ``blocks/x.py`` / ``nets/x.py`` (optionally ``::Name``): the file exists under ``dermfuse_models``;
* ``dermfuse_models.a.b.Name`` / ``Name`` / ``Name(arg=...)``: the class or function is importable
  (from the paper's modules, or a known external library) and every keyword is in its signature;
* ``arg=value``: a constructor argument of a class named in the row or of the paper's nets/tasks
  (or, for a timm argument our code forwards, written as ``arg=`` in that class's module);
* ``key: value`` (YAML) and ``data.key``: an argument of those classes / of ``DermDataModule``;
* ``Class.attr``, ``self.attr``, ``attr = Linear(...)``, ``method(args)``, ``attr["key"]``:
  an attribute or method those classes define (and the method's named parameters);
* a bare identifier: an argument, attribute, function or choice name found in that code.

Shapes, formulas and metric keys are prose and are skipped; each row must name code.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "dermfuse_models"

#: The classes each paper's table is about (arguments without a class in their row belong to these).
PAPERS: dict[str, list[str]] = {
    "dualnet": [
        "dermfuse_models.nets.dualnet_unet.DeepUNet",
        "dermfuse_models.nets.dualnet_classifier.DualNetClassifier",
        "dermfuse_models.tasks.segmentation.SegmentationTask",
        "dermfuse_models.tasks.classification.ClassificationTask",
    ],
    "eamnet": ["dermfuse_models.nets.eamnet.EAMNet", "dermfuse_models.tasks.segmentation.SegmentationTask"],
    "msvit": ["dermfuse_models.nets.msvit.MSViT", "dermfuse_models.tasks.classification.ClassificationTask"],
    "mammo_xattn": [
        "dermfuse_models.nets.mammo_xattn.MammoXAttn",
        "dermfuse_models.tasks.classification.ClassificationTask",
        "dermfuse_models.runner.callbacks.FreezeBackbone",
    ],
    "vitatt": ["dermfuse_models.nets.vitatt.ViTAtt", "dermfuse_models.tasks.classification.ClassificationTask"],
}
#: Modules whose classes/functions a bare ``Name`` may refer to.
INDEXED_PACKAGES = ("dermfuse_models.nets", "dermfuse_models.blocks", "dermfuse_models.tasks")
INDEXED_MODULES = ("dermfuse_models.runner.callbacks", "dermfuse_models.encoders", "dermfuse_models.losses")
#: Library classes the tables name (checked too: importable, keywords in the signature).
EXTERNAL = {
    "SimpleASPP": "monai.networks.blocks.SimpleASPP",
    "DiceCELoss": "monai.losses.DiceCELoss",
    "BaseFinetuning": "pytorch_lightning.callbacks.BaseFinetuning",
    "EarlyStopping": "pytorch_lightning.callbacks.EarlyStopping",
    "LayerNorm": "torch.nn.LayerNorm",
    "Linear": "torch.nn.Linear",
    "ReLU": "torch.nn.ReLU",
    "Dropout": "torch.nn.Dropout",
}
DATAMODULE = "dermfuse_data.datamodule.DermDataModule"
IMPORTABLE_ROOTS = ("dermfuse_models", "dermfuse_data", "dermfuse_xai", "torch", "timm", "monai", "pytorch_lightning")


# ----------------------------------------------------------------------------- README parsing
def _sections(text: str) -> dict[str, str]:
    """``## heading`` -> body (up to the next ``## `` heading)."""
    parts = re.split(r"^## +(.+)$", text, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def _readme(paper: str) -> str:
    return (ROOT / "experiments" / paper / "README.md").read_text(encoding="utf-8")


def _section(paper: str, pattern: str) -> str:
    found = [body for title, body in _sections(_readme(paper)).items() if re.search(pattern, title, re.I)]
    assert len(found) == 1, f"experiments/{paper}/README.md needs exactly one '## ...{pattern}...' section"
    return found[0]


def _table_rows(section: str) -> list[tuple[str, str]]:
    """``(paper statement, code)`` body rows of the section's ``| paper | code |`` table."""
    lines = [ln.strip() for ln in section.splitlines() if ln.strip().startswith("|")]
    assert lines, "no markdown table"
    header = [c.strip().lower() for c in lines[0].strip("|").split("|")]
    assert header == ["paper", "code"], f"table header must be | paper | code |, got {header}"
    assert set(lines[1].replace("|", "").strip()) <= {"-", ":", " "}, "second line must be the separator"
    rows = []
    for line in lines[2:]:
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        assert len(cells) == 2 and all(cells), f"a row needs a statement and code: {line}"
        rows.append((cells[0], cells[1]))
    return rows


# ----------------------------------------------------------------------------- code lookups
def _import(dotted: str) -> Any:
    """Object for ``a.b.c.Name`` (longest importable module prefix, then attributes)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def _index() -> dict[str, list[Any]]:
    """Name -> classes/functions defined in the indexed dermfuse_models modules."""
    import pkgutil

    modules = list(INDEXED_MODULES)
    for package in INDEXED_PACKAGES:
        pkg = importlib.import_module(package)
        modules += [f"{package}.{m.name}" for m in pkgutil.iter_modules(pkg.__path__)]
    index: dict[str, list[Any]] = {}
    for name in modules:
        module = importlib.import_module(name)
        for attr, obj in vars(module).items():
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and obj.__module__ == name:
                index.setdefault(attr, []).append(obj)
    return index


INDEX = _index()


def _params(obj: Any) -> set[str]:
    """Parameter names of a class's ``__init__`` (through its MRO) or a function."""
    target = obj.__init__ if inspect.isclass(obj) else obj
    names: set[str] = set()
    for p in inspect.signature(target).parameters.values():
        if p.kind is p.VAR_KEYWORD and inspect.isclass(obj):
            for base in obj.__mro__[1:]:  # **kwargs forwarded to a base class
                if "__init__" in vars(base) and base is not object:
                    names |= _params(base)
                    break
        elif p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            names.add(p.name)
    return names - {"self"}


def _source(obj: Any) -> str:
    return inspect.getsource(inspect.getmodule(obj))


def _defines_attribute(cls: Any, attr: str) -> bool:
    return hasattr(cls, attr) or re.search(rf"self\.{attr}\s*(:[^=\n]*)?=", _source(cls)) is not None


@dataclass
class Checker:
    paper: str
    defaults: list[Any]
    problems: list[str] = field(default_factory=list)
    checked: int = 0

    def fail(self, span: str, why: str) -> None:
        self.problems.append(f"{self.paper}: `{span}`: {why}")

    def resolve_name(self, name: str, span: str) -> list[Any]:
        if name in INDEX:
            return INDEX[name]
        if name in EXTERNAL:
            return [_import(EXTERNAL[name])]
        self.fail(span, f"{name} is neither a dermfuse_models class/function nor a known library class")
        return []

    def check_call_keywords(self, objs: list[Any], call: str, span: str) -> None:
        """``Name(kw=..., ...)``: every keyword is a parameter of (one of) the named object(s)."""
        try:
            node = ast.parse(f"f{call}", mode="eval").body
        except SyntaxError:
            return  # prose in parentheses, e.g. ``EarlyStopping(val/loss, patience 10)``
        for kw in node.keywords:
            if not any(kw.arg in _params(obj) for obj in objs):
                self.fail(span, f"{kw.arg!r} is not an argument of {[o.__qualname__ for o in objs]}")

    def row_classes(self, spans: list[str]) -> list[Any]:
        classes = []
        for span in spans:
            match = re.match(r"^(?:[\w/]+\.py::)?(?:dermfuse_\w+(?:\.\w+)*\.)?([A-Z]\w*)(?:\(|\.|$)", span)
            if match and match.group(1) in INDEX:
                classes += [c for c in INDEX[match.group(1)] if inspect.isclass(c)]
        return classes

    def check_row(self, code: str) -> int:
        spans = re.findall(r"`([^`]+)`", code)
        candidates = self.row_classes(spans) + self.defaults
        before = self.checked
        for span in spans:
            self.check_span(span.strip(), candidates)
        return self.checked - before

    def check_span(self, span: str, candidates: list[Any]) -> None:
        sources = "\n".join(dict.fromkeys(_source(c) for c in candidates))
        if m := re.fullmatch(r"((?:\w+/)*\w+\.py)(?:::(.+))?", span):  # blocks/x.py[::Name(...)]
            self.checked += 1
            path = PACKAGE / m.group(1)
            if not path.is_file():
                self.fail(span, f"dermfuse_models/{m.group(1)} does not exist")
                return
            if m.group(2):
                module = "dermfuse_models." + m.group(1)[:-3].replace("/", ".")
                name, _, call = m.group(2).partition("(")
                try:
                    obj = _import(f"{module}.{name}")
                except (ImportError, AttributeError):
                    self.fail(span, f"{name} is not defined in {module}")
                    return
                if call:
                    self.check_call_keywords([obj], "(" + call, span)
            return
        if m := re.fullmatch(r"((?:" + "|".join(IMPORTABLE_ROOTS) + r")(?:\.\w+)+)(\(.*\))?", span, flags=re.S):
            self.checked += 1
            try:
                obj = _import(m.group(1))
            except (ImportError, AttributeError):
                self.fail(span, "not importable")
                return
            if m.group(2):
                self.check_call_keywords([obj], m.group(2), span)
            return
        if m := re.fullmatch(r"([A-Z]\w*)(\(.*\))?", span, flags=re.S):  # Name / Name(kw=...)
            self.checked += 1
            objs = self.resolve_name(m.group(1), span)
            if objs and m.group(2):
                self.check_call_keywords(objs, m.group(2), span)
            return
        if m := re.fullmatch(r"([A-Z]\w*)\.(\w+)", span):  # Class.attr
            self.checked += 1
            objs = [o for o in self.resolve_name(m.group(1), span) if inspect.isclass(o)]
            if objs and not any(_defines_attribute(o, m.group(2)) for o in objs):
                self.fail(span, f"{m.group(1)} has no attribute {m.group(2)!r}")
            return
        if m := re.fullmatch(r"(\w+)=(\S.*)", span, flags=re.S):  # arg=value
            self.checked += 1
            name = m.group(1)
            if not any(name in _params(c) for c in candidates) and not re.search(rf"\b{name}=", sources):
                self.fail(span, f"{name!r} is not an argument of {[c.__qualname__ for c in candidates]}")
            return
        if m := re.fullmatch(r"data\.(\w+)(?::\s.*)?", span, flags=re.S):  # data.key[: value]
            self.checked += 1
            datamodule = _import(DATAMODULE)
            if m.group(1) not in _params(datamodule) and not _defines_attribute(datamodule, m.group(1)):
                self.fail(span, f"DermDataModule has no argument or attribute {m.group(1)!r}")
            return
        if m := re.fullmatch(r"(\w+):\s.+", span, flags=re.S):  # YAML init_args key: value
            self.checked += 1
            if not any(m.group(1) in _params(c) for c in candidates):
                self.fail(span, f"{m.group(1)!r} is not an argument of {[c.__qualname__ for c in candidates]}")
            return
        if m := re.fullmatch(r"self\.(\w+)", span):
            self.checked += 1
            if not any(_defines_attribute(c, m.group(1)) for c in candidates):
                self.fail(span, f"no class of this row sets self.{m.group(1)}")
            return
        if m := re.fullmatch(r"([a-z_]\w*)\(([\w, ]*)\)(?:\s*(?:=|->).*)?", span, flags=re.S):  # method(args)
            self.checked += 1
            owners = [c for c in candidates if callable(getattr(c, m.group(1), None))]
            if not owners:
                self.fail(span, f"no class of this row has a method {m.group(1)}()")
                return
            named = {a.strip() for a in m.group(2).split(",") if a.strip()}
            if not any(named <= set(inspect.signature(getattr(o, m.group(1))).parameters) for o in owners):
                self.fail(span, f"{m.group(1)}() does not take {sorted(named)}")
            return
        if m := re.fullmatch(r"([a-z_]\w*) = [A-Z]\w*\(.*", span, flags=re.S):  # attr = Linear(...)
            self.checked += 1
            if not any(_defines_attribute(c, m.group(1)) for c in candidates):
                self.fail(span, f"no class of this row sets self.{m.group(1)}")
            return
        if m := re.fullmatch(r'(\w*)\["(\w+)"\]', span):  # attention_maps["cross"] / ["key"]
            self.checked += 1
            if m.group(1) and not any(_defines_attribute(c, m.group(1)) for c in candidates):
                self.fail(span, f"no class of this row has {m.group(1)!r}")
            if f'"{m.group(2)}"' not in sources:
                self.fail(span, f'the key "{m.group(2)}" is not produced by this row\'s code')
            return
        if m := re.fullmatch(r'"(\w+)"', span):  # a string choice, e.g. "parallel"
            self.checked += 1
            if f'"{m.group(1)}"' not in sources:
                self.fail(span, f"{span} is not a value used by this row's code")
            return
        if re.fullmatch(r"[a-z_][a-z0-9_]*", span):  # bare identifier
            self.checked += 1
            known = (
                any(span in _params(c) or _defines_attribute(c, span) for c in candidates)
                or span in INDEX
                or re.search(rf"\b{span}\b", sources) is not None
            )
            if not known:
                self.fail(span, "not an argument, attribute, function or name of this row's code")
        # anything else (shapes, formulas, metric keys, prose) is not a code reference


@pytest.mark.parametrize("paper", sorted(PAPERS))
def test_readme_has_a_fidelity_table_and_a_silent_section(paper):
    rows = _table_rows(_section(paper, r"^Fidelity"))
    assert len(rows) >= 8, f"{paper}: only {len(rows)} fidelity rows"
    silent = _section(paper, r"silent")
    bullets = [ln for ln in silent.splitlines() if ln.startswith("- ")]
    assert len(bullets) >= 4, f"{paper}: the 'where the paper is silent' section lists {len(bullets)} choices"


@pytest.mark.parametrize("paper", sorted(PAPERS))
def test_every_code_reference_in_the_fidelity_table_exists(paper):
    checker = Checker(paper, [_import(name) for name in PAPERS[paper]])
    unchecked_rows = []
    for statement, code in _table_rows(_section(paper, r"^Fidelity")):
        if checker.check_row(code) == 0:
            unchecked_rows.append(statement)
    assert checker.problems == []
    assert unchecked_rows == [], f"{paper}: rows that name no checkable code: {unchecked_rows}"
    assert checker.checked >= 10, f"{paper}: only {checker.checked} references checked"


def test_the_checker_catches_wrong_references():
    """The resolver is not vacuous: misspelt classes, arguments, attributes and files are reported."""
    checker = Checker("eamnet", [_import(name) for name in PAPERS["eamnet"]])
    wrong = [
        "`EAMNett`",
        "`memory_units=64`",
        "`EAMNet(memory=64)`",
        "`EAMNet.bridge_heads`",
        "`blocks/eab.py`",
        "`blocks/cmam.py::CrossMix`",
        "`dermfuse_models.nets.eamnet.EAMNetV2`",
        "`cmam_heads: 4x`",
        "`data.meta_featurez: all`",
        "`self.memory_bank`",
        "`mixed_term(x)`",
        '`attention_maps["pixel"]`',
        "`memory_sizes`",
        '`"sum_mode"`',
        "`scheduler_name: cosine`",
    ]
    for span in wrong:
        checker.check_row(span)
    reported = {p.split("`")[1] for p in checker.problems}
    assert reported == {w.strip("`") for w in wrong} - {"cmam_heads: 4x"}  # a YAML value is not checked
    checker.problems.clear()
    checker.check_row(
        "`EAMNet(memory_size=16)` `use_eab=false`... `cmam_mode: serial` `blocks/cmam.py::CrossMixAttention`"
    )
    assert checker.problems == []


@pytest.mark.parametrize("paper", sorted(PAPERS))
def test_every_fidelity_statement_quotes_the_paper_or_is_marked_suggested(paper):
    """Each row's statement is verbatim summary text in double quotes: the paper's (found in its paper part)
    or, in a cell that starts ``suggested:``, one of the summary's own suggestions."""
    from tests import paper_text

    if not paper_text.available():
        pytest.skip("../shared/papers is absent")
    summary = paper_text.paper_text(paper)
    problems = []
    for statement, _ in _table_rows(_section(paper, r"^Fidelity")):
        kind = "suggested" if statement.startswith("suggested:") else "paper"
        quotes = re.findall(r'"([^"]+)"', statement)
        if not quotes:
            problems.append(f"{statement!r}: no quoted text")
        problems += [f"{statement!r}: {kind} quote {q!r} not found" for q in quotes if not summary.has(kind, q)]
    assert problems == []
