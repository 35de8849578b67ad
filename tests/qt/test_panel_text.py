"""Panel text is readable in the window as it opens: label names whole in the Labels table ('Tu...' before),
the series browser's name column not cut to 'Seri' in a narrow panel (issue 17, item 21)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QTreeWidget, QTreeWidgetItem

from medview.qt.main_window import MainWindow
from medview.qt.panels.labels import NAME


def _open(qtbot, window: MainWindow, path: Path) -> None:
    with qtbot.waitSignal(window.load_finished, timeout=60_000):
        window.open_path(str(path))
    qtbot.waitUntil(lambda: window.state.labels is not None, timeout=10_000)


def _text_fits(tree: QTreeWidget, item: QTreeWidgetItem, column: int) -> bool:
    """Whether the cell is wide enough for its text after the check box and icon (asked of the view)."""
    cell = tree.visualItemRect(item)
    width = tree.columnWidth(column)
    needed = tree.fontMetrics().horizontalAdvance(item.text(column).split("\n")[0])
    decorations = 2 * tree.iconSize().width() + 24  # tick box, colour swatch, margins
    return cell.height() > 0 and width >= needed + decorations


def test_label_names_are_whole_in_the_labels_table(qtbot, window: MainWindow, chest_ct_sample: Path) -> None:
    window.resize(1280, 800)
    _open(qtbot, window, chest_ct_sample)
    window.state.rename_label(1, "Tumour (right upper lobe)")
    qtbot.wait(50)
    tree = window.labels_panel.tree
    item = tree.topLevelItem(0)
    assert item.text(NAME) == "Tumour (right upper lobe)"
    assert _text_fits(tree, item, NAME), (tree.columnWidth(NAME), [tree.columnWidth(c) for c in range(4)])


def test_a_narrow_series_panel_shows_the_series_in_one_readable_column(qtbot, window: MainWindow,
                                                                        chest_ct_sample: Path) -> None:
    window.resize(1280, 800)
    _open(qtbot, window, chest_ct_sample)
    browser = window.browser
    qtbot.waitUntil(lambda: browser.tree.topLevelItemCount() == 1, timeout=30_000)
    tree = browser.tree
    item = tree.topLevelItem(0)
    assert browser.width() < 400  # as the window lays it out at this size
    assert [tree.isColumnHidden(c) for c in range(4)] == [False, True, True, True]
    lines = item.text(0).split("\n")
    assert lines[0].startswith("Chest CT") and "CT · 48 slices" in lines and lines[-1].startswith("512×512")
    assert tree.columnWidth(0) >= tree.viewport().width() - 2  # the one column has the panel's width
    browser.resize(520, browser.height())  # wide again: four columns, the name back to two lines
    qtbot.wait(20)
    assert [tree.isColumnHidden(c) for c in range(4)] == [False] * 4
    assert len(item.text(0).split("\n")) == 2 and item.text(1) == "CT" and item.text(2) == "48"
