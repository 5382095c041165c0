"""flows.report: the one writer of tables (Markdown + CSV), JSON and figures."""

import json

import pytest

from flows.report import Column, csv_text, markdown_table, pyplot, save_figure, write_csv, write_json, write_table

ROWS = [{"name": "a", "x": 1.23456, "n": 3}, {"name": "b", "x": None, "n": 4}]
COLUMNS = [Column("name", "name", "name"), Column("x", "x_raw", "x (dB)", "{:.2f}".format),
           Column(lambda r: r["n"] * 2, "twice", None), Column("n", None, "n")]


def test_markdown_formats_and_leaves_missing_cells_empty():
    assert markdown_table(ROWS, COLUMNS) == ("| name | x (dB) | n |\n|---|---|---|\n| a | 1.23 | 3 |\n| b |  | 4 |\n")


def test_csv_keeps_raw_values_and_its_own_columns():
    assert csv_text(ROWS, COLUMNS) == "name,x_raw,twice\na,1.23456,6\nb,,8\n"


def test_write_table_is_atomic_and_takes_extra_markdown(tmp_path):
    md, csv = write_table(tmp_path / "out", ROWS, COLUMNS)
    assert md.read_text() == markdown_table(ROWS, COLUMNS) and csv.read_text() == csv_text(ROWS, COLUMNS)
    write_table(tmp_path / "out", ROWS, COLUMNS, name="t", markdown="# custom\n")
    assert (tmp_path / "out" / "t.md").read_text() == "# custom\n"
    write_csv(tmp_path / "out" / "e.csv", ROWS, COLUMNS)
    write_json(tmp_path / "out" / "s.json", {"a": [1, 2]})
    assert json.loads((tmp_path / "out" / "s.json").read_text()) == {"a": [1, 2]}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["e.csv", "s.json", "t.csv", "t.md", "table.csv",
                                                                    "table.md"]  # no temporary files


def test_save_figure_writes_a_png_and_closes_it(tmp_path):
    plt = pyplot()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    save_figure(fig, tmp_path / "f.png")
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.fignum_exists(fig.number)


def test_a_failed_figure_leaves_no_file(tmp_path):
    plt = pyplot()
    fig, _ = plt.subplots()

    def broken(path, **kwargs):
        with open(path, "wb") as f:
            f.write(b"half a png")
        raise OSError("disk full")

    fig.savefig = broken
    with pytest.raises(OSError, match="disk full"):
        save_figure(fig, tmp_path / "f.png")
    assert list(tmp_path.iterdir()) == [] and not plt.fignum_exists(fig.number)
