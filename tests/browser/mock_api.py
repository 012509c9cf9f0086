#!/usr/bin/env python3
"""Mock of the logstats public API for developing/testing the dashboard without the Rust server.

Serves src/api/dashboard/* at /, /dashboard/app.js, /dashboard/style.css and canned JSON for
  GET /customers
  GET /customers/{id}/stats?from=&to=          (one object per day with data, ascending)
  GET /customers/{id}/stats/summary?from=&to=  (one object; total_requests 0 when empty)
Errors: 422 invalid_query, 401 unauthorized (with --api-key), 404 not_found.
Usage: python3 tests/browser/mock_api.py [--port 8765] [--api-key KEY]   (binds 127.0.0.1 only)
"""
import argparse, datetime as dt, json, random, re
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, unquote

DASH = Path(__file__).resolve().parents[2] / "src/api/dashboard"
STATIC = {"/": ("index.html", "text/html"), "/dashboard/app.js": ("app.js", "text/javascript"),
          "/dashboard/style.css": ("style.css", "text/css")}
D = dt.date.fromisoformat


def make_days(cid, first, n, skip=()):
    rnd, out = random.Random(cid), {}
    for i in range(n):
        if i in skip:
            continue
        day = D(first) + dt.timedelta(days=i)
        s2, s4, s5, s1, s3 = (rnd.randint(800, 1500), rnd.randint(20, 150), rnd.randint(0, 60),
                              rnd.randint(0, 5), rnd.randint(0, 20))
        total, mean = s1 + s2 + s3 + s4 + s5, rnd.uniform(0.08, 0.3)
        out[day.isoformat()] = {
            "customer_id": cid, "date": day.isoformat(), "success_requests": s2,
            "failed_requests": total - s2, "uptime_percentage": round(rnd.uniform(97, 100), 2),
            "duration_mean": round(mean, 3), "duration_p50": round(mean * 0.8, 3),
            "duration_p99": round(mean * rnd.uniform(3, 6), 3), "total_requests": total,
            "status_1xx": s1, "status_2xx": s2, "status_3xx": s3, "status_4xx": s4, "status_5xx": s5,
            "availability_percentage": round(100 * (total - s5) / total, 2),
            "duration_p90": round(mean * 2, 3), "duration_p95": round(mean * 2.5, 3),
            "duration_max": round(mean * 8, 3)}
    return out


DATA = {"cust_1": make_days("cust_1", "2024-09-03", 30),
        "cust_2": make_days("cust_2", "2024-08-01", 45, skip={5, 6, 7, 20, 33}),
        "cust_3": make_days("cust_3", "2024-12-20", 20, skip=set(range(3, 9)))}


def summary(cid, rows, frm, to):
    tot = sum(r["total_requests"] for r in rows)
    out = {"customer_id": cid, "from": frm, "to": to}
    for k in ("total_requests", "success_requests", "failed_requests",
              *(f"status_{c}xx" for c in range(1, 6))):
        out[k] = sum(r[k] for r in rows)
    for k in ("uptime_percentage", "availability_percentage", "duration_mean", "duration_p50",
              "duration_p90", "duration_p95", "duration_p99"):  # approximation; the server is exact
        out[k] = round(sum(r[k] * r["total_requests"] for r in rows) / tot, 3) if tot else 0
    out["duration_max"] = max((r["duration_max"] for r in rows), default=0)
    return out


class Handler(BaseHTTPRequestHandler):
    api_key = None

    def send(self, code, body, ctype="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def err(self, code, error, detail):
        self.send(code, {"error": error, "detail": detail})

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path in STATIC:
            name, ctype = STATIC[url.path]
            return self.send(200, (DASH / name).read_bytes(), ctype + "; charset=utf-8")
        if not url.path.startswith("/customers"):
            return self.err(404, "not_found", "no such route")
        if self.api_key and self.headers.get("Authorization") != f"Bearer {self.api_key}":
            return self.err(401, "unauthorized", "missing or invalid API key")
        if url.path == "/customers":
            return self.send(200, [{"customer_id": c, "first_day": min(d), "last_day": max(d),
                                    "total_requests": sum(r["total_requests"] for r in d.values())}
                                   for c, d in DATA.items()])
        m = re.fullmatch(r"/customers/([^/]+)/stats(/summary)?", url.path)
        if not m:
            return self.err(404, "not_found", "no such route")
        cid, q = unquote(m.group(1)), parse_qs(url.query)
        if cid not in DATA:
            return self.err(404, "not_found", f"unknown customer {cid}")
        frm, to, bad = q.get("from", [""])[0], q.get("to", [""])[0], []
        for name, v in (("from", frm), ("to", to)):
            if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", v):
                bad.append({"loc": ["query", name], "msg": "expected a date YYYY-MM-DD"})
        if not bad and frm > to:
            bad.append({"loc": ["query", "from"], "msg": "from must not be after to"})
        if bad:
            return self.err(422, "invalid_query", bad)
        rows = [r for d, r in sorted(DATA[cid].items()) if frm <= d <= to]
        self.send(200, summary(cid, rows, frm, to) if m.group(2) else rows)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--api-key")
    a = ap.parse_args()
    Handler.api_key = a.api_key
    ThreadingHTTPServer(("127.0.0.1", a.port), Handler).serve_forever()
