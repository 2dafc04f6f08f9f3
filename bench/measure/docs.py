"""The scripts' sections of docs/benchmarks.md: each rewrites its own, between its markers."""

from __future__ import annotations

from measure.paths import DOCS, ROOT

DOCS_INTRO = """\
Each section below is produced by a script in `bench/`, named at the top of the section, on
the machine the section describes. To rerun one, run its script from the repository root, e.g.
`uv run python bench/ingest.py --write-docs` for Ingest (it rewrites the measurements between
its markers and keeps the analysis after them); each script's docstring lists its options.
"""


def write_docs(section: str, script: str, heading: str, preamble: str = "") -> None:
    """Replace what is between ``script``'s markers in docs/benchmarks.md, or append its
    section (``heading``, ``preamble``, markers) at the end; nothing else changes. The file is
    read just before it is written: other scripts write their own sections."""
    begin = f"<!-- bench/{script} writes from here -->"
    end = f"<!-- bench/{script} writes up to here -->"
    text = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    if DOCS_INTRO not in text:
        title, _, rest = text.partition("\n")
        text = f"{title}\n\n{DOCS_INTRO}{rest}"
    if begin in text and end in text:
        before, rest = text.split(begin, 1)
        after = rest.split(end, 1)[1]
        text = f"{before}{begin}\n{section}{end}{after}"
    else:
        preamble = f"{preamble}\n\n" if preamble else ""
        text = f"{text.rstrip()}\n\n{heading}\n\n{preamble}{begin}\n{section}{end}\n"
    DOCS.write_text(text)
    print(f"\nwrote {DOCS.relative_to(ROOT)}")
