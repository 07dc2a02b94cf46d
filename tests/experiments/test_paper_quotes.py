"""What the project attributes to a paper is in the paper's summary; suggestions say so (issue 11).

Every ``paper: "..."`` marker in the configs, READMEs, reported.yaml files and the packages' sources
is a verbatim span of the paper part of its summary, every ``suggested: "..."`` one of the summary's
own suggestions (:mod:`tests.paper_text`); configs and sources never write ``paper:`` without a quote;
and every section / table / equation / figure they cite exists in the summary. Skipped where
``../shared/papers/`` is absent (users do not have it).
"""

from __future__ import annotations

import re

import pytest

from tests import paper_text
from tests.paper_text import REPO, markers
from tests.paper_text import paper_text as text_of

pytestmark = pytest.mark.skipif(not paper_text.available(), reason="../shared/papers is absent")


def _where(path, text: str, needle: str) -> str:
    line = text[: text.find(needle)].count("\n") + 1 if needle in text else 0
    return f"{path.relative_to(REPO)}:{line}"


def test_the_summaries_split_into_paper_and_suggestions():
    """The splitter is not vacuous: known paper text lands in the paper part, known suggestions do not."""
    dualnet = text_of("dualnet")
    assert dualnet.has("paper", "HAM10000 test accuracy: 93.47%")
    assert dualnet.has("suggested", "Test cross-attention with different head configurations (1, 4, 8 heads)")
    assert not dualnet.has("paper", "(1, 4, 8 heads)")
    eamnet = text_of("eamnet")
    assert eamnet.has("suggested", "sweep k ∈ {16, 32, 64, 128}") and not eamnet.has("paper", "k ∈ {16, 32")
    assert eamnet.has("paper", "Section II.D describes Mk and Mv") and not eamnet.has("paper", "Section II.A")
    assert text_of("mammo_xattn").has("paper", "Mammogram (224x224) -> ResNet-50 ... GAP")
    for slug in paper_text.ARXIV:
        part = text_of(slug)
        assert len(part.paper) > 3000 and len(part.suggested) > 500, slug


def test_every_quote_is_in_the_part_of_the_summary_it_claims():
    problems, checked = [], 0
    for path in paper_text.project_files():
        text = paper_text.comment_text(path)
        slugs = paper_text.papers_of(path) or list(paper_text.ARXIV)
        for kind, quote in markers(text):
            checked += 1
            if not any(text_of(slug).has(kind, quote) for slug in slugs):
                other = "suggested" if kind == "paper" else "paper"
                hint = f" (it is in the {other} part)" if any(text_of(s).has(other, quote) for s in slugs) else ""
                problems.append(f'{_where(path, text, quote[:40])}: {kind}: "{quote}" not in {slugs}{hint}')
    assert problems == []
    assert checked >= 60, f"only {checked} quotes: the markers are not being found"


def test_configs_and_sources_never_attribute_to_the_paper_without_a_quote():
    unquoted = re.compile(r"\b[Pp]aper:(?=\s)(?!\s*[\"<])")  # ``paper: <title>`` is a format placeholder
    problems = []
    for path in paper_text.project_files():
        if path.suffix not in (".py", ".yaml"):
            continue
        text = paper_text.comment_text(path)
        problems += [
            _where(path, text, m.group(0)) + f": {text[m.start() : m.start() + 60]!r}" for m in unquoted.finditer(text)
        ]
    assert problems == [], 'write paper: "<verbatim text>", or mark the statement chosen / suggested'


def test_cited_sections_tables_equations_and_figures_exist_in_the_summary():
    problems = []
    for path in paper_text.project_files():
        slugs = paper_text.papers_of(path)
        if not slugs:
            continue
        known = set().union(*(text_of(s).references for s in slugs))
        text = paper_text.comment_text(path)
        for ref in paper_text.references(text):
            if ref not in known:
                problems.append(f"{path.relative_to(REPO)}: {ref[0]} {ref[1]} is not in the summary of {slugs}")
    assert problems == []


def test_the_checks_catch_misquotes_and_invented_references():
    eamnet = text_of("eamnet")
    assert not eamnet.has("paper", "the paper sweeps k over 16/32/64/128")
    assert not eamnet.has("paper", "Section II.D describes ... Section II.A")  # fragments in order only
    assert ("section", "ii.a") not in eamnet.references and ("section", "ii.d") in eamnet.references
    assert markers('x paper: "a b"\n suggested: "c\n d" papers: "no"') == [("paper", "a b"), ("suggested", "c d")]
    assert paper_text.references("Secs. 2-4, Table II and Eq. 3, Fig. 7") == [
        ("section", "2"),
        ("table", "ii"),
        ("equation", "3"),
        ("figure", "7"),
    ]
