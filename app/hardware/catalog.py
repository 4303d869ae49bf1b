"""The GPU catalog (``resources/gpus.toml``) and rig expressions such as ``2x RTX 3090 nvlink``.

A planned rig is a :class:`~app.core.rig.Rig` like a detected one: its GPUs come from catalog
entries, its slots from ``@x4`` / ``@gen3`` modifiers, its NVLink bridges from the ``nvlink`` word, and
its host from :data:`DEFAULT_PLANNED_HOST` (a fixed, documented default, so a planned rig gives the
same answer on every computer; rig files override it).

Expression grammar (case and spacing do not matter)::

    rig    := term ("+" term)*
    term   := [COUNT ("x" | "×" | "*")] NAME {"@" MODIFIER} ["nvlink"]
    MODIFIER := "x1" | "x2" | "x4" | "x8" | "x16"    the slot's electrical width
              | "gen1" ... "gen6"                    the slot's PCIe generation
              | "gen3x4"                             both at once

Names match the catalog's ids, names, NVML names and aliases, ignoring vendor words ("NVIDIA",
"GeForce", "Radeon"...), spaces, dashes and a leading "RTX"/"GTX"/"RX"/"Arc": ``3090``, ``rtx3090``,
``GeForce RTX 3090`` and ``4060 ti 16gb`` all work. An unknown name raises
:class:`~app.core.errors.UnknownName` with the closest catalog names.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

from app.core.errors import RigfitError, UnknownName
from app.core.rig import VENDOR_AMD, VENDOR_INTEL, VENDOR_NVIDIA, Gpu, Host, NvLink, NvLinkPeer, PcieLink, Rig
from app.hardware.nvml import resources_dir

VENDORS = (VENDOR_NVIDIA, VENDOR_AMD, VENDOR_INTEL)
NVLINK_TOPOLOGIES = ("bridge", "switch")
FORM_FACTORS = ("pcie", "sxm", "oam")
SLOT_WIDTHS = (1, 2, 4, 8, 16)

# A planned rig's host when nothing says otherwise: a typical 2024 desktop for local LLMs. Fixed on
# purpose (not this computer's RAM), so a planned rig gives the same plan everywhere; 8 GiB of the
# 64 GiB is left to the operating system and other programs.
DEFAULT_PLANNED_HOST = Host(
    cpu_name="planned host CPU",
    cores_physical=8,
    cores_logical=16,
    ram_total_mib=64 * 1024.0,
    ram_available_mib=56 * 1024.0,
    cpu_flags=("avx2", "fma", "f16c"),  # any desktop x86 CPU of the last decade
)

# Words that vendors put in front of the model number and that users leave out.
_NOISE_WORDS = ("nvidia", "geforce", "amd", "radeon", "instinct", "intel", "tesla", "quadro", "generation")
_PREFIXES = ("rtx", "gtx", "rx", "arc")


def gpu_catalog_path() -> Path:
    return resources_dir() / "gpus.toml"


@dataclass(frozen=True)
class CatalogEntry:
    """One card of ``resources/gpus.toml`` (field meanings are documented at the top of that file)."""

    id: str
    name: str
    vendor: str
    architecture: str
    vram_gib: float
    memory_type: str
    memory_bus_bits: int
    bandwidth_gbps: float
    tdp_w: float
    pcie_gen: int
    pcie_width: int
    nvlink: bool
    form_factor: str
    power_connectors: tuple[str, ...]
    fp16_tflops: float
    tensor_cores: bool
    source: str
    compute_capability: tuple[int, int] | None = None
    vram_mib: float | None = None
    nvlink_links: int = 0
    nvlink_version: int | None = None
    nvlink_gbps: float = 0.0
    nvlink_topology: str | None = None
    nvml_names: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    notes: str = ""

    @property
    def vram_total_mib(self) -> float:
        """What the planner should use as the card's memory: the reported MiB when known."""
        return self.vram_mib if self.vram_mib is not None else self.vram_gib * 1024.0

    @property
    def nvlink_link_gbps(self) -> float | None:
        """Per-link, per-direction NVLink bandwidth in GB/s."""
        if not self.nvlink or self.nvlink_links <= 0:
            return None
        return self.nvlink_gbps / 2.0 / self.nvlink_links

    def to_gpu(self, index: int, slot_width: int | None = None, slot_gen: int | None = None) -> Gpu:
        """A planned GPU of this model in a slot (``None``: a slot that fits the card)."""
        max_width = min(self.pcie_width, slot_width) if slot_width else self.pcie_width
        max_gen = min(self.pcie_gen, slot_gen) if slot_gen else self.pcie_gen
        return Gpu(
            index=index,
            name=self.name,
            vram_total_mib=self.vram_total_mib,
            vendor=self.vendor,
            bandwidth_gbps=self.bandwidth_gbps,
            compute_capability=self.compute_capability,
            architecture=self.architecture,
            power_limit_w=self.tdp_w,
            tdp_w=self.tdp_w,
            fp16_tflops=self.fp16_tflops,
            power_connectors=self.power_connectors,
            # A planned link runs at what the slot allows: no idle power saving to model.
            pcie=PcieLink(
                gen=max_gen,
                width=max_width,
                max_gen=max_gen,
                max_width=max_width,
                gpu_max_gen=self.pcie_gen,
                gpu_max_width=self.pcie_width,
            ),
            nvlink=NvLink(supported=self.nvlink),
            planned=True,
            catalog_id=self.id,
        )


class _EntryError(RigfitError):
    pass


def _req(table: dict[str, object], key: str, kind: type | tuple[type, ...], where: str) -> object:
    if key not in table:
        raise _EntryError(f"{where}: '{key}' is missing")
    value = table[key]
    # TOML booleans are Python ints: a number field must not accept true/false.
    if isinstance(value, bool) and kind is not bool:
        raise _EntryError(f"{where}: '{key}' must be a number, not {value!r}")
    if not isinstance(value, kind):
        raise _EntryError(f"{where}: '{key}' has the wrong type ({type(value).__name__})")
    return value


def _str_list(table: dict[str, object], key: str, where: str) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _EntryError(f"{where}: '{key}' must be a list of strings")
    return tuple(value)


def _entry(table: dict[str, object], n: int) -> CatalogEntry:
    where = f"gpu #{n + 1}" + (f" ({table['id']})" if isinstance(table.get("id"), str) else "")
    num = (int, float)
    vendor = str(_req(table, "vendor", str, where))
    if vendor not in VENDORS:
        raise _EntryError(f"{where}: vendor must be one of {', '.join(VENDORS)}")
    cc_text = table.get("compute_capability")
    cc: tuple[int, int] | None = None
    if cc_text is not None:
        m = re.fullmatch(r"(\d+)\.(\d+)", str(cc_text))
        if not m:
            raise _EntryError(f"{where}: compute_capability must look like '8.6'")
        cc = (int(m.group(1)), int(m.group(2)))
    nvlink = bool(_req(table, "nvlink", bool, where))
    topology = table.get("nvlink_topology")
    if nvlink and topology not in NVLINK_TOPOLOGIES:
        raise _EntryError(f"{where}: nvlink_topology must be one of {', '.join(NVLINK_TOPOLOGIES)}")
    form = str(_req(table, "form_factor", str, where))
    if form not in FORM_FACTORS:
        raise _EntryError(f"{where}: form_factor must be one of {', '.join(FORM_FACTORS)}")
    vram_mib = table.get("vram_mib")
    if vram_mib is not None and (isinstance(vram_mib, bool) or not isinstance(vram_mib, num)):
        raise _EntryError(f"{where}: 'vram_mib' must be a number")
    source = str(_req(table, "source", str, where))
    if not source.startswith("https://"):
        raise _EntryError(f"{where}: source must be an https:// link")
    return CatalogEntry(
        id=str(_req(table, "id", str, where)),
        name=str(_req(table, "name", str, where)),
        vendor=vendor,
        architecture=str(_req(table, "architecture", str, where)),
        vram_gib=float(_req(table, "vram_gib", num, where)),  # type: ignore[arg-type]
        memory_type=str(_req(table, "memory_type", str, where)),
        memory_bus_bits=int(_req(table, "memory_bus_bits", int, where)),  # type: ignore[call-overload]
        bandwidth_gbps=float(_req(table, "bandwidth_gbps", num, where)),  # type: ignore[arg-type]
        tdp_w=float(_req(table, "tdp_w", num, where)),  # type: ignore[arg-type]
        pcie_gen=int(_req(table, "pcie_gen", int, where)),  # type: ignore[call-overload]
        pcie_width=int(_req(table, "pcie_width", int, where)),  # type: ignore[call-overload]
        nvlink=nvlink,
        form_factor=form,
        power_connectors=_str_list(table, "power_connectors", where),
        fp16_tflops=float(_req(table, "fp16_tflops", num, where)),  # type: ignore[arg-type]
        tensor_cores=bool(_req(table, "tensor_cores", bool, where)),
        source=source,
        compute_capability=cc,
        vram_mib=float(vram_mib) if vram_mib is not None else None,
        nvlink_links=int(table.get("nvlink_links", 0)) if nvlink else 0,  # type: ignore[call-overload]
        nvlink_version=int(table["nvlink_version"]) if nvlink and "nvlink_version" in table else None,  # type: ignore[call-overload]
        nvlink_gbps=float(table.get("nvlink_gbps", 0.0)) if nvlink else 0.0,  # type: ignore[arg-type]
        nvlink_topology=str(topology) if nvlink else None,
        nvml_names=_str_list(table, "nvml_names", where),
        aliases=_str_list(table, "aliases", where),
        notes=str(table.get("notes", "")),
    )


@lru_cache(maxsize=4)
def _load(path: Path) -> tuple[CatalogEntry, ...]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RigfitError(f"GPU catalog not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RigfitError(f"cannot read the GPU catalog {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise RigfitError(f"the GPU catalog {path} is not valid TOML: {exc}") from None
    tables = data.get("gpu")
    if not isinstance(tables, list) or not tables:
        raise RigfitError(f"the GPU catalog {path} has no [[gpu]] entries")
    entries: list[CatalogEntry] = []
    seen: set[str] = set()
    for n, table in enumerate(tables):
        try:
            entry = _entry(table, n)
        except _EntryError as exc:
            raise RigfitError(f"GPU catalog {path}: {exc}") from None
        if entry.id in seen:
            raise RigfitError(f"GPU catalog {path}: id '{entry.id}' appears twice")
        seen.add(entry.id)
        entries.append(entry)
    return tuple(entries)


def load_gpu_catalog(path: Path | None = None) -> tuple[CatalogEntry, ...]:
    """All catalog entries, in file order. Raises :class:`RigfitError` naming the file and the entry."""
    return _load((path or gpu_catalog_path()).resolve())


def catalog_entry(catalog_id: str, catalog: Sequence[CatalogEntry] | None = None) -> CatalogEntry:
    """The entry with this id; :class:`UnknownName` (with suggestions) if there is none."""
    entries = catalog if catalog is not None else load_gpu_catalog()
    for entry in entries:
        if entry.id == catalog_id:
            return entry
    return find_gpu(catalog_id, entries)


# ------------------------------------------------------------------------------------------ name matching
def normalize_name(text: str) -> str:
    """Lower case, vendor words and everything but letters and digits removed: ``rtx4060ti16gb``."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    return "".join(w for w in words if w not in _NOISE_WORDS)


def _short(key: str) -> str:
    for prefix in _PREFIXES:
        if key.startswith(prefix) and len(key) > len(prefix) and key[len(prefix)].isdigit():
            return key[len(prefix) :]
    return key


@lru_cache(maxsize=4)
def _name_index(entries: tuple[CatalogEntry, ...]) -> tuple[dict[str, str], dict[str, frozenset[str]]]:
    """(explicit keys -> id, derived keys -> ids). Explicit aliases settle keys shared by variants."""
    explicit: dict[str, str] = {}
    derived: dict[str, set[str]] = {}
    for entry in entries:
        for alias in (entry.id, *entry.aliases):
            key = normalize_name(alias)
            if key:
                explicit.setdefault(key, entry.id)
        for name in (entry.name, *entry.nvml_names):
            for key in {normalize_name(name), _short(normalize_name(name))}:
                if key:
                    derived.setdefault(key, set()).add(entry.id)
        for alias in (entry.id, *entry.aliases):
            key = _short(normalize_name(alias))
            if key:
                derived.setdefault(key, set()).add(entry.id)
    return explicit, {k: frozenset(v) for k, v in derived.items()}


def _lookup(name: str, entries: tuple[CatalogEntry, ...]) -> list[CatalogEntry]:
    """Every entry a name can mean: one for a clear name, several for ``4060 ti``, none if unknown."""
    by_id = {e.id: e for e in entries}
    explicit, derived = _name_index(entries)
    key = normalize_name(name)
    for k in (key, _short(key)):
        if k in explicit:
            return [by_id[explicit[k]]]
    for k in (key, _short(key)):
        ids = derived.get(k)
        if ids:
            return [e for e in entries if e.id in ids]
    return []


def find_gpu(name: str, catalog: Sequence[CatalogEntry] | None = None) -> CatalogEntry:
    """The catalog entry a user-typed GPU name means.

    Raises :class:`UnknownName` with the closest names when nothing matches, and when a name fits
    several cards (``4060 ti``: 8 GB or 16 GB?) with the candidates.
    """
    entries = tuple(catalog) if catalog is not None else load_gpu_catalog()
    if not normalize_name(name):
        raise UnknownName(f"empty GPU name (try e.g. 'RTX 3090'; '{name}' has no letters or digits)")
    found = _lookup(name, entries)
    if len(found) == 1:
        return found[0]
    if found:
        options = ", ".join(e.name for e in found)
        raise UnknownName(f"'{name.strip()}' could be several GPUs: {options}; say which")
    hint = ""
    m = re.match(r"^(.*\S)\s+x\s*(\d+)$", name.strip(), re.IGNORECASE)
    if m and _lookup(m.group(1), entries):
        hint = f" (for a slot width write '{m.group(1)}@x{m.group(2)}'; for {m.group(2)} cards '{m.group(2)}x {m.group(1)}')"
    raise UnknownName(f"unknown GPU '{name.strip()}'{hint or _suggest(name, entries)}")


def _suggest(name: str, entries: Sequence[CatalogEntry]) -> str:
    by_key: dict[str, str] = {}
    for entry in entries:
        for label in (entry.name, *entry.aliases, entry.id):
            by_key.setdefault(normalize_name(label), entry.name)
            by_key.setdefault(_short(normalize_name(label)), entry.name)
    key = normalize_name(name)
    close = difflib.get_close_matches(_short(key), list(by_key), n=8, cutoff=0.6)
    names: list[str] = []
    for k in close:
        if by_key[k] not in names:
            names.append(by_key[k])
    if not names:
        return " (the catalog is resources/gpus.toml)"
    return f"; did you mean {', '.join(names[:4])}?"


def match_detected(
    name: str, vram_total_mib: float | None, catalog: Sequence[CatalogEntry] | None = None
) -> CatalogEntry | None:
    """The catalog entry for a GPU NVML reports, or ``None``. Variants that share an NVML name
    (RTX 3080 10/12 GB, RTX 4060 Ti 8/16 GB) are told apart by memory size."""
    entries = tuple(catalog) if catalog is not None else load_gpu_catalog()
    wanted = name.strip().lower()
    candidates = [e for e in entries if any(n.lower() == wanted for n in e.nvml_names)]
    if not candidates and normalize_name(name):
        candidates = _lookup(name, entries)
    if not candidates:
        return None
    if len(candidates) == 1 or vram_total_mib is None:
        return candidates[0]
    return min(candidates, key=lambda e: abs(e.vram_total_mib - vram_total_mib))


# ------------------------------------------------------------------------------------------ topology
def connect_nvlink(gpus: Sequence[Gpu], groups: Iterable[Sequence[int]]) -> tuple[Gpu, ...]:
    """Join GPUs with NVLink: each group is all-to-all (a bridged pair is a group of two).

    Each GPU of a group spends its catalog link count on the group: a bridged pair uses all its
    links between the two, a switch-attached GPU reaches every other GPU through the switch with all
    of them (so ``nvidia-smi topo -m`` shows ``NV<links>`` for every pair, as on an HGX board).
    """
    catalog = {e.id: e for e in load_gpu_catalog()}
    out = list(gpus)
    for group in groups:
        members = list(group)
        if len(members) < 2:
            raise RigfitError("an NVLink group needs at least two GPUs")
        if len(set(members)) != len(members):
            raise RigfitError(f"NVLink group {members} lists a GPU twice")
        for i in members:
            if not 0 <= i < len(out):
                raise RigfitError(f"NVLink group {members}: there is no GPU {i} (the rig has {len(out)})")
        kinds = {out[i].catalog_id for i in members}
        entries = [catalog.get(out[i].catalog_id or "") for i in members]
        for i, entry in zip(members, entries, strict=True):
            if entry is None or not entry.nvlink:
                raise RigfitError(f"{out[i].name} has no NVLink connector")
            if out[i].nvlink.links > 0:
                raise RigfitError(f"GPU {i} ({out[i].name}) is in two NVLink groups")
        if len(kinds) > 1:
            raise RigfitError(
                "NVLink joins GPUs of the same model only: " + " + ".join(out[i].name for i in members)
            )
        entry = entries[0]
        assert entry is not None
        if entry.nvlink_topology == "bridge" and len(members) != 2:
            raise RigfitError(f"{entry.name} NVLink bridges join two cards, not {len(members)}")
        for i in members:
            # Planned GPUs have no bus ids; who is linked to whom is in the topology matrix.
            kind = "switch" if entry.nvlink_topology == "switch" else "gpu"
            peers = tuple(NvLinkPeer(link=k, remote_kind=kind) for k in range(entry.nvlink_links))
            out[i] = replace(
                out[i],
                nvlink=NvLink(
                    links=entry.nvlink_links,
                    version=entry.nvlink_version,
                    peers=peers,
                    supported=True,
                    link_gbps=entry.nvlink_link_gbps,
                ),
            )
    return tuple(out)


def planned_topology(gpus: Sequence[Gpu], groups: Sequence[Sequence[int]]) -> tuple[tuple[str, ...], ...]:
    """``NV<links>`` inside each NVLink group, ``PHB`` (through the CPU) everywhere else."""
    n = len(gpus)
    # "NET": a remote device (llama.cpp RPC) is reached over the network, not a PCIe path.
    rows = [
        ["X" if i == j else ("NET" if gpus[i].remote or gpus[j].remote else "PHB") for j in range(n)]
        for i in range(n)
    ]
    for group in groups:
        for i in group:
            for j in group:
                if i != j:
                    rows[i][j] = f"NV{gpus[i].nvlink.links}"
    return tuple(tuple(r) for r in rows)


def nvlink_groups(rig: Rig) -> tuple[tuple[int, ...], ...]:
    """The NVLink groups of a rig, read back from its topology matrix (connected ``NV#`` components)."""
    n = rig.n_gpus
    seen: set[int] = set()
    groups: list[tuple[int, ...]] = []
    for start in range(n):
        if start in seen:
            continue
        stack, comp = [start], []
        while stack:
            i = stack.pop()
            if i in seen:
                continue
            seen.add(i)
            comp.append(i)
            stack.extend(j for j in range(n) if j != i and rig.nvlinked(i, j) and j not in seen)
        if len(comp) > 1:
            groups.append(tuple(sorted(comp)))
    return tuple(groups)


def build_planned_rig(
    gpus: Sequence[Gpu],
    groups: Sequence[Sequence[int]] = (),
    host: Host | None = None,
    name: str = "",
) -> Rig:
    """A planned :class:`Rig` from planned GPUs (re-indexed in order) and NVLink groups.

    Remote (RPC) devices go after the local GPUs, whatever order they came in, so adding a remote
    machine never renumbers a card; NVLink groups are remapped to match.
    """
    moved = sorted(range(len(gpus)), key=lambda i: (gpus[i].remote is not None, i))
    if moved != list(range(len(gpus))):
        where = {old: new for new, old in enumerate(moved)}
        gpus = [gpus[i] for i in moved]
        groups = [tuple(where[i] for i in g if i in where) for g in groups]
    indexed = tuple(g.with_index(i) for i, g in enumerate(gpus))
    linked = connect_nvlink(indexed, groups)
    label = name or describe_gpus(linked, groups)
    return Rig(
        gpus=linked,
        host=host or DEFAULT_PLANNED_HOST,
        topology=planned_topology(linked, groups),
        source="planned",
        name=label,
        status=f"planned rig: {label}" if linked else "planned rig with no GPUs",
        status_code="planned",
    )


def describe_gpus(gpus: Sequence[Gpu], groups: Sequence[Sequence[int]] = ()) -> str:
    """``2x RTX 3090 nvlink + RTX 3060@x4``: a rig expression for these GPUs."""
    linked = {i for g in groups for i in g}
    runs: list[list[object]] = []
    for i, gpu in enumerate(gpus):
        if gpu.remote is not None:
            from app.hardware.rpc import describe_remote

            term = describe_remote(gpu)
            if runs and runs[-1][0] == term and gpu.remote.endpoint is None:
                runs[-1][1] = int(str(runs[-1][1])) + 1
            else:
                runs.append([term, 1])
            continue
        term = gpu.name
        pcie = gpu.pcie
        mod = ""
        if pcie.max_gen is not None and pcie.gpu_max_gen is not None and pcie.max_gen < pcie.gpu_max_gen:
            mod += f"gen{pcie.max_gen}"
        if (
            pcie.max_width is not None
            and pcie.gpu_max_width is not None
            and pcie.max_width < pcie.gpu_max_width
        ):
            mod += f"x{pcie.max_width}"
        if mod:
            term += "@" + mod
        if i in linked:
            term += " nvlink"
        if runs and runs[-1][0] == term:
            runs[-1][1] = int(str(runs[-1][1])) + 1
        else:
            runs.append([term, 1])
    return " + ".join(_count_term(str(t), int(str(n))) for t, n in runs)


def _count_term(term: str, n: int) -> str:
    if n <= 1:
        return term
    if term.startswith("rpc(") and term.endswith(")"):
        return f"rpc({n}x {term[4:]}"
    return f"{n}x {term}"


# ------------------------------------------------------------------------------------------ expressions
_COUNT_RE = re.compile(r"^\s*(\d+)\s*[x×*]\s*(.+)$", re.IGNORECASE)
_NVLINK_RE = re.compile(r"\bnv-?link\b", re.IGNORECASE)
_MOD_TOKEN_RE = re.compile(r"(?:gen|pcie)(\d+)|x(\d+)")


@dataclass(frozen=True)
class _Term:
    count: int
    entry: CatalogEntry
    slot_width: int | None
    slot_gen: int | None
    nvlink: bool


def _parse_modifier(text: str, term: str) -> tuple[int | None, int | None]:
    """``x4`` -> (None, 4); ``gen3`` -> (3, None); ``gen3x4`` or ``x4 gen3`` -> (3, 4)."""
    cleaned = text.strip().lower().replace(" ", "")
    gen = width = None
    pos = 0
    for m in _MOD_TOKEN_RE.finditer(cleaned):
        if m.start() != pos:
            break
        pos = m.end()
        if m.group(1) is not None:
            gen = int(m.group(1))
        else:
            width = int(m.group(2))
    if not cleaned or pos != len(cleaned):
        raise RigfitError(
            f"'{term}': don't understand '@{text.strip()}' (use a slot width like @x4 or @x8, or @gen3)"
        )
    if width is not None and width not in SLOT_WIDTHS:
        raise RigfitError(f"'{term}': a PCIe slot is x1, x2, x4, x8 or x16, not x{width}")
    if gen is not None and not 1 <= gen <= 6:
        raise RigfitError(f"'{term}': PCIe generations go from gen1 to gen6, not gen{gen}")
    return gen, width


def _parse_term(text: str, catalog: Sequence[CatalogEntry]) -> _Term:
    term = " ".join(text.split())
    if not term:
        raise RigfitError("empty part in the rig expression (two '+' in a row?)")
    nvlink = bool(_NVLINK_RE.search(term))
    body = _NVLINK_RE.sub(" ", term).strip()
    count = 1
    m = _COUNT_RE.match(body)
    if m:
        count, body = int(m.group(1)), m.group(2).strip()
    name, *mods = body.split("@")
    if not 1 <= count <= 64:
        raise RigfitError(f"'{term}': a rig holds 1 to 64 GPUs of one kind, not {count}")
    slot_gen = slot_width = None
    for mod in mods:
        gen, width = _parse_modifier(mod, term)
        slot_gen = gen if gen is not None else slot_gen
        slot_width = width if width is not None else slot_width
    entry = find_gpu(name.strip(), catalog)
    return _Term(count, entry, slot_width, slot_gen, nvlink)


_RPC_PLANNED_RE = re.compile(r"^rpc\s*\((?P<body>[^()]*)\)$", re.IGNORECASE)


def _planned_remote(text: str, catalog: Sequence[CatalogEntry]) -> list[Gpu]:
    """``rpc(RTX 4090 @ 1GbE)``, ``rpc(2x RTX 3090 @ 10GbE)``: GPUs of one machine behind an RPC server."""
    from app.core.rig import Remote
    from app.core.rpc import DEFAULT_LINK, NETWORK_LINKS, parse_link

    m = _RPC_PLANNED_RE.match(text)
    if m is None:
        raise RigfitError(f"'{text}': write a remote machine as rpc(RTX 4090 @ 1GbE) or rpc://HOST:PORT")
    body, at, link_text = m.group("body").partition("@")
    link = parse_link(link_text) if at else NETWORK_LINKS[DEFAULT_LINK]
    count = 1
    c = _COUNT_RE.match(body.strip())
    if c:
        count, body = int(c.group(1)), c.group(2)
    if not 1 <= count <= 16:
        raise RigfitError(f"'{text}': an RPC server here holds 1 to 16 GPUs, not {count}")
    entry = find_gpu(" ".join(body.split()), catalog)
    return [replace(entry.to_gpu(k), remote=Remote(link=link, endpoint=None, device=k)) for k in range(count)]


def parse_rig_expression(expr: str, host: Host | None = None) -> Rig:
    """A planned rig from an expression such as ``2x RTX 3090 nvlink + RTX 3060@x4``.

    ``nvlink`` joins the GPUs of its term: bridged cards in pairs (``2x RTX 3090 nvlink``), SXM
    cards all together through the NVSwitch (``8x H100 nvlink``). Remote machines (llama.cpp RPC
    servers) are ``rpc(RTX 4090 @ 1GbE)`` (planned) or ``rpc://HOST:PORT[=RTX 4090|CPU][@10GbE]``
    (asked now for its devices and memory); they follow the local GPUs. Raises
    :class:`RigfitError` (:class:`UnknownName` for an unknown card, with the closest catalog names).
    """
    text = expr.strip()
    if not text:
        raise RigfitError("empty rig expression (try '2x RTX 3090' or 'RTX 3090 + RTX 3060')")
    catalog = load_gpu_catalog()
    parts = [" ".join(p.split()) for p in text.split("+")]
    remote: list[Gpu] = []
    specs = []
    local_parts = []
    for part in parts:
        if part.lower().startswith("rpc://"):
            from app.hardware.rpc import parse_spec

            specs.append(parse_spec(part))
        elif part.lower().startswith("rpc"):
            remote.extend(_planned_remote(part, catalog))
        else:
            local_parts.append(part)
    terms = [_parse_term(part, catalog) for part in local_parts]
    if sum(t.count for t in terms) + len(remote) + len(specs) > 64:
        raise RigfitError("a rig expression can hold at most 64 GPUs")
    gpus: list[Gpu] = []
    groups: list[tuple[int, ...]] = []
    for term in terms:
        first = len(gpus)
        gpus.extend(term.entry.to_gpu(first + k, term.slot_width, term.slot_gen) for k in range(term.count))
        if not term.nvlink:
            continue
        members = list(range(first, len(gpus)))
        if not term.entry.nvlink:
            raise RigfitError(f"{term.entry.name} has no NVLink connector")
        if term.entry.nvlink_topology == "switch":
            if len(members) < 2:
                raise RigfitError(
                    f"NVLink needs at least two {term.entry.name} GPUs (e.g. '2x {term.entry.name} nvlink')"
                )
            groups.append(tuple(members))
        else:
            if len(members) % 2:
                raise RigfitError(
                    f"NVLink bridges join {term.entry.name} cards in pairs: '{term.count}x {term.entry.name} nvlink' "
                    f"leaves one without a partner (write e.g. '2x {term.entry.name} nvlink + {term.entry.name}')"
                )
            groups.extend((members[k], members[k + 1]) for k in range(0, len(members), 2))
    if not specs:
        return build_planned_rig([*gpus, *remote], groups, host=host)
    from app.hardware.rpc import add_rpc_servers

    rig = build_planned_rig([*gpus, *remote], groups, host=host)
    return add_rpc_servers(rig, specs)
