"""Steps of the forecast example: CSV sales -> clean rows -> features -> linear trend -> forecast.

Each function takes its dataflow's inputs, decoded and in order (JSON datasets as Python values,
file datasets as bytes), and returns a JSON-able value. Pure standard library, deterministic.
"""
from __future__ import annotations

import csv
import io


def _month_index(month: str) -> int:
    """'2024-03' -> months since year 0 (for gap-free time indices)."""
    y, m = month.split("-")
    return int(y) * 12 + int(m) - 1


def _month_name(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def clean(raw: bytes) -> list:
    """Parse the sales CSV; drop rows with a missing region, a bad month or a non-numeric sales
    figure, and repeated (month, region) pairs. Rows sorted by region, then month."""
    rows, seen = [], set()
    for rec in csv.DictReader(io.StringIO(raw.decode("utf-8"))):
        month = (rec.get("month") or "").strip()
        region = (rec.get("region") or "").strip().lower()
        try:
            sales = float((rec.get("sales") or "").strip())
            _month_index(month)
        except ValueError:
            continue
        if not region or sales != sales or (month, region) in seen:
            continue
        seen.add((month, region))
        rows.append({"month": month, "region": region, "sales": sales})
    rows.sort(key=lambda r: (r["region"], r["month"]))
    return rows


def features(rows: list) -> dict:
    """Per region, the series as (t, sales) points, t = months since the region's first month."""
    by_region: dict[str, list] = {}
    for r in rows:
        by_region.setdefault(r["region"], []).append(r)
    out = {}
    for region in sorted(by_region):
        series = sorted(by_region[region], key=lambda r: r["month"])
        t0 = _month_index(series[0]["month"])
        out[region] = {"start": series[0]["month"], "last": series[-1]["month"],
                       "points": [[_month_index(r["month"]) - t0, r["sales"]] for r in series]}
    return out


def fit(table: dict) -> dict:
    """Least-squares line sales = intercept + slope * t per region, with R²."""
    model = {}
    for region, f in sorted(table.items()):
        xs = [p[0] for p in f["points"]]
        ys = [p[1] for p in f["points"]]
        n = len(xs)
        mx, my = sum(xs) / n, sum(ys) / n
        sxx = sum((x - mx) ** 2 for x in xs)
        sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
        slope = sxy / sxx if sxx else 0.0
        intercept = my - slope * mx
        ss_tot = sum((y - my) ** 2 for y in ys)
        ss_res = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys))
        r2 = 1 - ss_res / ss_tot if ss_tot else 1.0
        model[region] = {"slope": round(slope, 4), "intercept": round(intercept, 4),
                         "r2": round(r2, 4), "n": n}
    return model


def forecast(model: dict, table: dict, horizon: int) -> dict:
    """The next `horizon` months per region from the fitted trend. `rows` is a flat list of
    [region, month, sales] (easy to read with line tools in the report step)."""
    rows = []
    for region in sorted(model):
        m, f = model[region], table[region]
        t_last = f["points"][-1][0]
        last = _month_index(f["last"])
        for k in range(1, int(horizon) + 1):
            value = m["intercept"] + m["slope"] * (t_last + k)
            rows.append([region, _month_name(last + k), round(value, 1)])
    return {"horizon": int(horizon), "rows": rows}


def summary(fc: dict) -> dict:
    """Inline step: total and mean forecast per region."""
    totals: dict[str, list] = {}
    for region, _month, value in fc["rows"]:
        totals.setdefault(region, []).append(value)
    return {region: {"total": round(sum(v), 1), "mean": round(sum(v) / len(v), 1),
                     "months": len(v)} for region, v in sorted(totals.items())}
