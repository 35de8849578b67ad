"""The Labels table driven as a user does: ticking a label's visibility and lock boxes with the mouse and by
check state many times in the real window. The table used to clear and rebuild itself from inside its own
itemChanged handler, deleting the item Qt was still using: SIGSEGV in libQt6Widgets within a few toggles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QStyle, QStyleOptionViewItem, QTreeWidget, QTreeWidgetItem

from medview.qt.main_window import MainWindow
from medview.qt.panels.labels import LOCKED, NAME

TOGGLES = 200


def _open(qtbot, window: MainWindow, path: Path) -> None:
    with qtbot.waitSignal(window.load_finished, timeout=60_000):
        window.open_path(str(path))
    qtbot.waitUntil(lambda: window.state.labels is not None, timeout=10_000)  # the sample's tumour label


def _rows(tree: QTreeWidget) -> list[QTreeWidgetItem]:
    return [tree.topLevelItem(i) for i in range(tree.topLevelItemCount())]


def _check_box_centre(tree: QTreeWidget, item: QTreeWidgetItem, column: int) -> QPoint:
    """Where the check box of ``item`` in ``column`` is drawn, in viewport coordinates (asked of the style)."""
    option = QStyleOptionViewItem()
    option.initFrom(tree.viewport())
    option.rect = tree.visualRect(tree.indexFromItem(item, column))  # the cell, after the tree's indentation
    option.features |= QStyleOptionViewItem.ViewItemFeature.HasCheckIndicator
    if not item.icon(column).isNull():
        option.features |= QStyleOptionViewItem.ViewItemFeature.HasDecoration
        option.decorationSize = tree.iconSize() if tree.iconSize().isValid() else option.decorationSize
    option.features |= QStyleOptionViewItem.ViewItemFeature.HasDisplay
    option.text = item.text(column)
    rect = tree.style().subElementRect(QStyle.SubElement.SE_ItemViewItemCheckIndicator, option, tree)
    return rect.center()


def _click_box(qtbot, tree: QTreeWidget, item: QTreeWidgetItem, column: int) -> None:
    QTest.mouseClick(tree.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     _check_box_centre(tree, item, column))


def _checked(item: QTreeWidgetItem, column: int) -> bool:
    return item.checkState(column) == Qt.CheckState.Checked


def test_toggling_visibility_and_lock_200_times_with_the_mouse(qtbot, window: MainWindow,
                                                               chest_ct_sample: Path) -> None:
    _open(qtbot, window, chest_ct_sample)
    state = window.state
    state.add_label("Nodule 2", (10, 200, 30))
    tree = window.labels_panel.tree
    qtbot.waitUntil(lambda: tree.isVisible() and tree.topLevelItemCount() == 2, timeout=10_000)
    axial = window.grid.views["axial"]
    # the first click on a box must toggle it (the mouse is where the style draws the box): checked below
    for i in range(TOGGLES):
        row = i % 2
        column = NAME if (i // 2) % 2 == 0 else LOCKED
        item = _rows(tree)[row]
        value = int(item.data(NAME, Qt.ItemDataRole.UserRole))
        entry = state.labels.label(value)
        before = entry.visible if column == NAME else entry.locked
        assert _checked(item, column) == before
        _click_box(qtbot, tree, item, column)
        qtbot.wait(1)  # let queued events (a deferred refresh, a redraw) run, as between a user's clicks
        entry = state.labels.label(value)
        after = entry.visible if column == NAME else entry.locked
        assert after == (not before), f"toggle {i}: label {value} column {column} did not follow the click"
        item = _rows(tree)[row]
        assert _checked(item, column) == after
        assert [int(r.data(NAME, Qt.ItemDataRole.UserRole)) for r in _rows(tree)] == [1, 2]
        if value == 1 and column == NAME and i % 20 == 0:  # the tumour is drawn exactly while it is ticked
            z = int(np.rint(state.volume.geometry.world_to_index(state.cursor))[2])
            on_slice = bool((state.labels.array[z] == 1).any())
            drawn = axial.shown_labels()
            shown = drawn is not None and bool((drawn[..., 3] > 0).any())
            assert shown == (after and on_slice)
    assert [e.name for e in state.labels.labels] == ["Tumour", "Nodule 2"]  # nothing renamed on the way


def test_toggling_by_check_state_changes_200_times(qtbot, window: MainWindow, chest_ct_sample: Path) -> None:
    """The same through the item's check state, as an accessibility tool or a script changes it."""
    _open(qtbot, window, chest_ct_sample)
    state = window.state
    tree = window.labels_panel.tree
    qtbot.waitUntil(lambda: tree.topLevelItemCount() == 1, timeout=10_000)
    for i in range(TOGGLES):
        column = NAME if i % 2 == 0 else LOCKED
        entry = state.labels.label(1)
        before = entry.visible if column == NAME else entry.locked
        _rows(tree)[0].setCheckState(column, Qt.CheckState.Unchecked if before else Qt.CheckState.Checked)
        qtbot.wait(1)
        entry = state.labels.label(1)
        after = entry.visible if column == NAME else entry.locked
        assert after == (not before), f"toggle {i} (column {column}) did not reach the label table"
        assert _checked(_rows(tree)[0], column) == after


def test_a_refused_change_puts_the_row_back_without_crashing(qtbot, window: MainWindow, chest_ct_sample: Path,
                                                             monkeypatch) -> None:
    """A change the session refuses shows its message and puts the row back (that rebuild also ran inside the
    handler); the name the user typed does not stay in the table, and a blank name is not kept either."""
    from PySide6.QtWidgets import QMessageBox

    from medview.core.errors import MedviewError

    _open(qtbot, window, chest_ct_sample)
    warnings: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: warnings.append(a[2]))
    tree = window.labels_panel.tree
    qtbot.waitUntil(lambda: tree.topLevelItemCount() == 1, timeout=10_000)

    def refuse(value: int, name: str) -> None:
        raise MedviewError("This label's name comes from the atlas and cannot be changed")

    monkeypatch.setattr(window.state, "rename_label", refuse)
    for i in range(20):
        _rows(tree)[0].setText(NAME, f"Other {i}")
        qtbot.wait(1)
        assert _rows(tree)[0].text(NAME) == "Tumour"
    assert len(warnings) == 20 and all("atlas" in w for w in warnings)
    monkeypatch.undo()
    _rows(tree)[0].setText(NAME, "   ")
    qtbot.wait(1)
    assert _rows(tree)[0].text(NAME) == "Tumour" and window.state.labels.label(1).name == "Tumour"


def test_renaming_measurements_in_their_table_many_times(qtbot, window: MainWindow, chest_ct_sample: Path) -> None:
    """The Measurements table had the same pattern: a rename announced "measurements" from inside its
    itemChanged and the table replaced every item, the renamed one included."""
    from PySide6.QtWidgets import QLineEdit

    from medview.app.measurements import Measurement

    _open(qtbot, window, chest_ct_sample)
    state = window.state
    for k in range(2):
        start = np.array(state.cursor, dtype=float)
        state.add_measurement(Measurement("distance", [start, start + [10.0 * (k + 1), 0.0, 0.0]]))
    window.modes.show_panel("Measurements")
    table = window.measurements.table
    qtbot.waitUntil(table.isVisible, timeout=5000)
    assert table.rowCount() == 2
    for i in range(60):
        row = i % 2
        item = table.item(row, 0)
        if i % 3 == 0:  # through the editor, as a user renames: double-click, type, Enter
            table.scrollToItem(item)
            rect = table.visualItemRect(item)
            for click in (QTest.mouseClick, QTest.mouseDClick):  # QTest's double-click alone opens no editor
                click(table.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, rect.center())
            editors = [e for e in table.viewport().findChildren(QLineEdit) if e.isVisible()]
            assert len(editors) == 1, "double-clicking the name opens its editor"
            editor = editors[0]
            editor.selectAll()
            QTest.keyClicks(editor, f"Lesion {i}")
            QTest.keyClick(editor, Qt.Key.Key_Return)
        else:
            item.setText(f"Lesion {i}")
            assert item.text() == f"Lesion {i}"  # the item the user changed is still the table's
        qtbot.wait(1)
        assert list(state.measurements)[row].name == f"Lesion {i}"
        assert table.item(row, 0).text() == f"Lesion {i}"
        assert table.item(row, 0) is item  # the item Qt was changing was not deleted under it
    assert [table.item(r, 1).text() for r in range(2)] == ["distance", "distance"]
