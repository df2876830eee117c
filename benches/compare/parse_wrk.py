"""Reads wrk --latency output on stdin; prints `req/s|p50 ms|p99 ms`."""
import re
import sys

text = sys.stdin.read()
UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def latency(pct):
    m = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    return float(m.group(1)) * UNITS[m.group(2)]


rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
print(f"{rps:.0f}|{latency(50):.3f}|{latency(99):.3f}")
