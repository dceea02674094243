"""Cells of a source file: the pieces an editor runs one at a time.

A cell starts at a marker line, a comment at the very start of a line:

    ##  title         IEP / Pyzo (also ###...)
    # %% title        Spyder, VS Code, Jupytext (also #%% and # %%% for sub-cells)

and runs to the next marker or the end of the text. Text before the first marker is
a cell too when it is not blank. A cell's source starts with its marker line, so
`kernel.execute(cell.source, filename=path, lineno=cell.lineno)` puts every line at
its place in the file. Markers inside strings are markers all the same, as in those
editors. Only "\\n", "\\r\\n" and "\\r" end lines, as for Python's compiler.

The console's `--cell N` runs `split_cells(text)[N - 1]`: N counts the cells this
module returns, 1-based, the text before the first marker included when it is kept.
"""

import re
from typing import List, NamedTuple, Optional

__all__ = ["Cell", "split_cells", "cell_at"]

_MARKER = re.compile(r"#(?:#+| ?%%+)(.*)")
_LINES = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")


class Cell(NamedTuple):
    lineno: int   # 1-based line number of the cell's first line in the text
    source: str   # the cell's text, from its marker line up to the next marker
    title: str    # the marker line after the marker, stripped; "" before the first marker


def split_cells(text: str) -> List[Cell]:
    """The cells of `text`, in order."""
    cells = []
    start, title, current = 1, "", []
    for number, line in enumerate(_LINES.findall(text), 1):
        marker = _MARKER.match(line)
        if marker:
            _add(cells, start, current, title)
            start, title, current = number, marker.group(1).strip(), []
        current.append(line)
    _add(cells, start, current, title)
    return cells


def cell_at(text: str, lineno: int) -> Optional[Cell]:
    """The cell that holds line `lineno` (1-based), or None (blank lines before the first)."""
    found = None
    for cell in split_cells(text):
        if cell.lineno > lineno:
            break
        found = cell
    if found is None or lineno >= found.lineno + len(_LINES.findall(found.source)):
        return None
    return found


def _add(cells, start, lines, title):
    source = "".join(lines)
    if start > 1 or source.strip():  # only the text before the first marker may be dropped
        cells.append(Cell(start, source, title))
