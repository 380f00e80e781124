"""Rule ids -> the criteria table row they come from, its citation and its verification status."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import polars as pl

from cartlab._yaml import load_yaml

#: statuses from least to best verified (the worst one of several rules is a result's status)
STATUS_ORDER = ("unverified", "proxy", "partially_verified", "verified_secondary", "convention", "verified")
#: statuses whose results are marked as not settled wherever they are shown
UNSETTLED = frozenset({"unverified", "proxy", "partially_verified"})
PACKAGES = ("cartlab.grading", "cartlab.response", "cartlab.protocol", "cartlab.kinetics")
_TOKEN = re.compile(r"[A-Za-z0-9_\-]+(?:[.:][A-Za-z0-9_\-]+)+")


@dataclass(frozen=True)
class RuleInfo:
    id: str
    table: str
    status: str | None
    citation: str | None


def _walk(node, table: str, status: str | None, citation: str | None, out: dict[str, list[RuleInfo]]) -> None:
    if isinstance(node, dict):
        status = node.get("status", status) if isinstance(node.get("status", status), str) else status
        cite = node.get("citation", citation) if isinstance(node.get("citation", citation), str) else citation
        if isinstance(node.get("id"), str):
            out.setdefault(node["id"], []).append(RuleInfo(node["id"], table, status, cite))
        for key, value in node.items():
            if key not in ("status", "citation"):
                _walk(value, table, status, cite, out)
    elif isinstance(node, list):
        for value in node:
            _walk(value, table, status, citation, out)


@lru_cache(maxsize=1)
def _tables() -> dict[str, dict]:
    tables = {}
    for package in PACKAGES:
        folder = resources.files(package).joinpath("criteria")
        for path in sorted(folder.iterdir(), key=lambda p: p.name):
            if path.name.endswith(".yaml"):
                tables[path.name[:-5]] = load_yaml(path.read_text(encoding="utf-8"))
    return tables


def _keyed_rules(data: dict, table: str, out: dict[str, list[RuleInfo]]) -> None:
    """Rules written as a mapping ``rules: {<id>: {..., bands: [{id: <band>}, ...]}}`` (the renal
    dose-adjustment table): each rule is ``<id>`` and each of its bands ``<id>.<band>``, the ids the
    dosing engine writes (``fludarabine_label``, ``fludarabine_label.moderate``)."""
    rules = data.get("rules")
    if not isinstance(rules, dict):
        return
    t_status, t_cite = data.get("status"), data.get("citation")
    for key, rule in rules.items():
        if not isinstance(rule, dict):
            continue
        status = rule.get("status") if isinstance(rule.get("status"), str) else t_status
        cite = rule.get("citation") if isinstance(rule.get("citation"), str) else t_cite
        out.setdefault(str(key), []).append(RuleInfo(str(key), table, status, cite))
        for band in rule.get("bands") or ():
            if isinstance(band, dict) and isinstance(band.get("id"), str):
                rid = f"{key}.{band['id']}"
                b_status = band.get("status") if isinstance(band.get("status"), str) else status
                out.setdefault(rid, []).append(RuleInfo(rid, table, b_status, band.get("citation") or cite))


@lru_cache(maxsize=1)
def rule_index() -> dict[str, RuleInfo]:
    """Every rule id that names exactly one row across the criteria tables (ids reused within or across
    tables, such as CTCAE's per-term ``g1``, are reached through their table's prefix instead), and
    the rules of the shipped protocols and of every protocol loaded since (:func:`register_rules`)."""
    found: dict[str, list[RuleInfo]] = {}
    for name, data in _tables().items():
        if isinstance(data, dict):
            _walk(data, name, data.get("status"), data.get("citation"), found)
            _keyed_rules(data, name, found)
    out = {k: v[0] for k, v in found.items() if len(v) == 1}
    out.update(_shipped_protocol_rules())
    out.update(_registered)
    return out


#: rules of protocols loaded in this process (a protocol file is a table of rules too)
_registered: dict[str, RuleInfo] = {}


def register_rules(infos) -> None:
    """Make ``infos`` (:class:`RuleInfo`, e.g. a loaded protocol's rules: ``<protocol>.eligibility.<id>``
    ...) known to :func:`rules_in` / :func:`rule_status`; a later registration of the same id (a
    protocol file edited and loaded again) replaces the earlier one."""
    changed = False
    for info in infos:
        if _registered.get(info.id) != info:
            _registered[info.id] = info
            changed = True
    if changed:
        rule_index.cache_clear()
        rule_status.cache_clear()


@lru_cache(maxsize=1)
def _shipped_protocol_rules() -> dict[str, RuleInfo]:
    """The rules of every protocol shipped in ``cartlab/protocol/protocols`` (by id, so that a table
    written with a shipped protocol resolves in a process that has not loaded it)."""
    from cartlab.protocol.schema import load_protocol, shipped_protocols

    out: dict[str, RuleInfo] = {}
    for pid in shipped_protocols():
        for info in load_protocol(pid, register=False).rule_infos():
            out[info.id] = info
    return out


def _table_info(table: str) -> RuleInfo | None:
    data = _tables().get(table)
    if not isinstance(data, dict):
        return None
    return RuleInfo(table, table, data.get("status"), data.get("citation"))


def rules_in(text: str | None) -> list[RuleInfo]:
    """The known rules named in a rule cell (``"early: icaht.early.g3; late: icaht.late.g2"``,
    ``"L: ctcae_v5:hypokalemia:g0; H: ..."``), each once."""
    if not text:
        return []
    index = rule_index()
    out: dict[str, RuleInfo] = {}
    candidates = [text.strip(), *(part.strip() for part in re.split(r"[,;]", text)), *_TOKEN.findall(text)]
    for tok in candidates:
        info = index.get(tok)
        if info is None and ":" in tok:  # "<table>:<term>:<grade>" (CTCAE)
            info = _table_info(tok.split(":", 1)[0])
            if info is not None:
                info = RuleInfo(tok, info.table, info.status, info.citation)
        if info is not None:
            out.setdefault(info.id, info)
    return list(out.values())


def _worst(statuses: list[str | None]) -> str | None:
    known = [s for s in statuses if s in STATUS_ORDER]
    return min(known, key=STATUS_ORDER.index) if known else None


@lru_cache(maxsize=4096)
def rule_status(text: str | None) -> str | None:
    """The status of the rule(s) named in ``text`` (the worst of several); None when no rule of a
    criteria table is named."""
    return _worst([r.status for r in rules_in(text)])


def _rule_columns(frame: pl.DataFrame) -> list[str]:
    return [c for c in frame.columns if (c.lower() == "rule" or c.lower().endswith("_rule"))
            and frame.schema[c] in (pl.String, pl.Categorical) and not c.startswith("lambda")]


def status_column(rule_column: str) -> str:
    """The name of the status column beside ``rule_column``: ``RULESTAT`` for an upper-case (ADaM)
    name, ``<name>_status`` otherwise."""
    return f"{rule_column}STAT" if rule_column.isupper() else f"{rule_column}_status"


def with_rule_status(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with a status column after each rule column (``rule`` -> ``rule_status``,
    ``early_rule`` -> ``early_rule_status``; an ADaM-style upper-case ``RULE`` -> ``RULESTAT``, the
    name ``cartlab export --adam`` uses): the criteria status of the rule that produced the row."""
    cols = _rule_columns(frame)
    if not cols or frame.height == 0:
        return frame.with_columns(pl.lit(None, dtype=pl.String).alias(status_column(c)) for c in cols)
    exprs = []
    param = "PARAMCD" if "PARAMCD" in frame.columns else None
    for c in cols:
        values = frame[c].cast(pl.String).unique().drop_nulls().to_list()
        mapping = {v: rule_status(v) for v in values}
        out = pl.col(c).cast(pl.String).replace_strict(mapping, default=None, return_dtype=pl.String)
        if param is not None:  # review 41 F5: a rule shared by the parameters takes the parameter's status too
            # ... on the rows the parameter's estimate counts only (review 41 diff1 F4): the parameter's status
            # is that of its censoring / competing-event reading, not of who is in its population
            counted = ~pl.col(c).cast(pl.String).is_in(list(POPULATION_RULES))
            if "ANLFL" in frame.columns:
                counted = counted & (pl.col("ANLFL") == "Y")
            for code, status in _param_statuses().items():
                shared = [v for v in values if any(r.table == "endpoints" for r in rules_in(v))
                          and _worst([mapping[v], status]) != mapping[v]]
                if shared:
                    out = pl.when((pl.col(param) == code) & counted & pl.col(c).cast(pl.String).is_in(shared)).then(
                        pl.col(c).cast(pl.String).replace_strict({v: _worst([mapping[v], status]) for v in shared},
                                                                 default=None, return_dtype=pl.String)).otherwise(out)
        exprs.append(out.alias(status_column(c)))
    return frame.with_columns(exprs)


#: endpoints.yaml rules of rows outside a parameter's population (ANLFL empty): they keep their own status
POPULATION_RULES = ("not_in_remission", "no_response_criteria", "not_infused", "death_before_origin")


@lru_cache(maxsize=1)
def _param_statuses() -> dict[str, str]:
    """The ADTTE parameters of ``endpoints.yaml`` with a status of their own (CIR: unverified; LFS:
    convention): a row of such a parameter whose rule is shared (``censor.last_alive``) has the worse of
    the rule's and the parameter's status (review 41 F5)."""
    params = (_tables().get("endpoints") or {}).get("params") or {}
    return {code: p["status"] for code, p in params.items() if isinstance(p, dict) and isinstance(p.get("status"), str)}


def row_statuses(pairs) -> dict[str, str]:
    """``(rule, row status)`` pairs (e.g. ADTTE rows with their ``rule_status``, :func:`with_rule_status`) ->
    rule -> the worst status its rows carry, for the rules whose rows' status differs from the rule's own
    (``cartlab explain``'s "rules:" line; review 41 diff1 F4)."""
    worst: dict[str, str] = {}
    for rule, st in pairs:
        if rule and st in STATUS_ORDER and st != rule_status(rule):
            worst[rule] = _worst([st, *([worst[rule]] if rule in worst else [])])
    return worst
