"""interpreter.cells: splitting source text at ## and # %% markers."""

import ast
import traceback

from interpreter.cells import Cell, cell_at, split_cells

SPYDER = """\
import os
x = 1

# %% First
y = x + 1

#%%Second one
def f():
    return 1 / 0
# %%
z = f()
"""

IEP = """\
## Setup
a = 1
## Compute
b = a * 2
c = b + 1
"""


def test_spyder_markers():
    cells = split_cells(SPYDER)
    assert [(c.lineno, c.title) for c in cells] == [
        (1, ""), (4, "First"), (7, "Second one"), (10, "")]
    assert cells[0].source == "import os\nx = 1\n\n"
    assert cells[1].source == "# %% First\ny = x + 1\n\n"
    assert cells[3].source == "# %%\nz = f()\n"


def test_iep_markers():
    cells = split_cells(IEP)
    assert cells == [Cell(1, "## Setup\na = 1\n", "Setup"),
                     Cell(3, "## Compute\nb = a * 2\nc = b + 1\n", "Compute")]


def test_cells_put_together_give_the_text_back():
    for text in (SPYDER, IEP, "", "\n\n", "x = 1", "# %%\n"):
        cells = split_cells(text)
        assert "".join(c.source for c in cells).strip() == text.strip()


def test_statements_keep_their_line_numbers():
    lines = SPYDER.splitlines()
    for cell in split_cells(SPYDER):
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.stmt):
                lineno = cell.lineno + node.lineno - 1
                assert lines[lineno - 1].strip().startswith(
                    ast.get_source_segment(cell.source, node).split("\n")[0])


def test_traceback_shows_the_file_line():
    # What the kernel does with (source, filename, lineno): pad, compile, run.
    cells = split_cells(SPYDER)
    namespace = {}
    for cell in cells:
        code = compile("\n" * (cell.lineno - 1) + cell.source, "script.py", "exec")
        try:
            exec(code, namespace)
        except ZeroDivisionError as error:
            frames = traceback.extract_tb(error.__traceback__)
            assert [frame.lineno for frame in frames[1:]] == [11, 9]
            break
    else:
        raise AssertionError("the last cell should raise")


def test_blank_text_before_the_first_marker_is_dropped():
    cells = split_cells("\n   \n## One\npass\n")
    assert [(c.lineno, c.title, c.source) for c in cells] == [(3, "One", "## One\npass\n")]


def test_text_without_markers_is_one_cell():
    assert split_cells("a = 1\nb = 2") == [Cell(1, "a = 1\nb = 2", "")]
    assert split_cells("") == []
    assert split_cells("  \n") == []


def test_what_is_not_a_marker():
    text = "x = 1\n  # %% indented\n# % one percent\n# single\n#  %% two spaces\ns = '## no'\n"
    assert split_cells(text) == [Cell(1, text, "")]


def test_marker_variants_and_titles():
    text = "### Three\n# %%% Sub\n# %% [markdown]\n##\n#%%\n"
    assert [(c.lineno, c.title) for c in split_cells(text)] == [
        (1, "Three"), (2, "Sub"), (3, "[markdown]"), (4, ""), (5, "")]


def test_line_endings():
    text = "a = 1\r\n## B\r\nb = 2\r## C\nc = 3\x0c\n"
    cells = split_cells(text)
    assert [(c.lineno, c.title) for c in cells] == [(1, ""), (2, "B"), (4, "C")]
    assert cells[1].source == "## B\r\nb = 2\r"
    # a form feed does not end a line for Python, so it does not here
    assert split_cells("a\x0c## no\n") == [Cell(1, "a\x0c## no\n", "")]


def test_cell_at():
    assert cell_at(SPYDER, 1).lineno == 1
    assert cell_at(SPYDER, 3).lineno == 1
    assert cell_at(SPYDER, 4).title == "First"
    assert cell_at(SPYDER, 9).title == "Second one"
    assert cell_at(SPYDER, 11).lineno == 10
    assert cell_at(SPYDER, 12) is None
    assert cell_at("\n\n## A\nx\n", 1) is None
    assert cell_at("\n\n## A\nx\n", 4).title == "A"
