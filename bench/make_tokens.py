#!/usr/bin/env python3
"""make_tokens.py — create N agent tokens through POST /api/kubectl/tokens
(Python 3.11 stdlib only).  The server must run with AURORA_TOKEN_RATE_LIMIT
and AURORA_TOKEN_RATE_LIMIT_PER_MINUTE above N.  One process and kept-alive connections instead of N `aurora-server
admin create-agent-token` processes: 1000 of those take 20-60 s on a busy
2-core machine, this takes a few seconds.

Writes one JSON object per line ({"token","token_id","cluster_id",...}) to --out.
Exit status 1 if any creation failed.
"""

import argparse
import http.client
import json
import re
import ssl
import sys
import threading

TOKEN_RE = re.compile(r"^aurora_kubectl_[A-Za-z0-9_-]{64}$")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--prefix", default="idle-")
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=4)
    args = ap.parse_args()

    ctx = ssl.create_default_context(cafile=args.ca)
    lock = threading.Lock()
    results = [None] * args.count
    errors = []
    nxt = [0]

    def worker():
        conn = None
        while True:
            with lock:
                i = nxt[0]
                if i >= args.count:
                    break
                nxt[0] += 1
            body = json.dumps({"cluster_name": f"{args.prefix}{i + 1}", "notes": "bench"})
            try:
                if conn is None:
                    conn = http.client.HTTPSConnection("127.0.0.1", args.port, context=ctx,
                                                       timeout=30)
                conn.request("POST", "/api/kubectl/tokens", body=body,
                             headers={"Authorization": f"Bearer {args.key}",
                                      "Content-Type": "application/json"})
                r = conn.getresponse()
                raw = r.read()
            except Exception as e:  # noqa: BLE001
                with lock:
                    errors.append(f"#{i}: {type(e).__name__}: {e}")
                if conn is not None:
                    conn.close()
                conn = None
                continue
            if r.status != 201:
                with lock:
                    errors.append(f"#{i}: HTTP {r.status} {raw[:200]!r}")
                continue
            o = json.loads(raw)
            if not TOKEN_RE.match(o.get("token", "")) or not o.get("cluster_id"):
                with lock:
                    errors.append(f"#{i}: unexpected body {raw[:200]!r}")
                continue
            results[i] = o
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=worker) for _ in range(max(1, args.threads))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with open(args.out, "w") as f:
        for o in results:
            if o:
                f.write(json.dumps(o) + "\n")
    for e in errors[:10]:
        print(f"make_tokens: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
