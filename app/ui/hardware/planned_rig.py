"""The planned rig the Hardware tab edits: GPUs from the catalog, slot widths and NVLink bridges.

:class:`PlannedRigEditor` holds what the user chose (no widget, no Qt) and builds a frozen
:class:`~app.core.rig.Rig` from it after every change. NVLink is kept as the boxes the user ticked;
the bridge groups are derived from them, so a ticked card may still lack a partner (and says so in the
rig's notes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from app.core.rig import Gpu, Host, Rig

if TYPE_CHECKING:
    from app.hardware.catalog import CatalogEntry


def with_slot_width(gpu: Gpu, width: int | None) -> Gpu:
    """A planned GPU moved to a slot of another width (``None``: a slot as wide as the card)."""
    pcie = gpu.pcie
    card = pcie.gpu_max_width or pcie.max_width
    new = card if width is None or card is None else min(card, width)
    return replace(gpu, pcie=replace(pcie, width=new, max_width=new))


def nvlink_groups_for(gpus: Sequence[Gpu], flags: Sequence[bool]) -> tuple[list[tuple[int, ...]], list[str]]:
    """NVLink groups for the GPUs whose flag is set: bridged models in consecutive pairs, SXM models
    all together; a bridged card left without a partner stays unlinked (and is named in the notes)."""
    from app.hardware.catalog import load_gpu_catalog

    catalog = {e.id: e for e in load_gpu_catalog()}
    by_model: dict[str, list[int]] = {}
    for i, (gpu, flag) in enumerate(zip(gpus, flags, strict=True)):
        entry = catalog.get(gpu.catalog_id or "")
        if flag and entry is not None and entry.nvlink:
            by_model.setdefault(entry.id, []).append(i)
    groups: list[tuple[int, ...]] = []
    notes: list[str] = []
    for model, members in by_model.items():
        entry = catalog[model]
        if entry.nvlink_topology == "switch":
            if len(members) >= 2:
                groups.append(tuple(members))
            else:
                notes.append(f"GPU {members[0]}: NVLink needs a second {entry.name}")
            continue
        for k in range(0, len(members) - 1, 2):
            groups.append((members[k], members[k + 1]))
        if len(members) % 2:
            notes.append(
                f"GPU {members[-1]}: NVLink bridges join {entry.name} cards in pairs; this one has no partner"
            )
    return groups, notes


class PlannedRigEditor:
    """The planned rig being edited. Every change returns the new :class:`Rig` (or raises
    :class:`~app.core.errors.RigfitError` and keeps the last good one in :attr:`rig`)."""

    def __init__(self) -> None:
        self._gpus: list[Gpu] = []
        self._groups: list[tuple[int, ...]] = []
        self._flags: list[bool] = []  # what the user ticked
        self._host: Host | None = None
        self._name = ""
        self._notes: list[str] = []
        self.rig: Rig = Rig(gpus=(), name="")

    @property
    def nvlink_flags(self) -> tuple[bool, ...]:
        """Which cards the user ticked for NVLink, by position."""
        return tuple(self._flags)

    def adopt(self, rig: Rig) -> None:
        """Edit ``rig`` from now on (an expression, a file, the demo)."""
        from app.hardware.catalog import nvlink_groups

        self._gpus = list(rig.gpus)
        self._groups = [tuple(g) for g in nvlink_groups(rig)]
        linked = {i for g in self._groups for i in g}
        self._flags = [i in linked for i in range(rig.n_gpus)]
        self._host = rig.host
        self._name = rig.name
        self._notes = []
        self.rig = rig

    def add(self, entry: CatalogEntry) -> Rig:
        """Add a GPU of the catalog after the local GPUs: remote devices always follow them (so
        adding a card never renumbers the cards before it; llama.cpp's order is layout's)."""
        at = next((i for i, g in enumerate(self._gpus) if g.remote is not None), len(self._gpus))
        self._gpus.insert(at, entry.to_gpu(at))
        self._flags.insert(at, False)
        self._groups = [tuple(i + 1 if i >= at else i for i in g) for g in self._groups]
        return self._rebuild()

    def add_remote(self, entry: CatalogEntry, link_name: str) -> Rig:
        """Add a GPU of the catalog on another machine, reached over ``link_name`` (``1GbE``...):
        ``rpc(RTX 4090 @ 1GbE)`` in a rig expression."""
        from app.core.rig import Remote
        from app.core.rpc import parse_link

        link = parse_link(link_name)
        self._gpus.append(replace(entry.to_gpu(len(self._gpus)), remote=Remote(link=link)))
        self._flags.append(False)
        return self._rebuild()

    def remove(self, position: int) -> Rig:
        """Take the GPU at ``position`` out; a bridge or switch group that loses a member comes apart."""
        if not 0 <= position < len(self._gpus):
            return self.rig
        del self._gpus[position]
        del self._flags[position]
        groups = []
        for group in self._groups:
            if position in group:
                continue
            groups.append(tuple(i - 1 if i > position else i for i in group))
        self._groups = groups
        linked = {i for g in groups for i in g}
        # A partner that lost its bridge stays ticked only if it is still in a group.
        self._flags = [flag and i in linked for i, flag in enumerate(self._flags)]
        return self._rebuild()

    def set_slot_width(self, position: int, width: int | None) -> Rig:
        if 0 <= position < len(self._gpus):
            self._gpus[position] = with_slot_width(self._gpus[position], width)
            return self._rebuild()
        return self.rig

    def set_nvlink(self, position: int, on: bool) -> Rig:
        if 0 <= position < len(self._flags):
            self._flags[position] = on
        self._groups, self._notes = nvlink_groups_for(self._gpus, self._flags)
        return self._rebuild()

    def _rebuild(self) -> Rig:
        from app.hardware.catalog import build_planned_rig

        self._name = ""  # an edited rig is no longer the one its name described
        gpus = [g.with_index(i) for i, g in enumerate(self._gpus)]
        # Slot widths live in the GPUs; NVLink is rebuilt from the groups.
        stripped = [
            replace(g, nvlink=replace(g.nvlink, links=0, peers=(), version=None, link_gbps=None))
            for g in gpus
        ]
        rig = build_planned_rig(stripped, self._groups, host=self._host, name=self._name)
        if self._notes:
            rig = replace(rig, notes=rig.notes + tuple(self._notes))
        self._gpus = list(rig.gpus)
        self.rig = rig
        return rig


__all__ = ["PlannedRigEditor", "nvlink_groups_for", "with_slot_width"]
