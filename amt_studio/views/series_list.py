"""The series list beside the plots, where their legends live: a group per plot and a checkable row per curve (a
colour swatch and the series' name); a click on a name, not only on its check box, shows or hides the curve.
"""

from __future__ import annotations

from collections.abc import Iterable

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import QTreeWidget, QTreeWidgetItem


class SeriesList(QTreeWidget):
    """Rows for curves, grouped by plot; `toggled(row, shown)` says a row was checked or unchecked."""

    toggled = Signal(object, bool)
    """(the row's QTreeWidgetItem, whether its curve is to be shown)."""

    def __init__(self, plots: Iterable[tuple[str, str]], expanded: Iterable[str] = ()) -> None:
        """`plots`: (key, title) of each plot, in order; the groups of `expanded` start unfolded."""
        super().__init__()
        self.setHeaderHidden(True)
        self.setMinimumWidth(150)
        self.setRootIsDecorated(True)
        self.setToolTip("click a series to show or hide its curve")
        self.itemChanged.connect(self._item_changed)
        self.itemPressed.connect(self._item_pressed)
        self.itemClicked.connect(self._item_clicked)
        self._pressed: tuple[QTreeWidgetItem, Qt.CheckState] | None = None
        self.groups: dict[str, QTreeWidgetItem] = {}
        """Each plot's group row, by plot key."""
        expanded = set(expanded)
        for key, title in plots:
            top = QTreeWidgetItem([title])
            top.setFlags(Qt.ItemFlag.ItemIsEnabled)
            self.addTopLevelItem(top)
            self.groups[key] = top
            top.setExpanded(key in expanded)

    def add(self, key: str, label: str, colour: QColor, tip: str) -> QTreeWidgetItem:
        """A checked row for a new curve of plot `key`, with its colour's swatch."""
        item = QTreeWidgetItem([label])
        item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsSelectable)
        item.setCheckState(0, Qt.CheckState.Checked)
        swatch = QPixmap(10, 10)
        swatch.fill(colour)
        item.setIcon(0, QIcon(swatch))
        item.setToolTip(0, tip)
        self.blockSignals(True)  # adding a row is not a toggle
        self.groups[key].addChild(item)
        self.blockSignals(False)
        return item

    @staticmethod
    def remove(item: QTreeWidgetItem) -> None:
        parent = item.parent()
        if parent is not None:
            parent.removeChild(item)

    @staticmethod
    def set_checked(item: QTreeWidgetItem, checked: bool) -> None:
        item.setCheckState(0, Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)

    def _item_changed(self, item: QTreeWidgetItem, _column: int) -> None:
        self.toggled.emit(item, item.checkState(0) == Qt.CheckState.Checked)

    def _item_pressed(self, item: QTreeWidgetItem, _column: int) -> None:
        self._pressed = (item, item.checkState(0))

    def _item_clicked(self, item: QTreeWidgetItem, _column: int) -> None:
        """A click on a series' name toggles it (a click on its check box already did)."""
        pressed, self._pressed = self._pressed, None
        if not item.flags() & Qt.ItemFlag.ItemIsUserCheckable or pressed is None or pressed[0] is not item:
            return
        if item.checkState(0) == pressed[1]:
            self.set_checked(item, item.checkState(0) == Qt.CheckState.Unchecked)
