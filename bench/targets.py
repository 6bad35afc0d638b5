"""targets.py — the goals a bench measures, each with this run's verdict.

Issue 14 states its goals as numbers (KiB per agent, seconds to converge, a
throughput ratio); a bench that only prints its table leaves the reader to
hold each number against the issue, and a regression can pass unnoticed (the
static agent's idle RSS did, at 4124 KiB against 4096).  Each bench ends with
one "targets:" line built here.  A missed goal is printed, never an error:
the exit status stays what the bench saw go wrong.
"""


def line(goals):
    """goals: (what, measured, met) triples -> one printable line."""
    return "targets: " + "; ".join(
        "%s %s (%s)" % (what, "met" if met else "NOT MET", measured)
        for what, measured, met in goals)
