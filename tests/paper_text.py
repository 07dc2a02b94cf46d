"""The papers' summaries (``../shared/papers/*.md``) split into what the paper says and what the summary suggests.

Quote convention (README "Paper or suggestion"): anything a config, docstring, README or reported.yaml
attributes to a paper is written ``paper: "<verbatim text of the summary>"``; the summary's own ideas
(its "first experiments", "open questions", "limitations", "confidence" and "next checks") are
``suggested: "<verbatim text>"``. ``...`` inside a quote skips text. The tests find every marker and
look the quote up, after :func:`normalise`, in the matching part of the paper's summary.
"""

from __future__ import annotations

import io
import re
import tokenize
from dataclasses import dataclass
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAPERS_DIR = REPO.parent / "shared" / "papers"
#: slug -> arXiv id (DESIGN.md)
ARXIV = {
    "dualnet": "2510.17773",
    "vitatt": "2304.14505",
    "eamnet": "2512.07275",
    "msvit": "2502.06243",
    "mammo_xattn": "2508.16000",
}
#: headings of the summary's own sections (suggestions and judgements, not the paper's content)
SUGGESTION_HEADINGS = re.compile(r"open questions|limitations|confidence|next checks", re.I)
#: the "first experiments" list that closes each summary's Architecture Onboarding section
FIRST_EXPERIMENTS = re.compile(r"first\s+(?:3\s+|three\s+)?experiments", re.I)
MARKER = re.compile(r"\b(paper|suggested):\s*\"([^\"]+)\"")
#: a reference to a section, table, equation or figure: kind, identifier
REFERENCE = re.compile(
    r"\b(Secs?\.|Sections?|Tables?|Eqs?\.|Equations?|Figs?\.|Figures?)\s*(\(?[IVX]+(?:\.[A-Z])?|\d+(?:\.\d+)*)\b",
    re.I,
)
REFERENCE_KINDS = {"se": "section", "ta": "table", "eq": "equation", "fi": "figure"}


def normalise(text: str) -> str:
    """Lower case, plain quotes and dashes, no Markdown/LaTeX markup, single spaces."""
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')
    text = re.sub("[\u2013\u2014\u2212]", "-", text)
    text = re.sub(r"[*`$\\]", "", text)
    return re.sub(r"\s+", " ", text).strip().lower()


@dataclass(frozen=True)
class PaperText:
    """One summary: the paper's content and the summary's suggestions, each normalised."""

    slug: str
    paper: str
    suggested: str

    def has(self, kind: str, quote: str) -> bool:
        """Whether ``quote`` (``...`` skips text) is in the ``paper`` or ``suggested`` part, fragments in order."""
        text = self.paper if kind == "paper" else self.suggested
        position = 0
        for fragment in re.split(r"\.\.\.|\u2026", quote):
            fragment = normalise(fragment).strip(" ,;:.")
            if not fragment:
                continue
            found = text.find(fragment, position)
            if found < 0:
                return False
            position = found + len(fragment)
        return True

    @property
    def references(self) -> set[tuple[str, str]]:
        """Canonical ``(kind, id)`` of every section / table / equation / figure the summary names."""
        return set(references(self.paper + " " + self.suggested))


def available() -> bool:
    """Whether the summaries are here (the developers' checkout; users do not have ``../shared``)."""
    return all(any(PAPERS_DIR.glob(f"{slug}_*.md")) for slug in ARXIV)


@cache
def paper_text(slug: str) -> PaperText:
    """The summary of ``slug`` split into its paper part and its suggestion part (see module doc)."""
    (path,) = PAPERS_DIR.glob(f"{slug}_*.md")
    paper, suggested = [], []
    in_suggestion = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            in_suggestion = bool(SUGGESTION_HEADINGS.search(line))
        elif FIRST_EXPERIMENTS.search(line):
            in_suggestion = True  # runs to the next heading
        (suggested if in_suggestion else paper).append(line)
    return PaperText(slug, normalise("\n".join(paper)), normalise("\n".join(suggested)))


def references(text: str) -> list[tuple[str, str]]:
    """Canonical ``(kind, id)`` of the references in ``text`` (``Sec. II.C`` -> ``("section", "ii.c")``)."""
    out = []
    for kind, ident in REFERENCE.findall(text):
        canonical = REFERENCE_KINDS[kind.lower()[:2]]
        out.append((canonical, ident.strip("(").lower()))
    return out


def comment_text(path: Path) -> str:
    """A file's prose, line by line: Python's comments and strings only (not its code), YAML and Makefile lines
    with indentation and comment markers removed (so a quote may span lines), Markdown as is."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".py":
        lines = [""] * (text.count("\n") + 2)
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type in (tokenize.COMMENT, tokenize.STRING):
                for offset, part in enumerate(token.string.splitlines()):
                    lines[token.start[0] - 1 + offset] += " " + part
        text = "\n".join(lines)
    if path.suffix in (".py", ".yaml", ".yml") or path.name == "Makefile":
        text = "\n".join(re.sub(r"^\s*(#+\s?)?", "", line) for line in text.splitlines())
    return text


def papers_of(path: Path) -> list[str]:
    """The papers a file speaks about: its experiment folder, else the arXiv ids it names (``[]``: none)."""
    parts = path.resolve().relative_to(REPO).parts
    if parts[0] == "experiments" and len(parts) > 2 and parts[1] in ARXIV:
        return [parts[1]]
    text = path.read_text(encoding="utf-8")
    return [slug for slug, arxiv in ARXIV.items() if arxiv in text]


def markers(text: str) -> list[tuple[str, str]]:
    """``(kind, quote)`` of every ``paper: "..."`` / ``suggested: "..."`` marker in ``text``."""
    return [(kind, re.sub(r"\s+", " ", quote)) for kind, quote in MARKER.findall(text)]


def project_files() -> list[Path]:
    """Every file where a statement about a paper may be: configs, READMEs, the packages' sources."""
    files = [REPO / "README.md", REPO / "Makefile"]
    files += sorted((REPO / "experiments").rglob("*.yaml")) + sorted((REPO / "experiments").rglob("*.md"))
    for package in ("dermfuse_data", "dermfuse_models", "dermfuse_xai"):
        files += sorted((REPO / package).rglob("*.py")) + sorted((REPO / package).rglob("*.md"))
    return [f for f in files if f.is_file()]
