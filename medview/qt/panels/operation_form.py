"""A form for one catalogue operation: a widget per parameter, built from its type, range and unit.

The form never validates by itself beyond what the widgets enforce: :meth:`OperationForm.values` hands
the raw values to ``Operation.parse`` (the same validation the CLI uses), so messages are identical.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from medview.algorithms.operations import Operation, Param


def _points_text(points: list[np.ndarray] | list[tuple[float, ...]]) -> str:
    return "; ".join(",".join(f"{c:.1f}" for c in p) for p in points)


class OperationForm(QWidget):
    """Widgets for ``operation``'s parameters; ``changed`` fires on any edit (for live previews)."""

    changed = Signal()

    def __init__(self, operation: Operation, crosshair: Callable[[], np.ndarray] | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.operation = operation
        self.crosshair = crosshair
        self.widgets: dict[str, QWidget] = {}
        self._unset_at: dict[str, float] = {}  # optional numbers shown as "auto" at this value
        layout = QFormLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for p in operation.params:
            widget = self._widget_for(p)
            widget.setToolTip(p.help)
            self.widgets[p.name] = widget
            label = p.name.replace("_", " ") + (" *" if p.required else "")
            if p.kind in ("point", "points") and crosshair is not None:
                row = QWidget()
                h = QHBoxLayout(row)
                h.setContentsMargins(0, 0, 0, 0)
                h.addWidget(widget, 1)
                add = QPushButton("+ crosshair" if p.kind == "points" else "= crosshair")
                add.setToolTip("Use the crosshair position (click a point in a slice view first)")
                many = p.kind == "points"
                add.clicked.connect(lambda _c=False, name=p.name, many=many: self._use_crosshair(name, many))
                h.addWidget(add)
                if p.kind == "points":
                    clear = QPushButton("Clear")
                    clear.clicked.connect(lambda _c=False, w=widget: w.clear())
                    h.addWidget(clear)
                layout.addRow(label, row)
            else:
                layout.addRow(label, widget)

    def _widget_for(self, p: Param) -> QWidget:
        if p.kind == "float":
            w = QDoubleSpinBox()
            w.setDecimals(3)
            w.setRange(p.minimum if p.minimum is not None else -1e9, p.maximum if p.maximum is not None else 1e9)
            if p.exclusive_minimum and p.minimum is not None:
                w.setMinimum(p.minimum + 10 ** -w.decimals())
            if p.default is not None:
                w.setValue(float(p.default))
            else:
                # no default: the spin box's lowest value stands for "not set" -- "auto" (the operation's own
                # choice) or, for a required value, "not set": Run refuses until one is entered (issue 17)
                self._mark_unset(w, p)
            if p.unit:
                w.setSuffix(f" {p.unit}")
            w.valueChanged.connect(self.changed)
            return w
        if p.kind == "int":
            w = QSpinBox()
            lo = int(p.minimum) + (1 if p.exclusive_minimum else 0) if p.minimum is not None else -(2**31)
            w.setRange(lo, int(p.maximum) if p.maximum is not None else 2**31 - 1)
            if p.default is not None:
                w.setValue(int(p.default))
            elif p.required:
                self._mark_unset(w, p)
            if p.unit:
                w.setSuffix(f" {p.unit}")
            w.valueChanged.connect(self.changed)
            return w
        if p.kind == "bool":
            w = QCheckBox()
            w.setChecked(bool(p.default))
            w.toggled.connect(self.changed)
            return w
        if p.kind == "choice":
            w = QComboBox()
            w.addItems(list(p.choices))
            if p.default is not None:
                w.setCurrentText(str(p.default))
            w.currentTextChanged.connect(self.changed)
            return w
        w = QLineEdit()
        w.setPlaceholderText(("not set: " if p.required else "") + "x,y,z mm (LPS)"
                             + ("; ..." if p.kind == "points" else ""))
        if p.default is not None:
            w.setText(str(p.default))
        w.textChanged.connect(self.changed)
        return w

    def _mark_unset(self, w: QDoubleSpinBox | QSpinBox, p: Param) -> None:
        if isinstance(w, QSpinBox) and w.minimum() <= -(2**31) + 1:
            return  # no room below the range for the "not set" value
        w.setMinimum(w.minimum() - 1)
        w.setSpecialValueText("not set" if p.required else "auto")
        w.setValue(w.minimum())
        self._unset_at[p.name] = w.minimum()

    def missing(self) -> list[str]:
        """Required parameters that have no value yet."""
        given = self.values()
        return [p.name for p in self.operation.params if p.required and p.name not in given]

    def _use_crosshair(self, name: str, many: bool) -> None:
        if self.crosshair is None:
            return
        point = np.asarray(self.crosshair(), dtype=float)
        w = self.widgets[name]
        assert isinstance(w, QLineEdit)
        text = _points_text([point])
        w.setText(f"{w.text().strip()}; {text}" if many and w.text().strip() else text)

    def set_value(self, name: str, value: Any) -> None:
        """Set one widget (tests and presets)."""
        w = self.widgets[name]
        if isinstance(w, QDoubleSpinBox | QSpinBox):
            w.setValue(value)
        elif isinstance(w, QCheckBox):
            w.setChecked(bool(value))
        elif isinstance(w, QComboBox):
            w.setCurrentText(str(value))
        else:
            w.setText(value if isinstance(value, str) else _points_text(list(value)))

    def values(self) -> dict[str, Any]:
        """Raw values for ``Operation.parse`` (empty point fields are left out, so defaults apply)."""
        out: dict[str, Any] = {}
        for name, w in self.widgets.items():
            if isinstance(w, QDoubleSpinBox | QSpinBox):
                if name in self._unset_at and w.value() <= self._unset_at[name]:
                    continue  # "auto" (the operation's own default) or "not set" (required: parse refuses)
                out[name] = w.value()
            elif isinstance(w, QCheckBox):
                out[name] = w.isChecked()
            elif isinstance(w, QComboBox):
                out[name] = w.currentText()
            elif isinstance(w, QLineEdit) and w.text().strip():
                out[name] = w.text().strip()
        return out
