"""Re-measure the study's JPEG 2000 rows without retraining anything.

Every JPEG 2000 row of the study is ``bd(reference, jpeg2000 curve)``, and
``experiments.json`` stores the reference curves: Table 2's is the joint model's curve on
each domain, Table 1's is the naive model trained on all target images, which is Table 2's
``naive`` curve of the same pair on the target domain. So when the baseline's settings
change (nicodec 0.2 turned on JPEG 2000's colour transform), the rows are measured again from
those stored curves and a fresh JPEG 2000 curve on the same test images, and nothing else in
the results moves.
"""

from __future__ import annotations

import copy

from nicodec.errors import NicodecError
from study.engine import Lab
from study.sections import bd


def _jpeg2000_rows(rows: list[dict], match, new: dict) -> int:
    """Replace the BD numbers of the rows ``match`` selects; returns how many."""
    n = 0
    for row in rows:
        if match(row):
            row.update(new)
            n += 1
    return n


def rebaseline(results: dict, lab: Lab) -> dict:
    """A copy of ``results`` with every JPEG 2000 curve and row measured again by ``lab``."""
    out = copy.deepcopy(results)
    for t in out.get("table2", []):
        for domain, curves in t["curves"].items():
            curves["jpeg2000"] = lab.jpeg2000(domain)
            new = bd(curves["joint"], curves["jpeg2000"])
            if not _jpeg2000_rows(t["rows"], lambda r: (r["method"] == "jpeg2000"
                                                        and r["domain"] == domain), new):
                raise NicodecError(f"table 2 {t['pair']}: no JPEG 2000 row for {domain}")
    table2 = {t["pair"]: t for t in out.get("table2", [])}
    for t in out.get("table1", []):
        tgt = t["pair"].split("->")[1]
        if t["pair"] not in table2:
            raise NicodecError(f"table 1 {t['pair']}: its reference curve is only stored in "
                             "Table 2 of the same pair, which these results lack")
        ref = table2[t["pair"]]["curves"][tgt]["naive"]
        if ref["name"] != t["reference"]:
            raise NicodecError(f"table 1 {t['pair']}: reference {t['reference']} is not "
                             f"Table 2's naive curve ({ref['name']})")
        new = bd(ref, lab.jpeg2000(tgt))
        if not _jpeg2000_rows(t["rows"], lambda r: r["method"] == "jpeg2000", new):
            raise NicodecError(f"table 1 {t['pair']}: no JPEG 2000 row")
    return out
