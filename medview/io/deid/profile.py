"""DICOM PS3.15 Table E.1-1 as medview applies it: which action (D, Z, X, K, C, U) an attribute gets under the
Basic Application Level Confidentiality Profile and the options a user picks.

The table is data (``resources/deid/ps3.15-e1-1.json``, generated from a machine-readable extract of the
standard's part15.xml by ``packaging/deid/make_profile_table.py``; its edition and source are in the file):
no attribute list is typed in code.  Rows are exact tags, repeating-group patterns (``50xxxxxx`` curves,
``60xx3000`` overlay data) and one row for all private attributes.

How a row's codes become one action:

* an option the user picked replaces the basic action where the table has an entry for it in that option's
  column; if several picked options name the attribute, the one that keeps more wins (K over C);
* the basic profile's compound codes leave a choice to the implementer by the attribute's type in its IOD
  (PS3.15 E.1.1: "X/Z: X unless Z is required to maintain IOD conformance", and so on).  medview does not
  know each attribute's type in every IOD, so it takes the choice that is conformant whatever the type:
  ``X/Z`` -> Z (present but empty: valid for Type 2 and 3), ``X/D``, ``Z/D`` and ``X/Z/D`` -> D (a dummy
  value: valid for Type 1 too), ``X/Z/U*`` -> U (the UID is replaced consistently: references keep working).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

from medview.core.errors import MedviewError
from medview.core.resources import resources_dir

TABLE_NAME = "ps3.15-e1-1.json"
ACTIONS = frozenset("DZXKCU")
# the compound codes' conformant choice whatever the attribute's type (module notes)
COMPOUND = {"X/Z": "Z", "X/D": "D", "Z/D": "D", "X/Z/D": "D", "X/Z/U*": "U"}
# precedence when several picked options name one attribute: what keeps more information first
OPTION_PRECEDENCE = {"K": 0, "C": 1, "U": 2, "D": 3, "Z": 4, "X": 5}


# the words for the options users pick (the CLI's --retain) and the options they mean
RETAIN = {"dates": "retain_longitudinal_full_dates", "modified-dates": "retain_longitudinal_modified_dates",
          "uids": "retain_uids", "device": "retain_device_identity", "institution": "retain_institution_identity",
          "patient-characteristics": "retain_patient_characteristics", "safe-private": "retain_safe_private"}


class ProfileError(MedviewError):
    """The de-identification table cannot be read or an option combination is not allowed."""


@dataclass(frozen=True)
class Options:
    """The Annex E options (PS3.15 E.3); all off is the basic profile alone."""

    retain_safe_private: bool = False
    retain_uids: bool = False
    retain_device_identity: bool = False
    retain_institution_identity: bool = False
    retain_patient_characteristics: bool = False
    retain_longitudinal_full_dates: bool = False
    retain_longitudinal_modified_dates: bool = False
    clean_descriptors: bool = False
    clean_structured_content: bool = False
    clean_graphics: bool = False

    def __post_init__(self) -> None:
        if self.retain_longitudinal_full_dates and self.retain_longitudinal_modified_dates:
            raise ProfileError("Retain Longitudinal Temporal Information: full dates or modified dates, not both")

    def picked(self) -> list[str]:
        """The names of the options that are on, in the table's column order."""
        return [f.name for f in fields(self) if getattr(self, f.name)]


@dataclass(frozen=True)
class Rule:
    """One row of Table E.1-1."""

    tag: str  # 'GGGGEEEE' (upper-case hex), a pattern with x for any hex digit, or 'PRIVATE'
    name: str
    basic: str
    options: dict[str, str]
    retired: bool

    def code(self, options: Options) -> str:
        """The row's code (possibly compound) once the picked options are applied."""
        picked = [self.options[name] for name in options.picked() if name in self.options]
        if picked:
            return min(picked, key=lambda c: OPTION_PRECEDENCE.get(c[0], 9))
        return self.basic


def resolve(code: str) -> str:
    """One action letter for a row's code (module notes for the compound codes)."""
    if code in ACTIONS:
        return code
    try:
        return COMPOUND[code]
    except KeyError:
        raise ProfileError(f"Unknown action code {code!r} in the de-identification table") from None


class Profile:
    """Table E.1-1 loaded: ``rule_for(tag)`` and ``action(tag, options)``."""

    def __init__(self, table: dict[str, Any]) -> None:
        if table.get("format") != 1:
            raise ProfileError(f"Unsupported de-identification table format {table.get('format')!r}")
        self.source: dict[str, Any] = dict(table.get("source", {}))
        self.edition = str(self.source.get("edition", "unknown"))
        self.option_names = tuple(table.get("options", ()))
        known = tuple(f.name for f in fields(Options))
        if self.option_names != known:
            raise ProfileError(f"The table's option columns {self.option_names} are not medview's {known}")
        self.rules: dict[int, Rule] = {}
        self.patterns: list[tuple[int, int, Rule]] = []  # (mask, value, rule): tag & mask == value
        self.private: Rule | None = None
        for tag, name, basic, options, retired in table["rows"]:
            rule = Rule(tag, name, basic, dict(options), bool(retired))
            for code in (basic, *options.values()):
                resolve(code)  # an unknown code is said when the table is loaded, not when a file meets it
            if tag == "PRIVATE":
                self.private = rule
            elif "x" in tag:
                mask = int("".join("0" if c == "x" else "F" for c in tag), 16)
                value = int(tag.replace("x", "0"), 16)
                self.patterns.append((mask, value, rule))
            else:
                self.rules[int(tag, 16)] = rule

    def __len__(self) -> int:
        return len(self.rules) + len(self.patterns) + (self.private is not None)

    def rule_for(self, tag: int) -> Rule | None:
        """The row for ``tag`` (an int ``0xGGGGEEEE``): the exact tag, a repeating-group pattern, or the
        private row for an odd group (private creators included); None when the table does not list it."""
        rule = self.rules.get(tag)
        if rule is not None:
            return rule
        for mask, value, pattern in self.patterns:
            if tag & mask == value:
                return pattern
        if (tag >> 16) % 2 == 1:
            return self.private
        return None

    def action(self, tag: int, options: Options) -> str | None:
        """The single action for ``tag`` under ``options``; None for an attribute the table does not list."""
        rule = self.rule_for(tag)
        return None if rule is None else resolve(rule.code(options))


def table_path() -> Path:
    return resources_dir() / "deid" / TABLE_NAME


@lru_cache(maxsize=4)
def _load(path: str) -> Profile:
    try:
        table = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ProfileError(f"Cannot read the de-identification table {path}: {exc}") from None
    try:
        return Profile(table)
    except (KeyError, TypeError, ValueError) as exc:
        raise ProfileError(f"The de-identification table {path} is malformed: {exc}") from None


def load_profile(path: str | Path | None = None) -> Profile:
    """The profile shipped in ``resources/deid`` (or the table at ``path``); read once per process."""
    return _load(str(path or table_path()))
