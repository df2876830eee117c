"""Prints the comparison as a markdown table.

Arguments are rows `name|req/s|p50|p99|rss|cpu`, one per contestant per
round; `cpu` is `total/user/kernel` µs per request, or empty (the direct row).
A contestant run in several rounds is shown by its median round (by req/s;
the lower of the middle two for an even count), with the lowest and highest
req/s of all its rounds; ratios are of medians. Its CPU per request is the
median round by total CPU, taken on its own.
"""
import sys

by_name = {}
for arg in sys.argv[1:]:
    name, rps, p50, p99, rss, cpu = arg.split("|")
    by_name.setdefault(name, []).append((float(rps), p50, p99, rss, cpu))


def median(runs, key):
    return sorted(runs, key=key)[(len(runs) - 1) // 2]


def cpu_cell(runs):
    measured = [r[4] for r in runs if r[4]]
    if not measured:
        return ""
    total, user, kernel = median(measured, key=lambda c: float(c.split("/")[0])).split("/")
    return f"{total} ({user} + {kernel})"


base = median(by_name["nginx-proxy_pass"], key=lambda r: r[0])[0] if "nginx-proxy_pass" in by_name else None
print("| contestant | req/s (median) | rounds: lowest–highest | p50 ms | p99 ms | ÷ nginx proxy_pass "
      "| CPU µs/request (user + kernel) | RSS |")
print("|---|---:|---:|---:|---:|---:|---:|---|")
for name, runs in by_name.items():
    rps, p50, p99, rss, _ = median(runs, key=lambda r: r[0])
    spread = f"{min(r[0] for r in runs):.0f}–{max(r[0] for r in runs):.0f}" if len(runs) > 1 else "-"
    ratio = f"{rps / base:.2f}" if base else "-"
    print(f"| {name} | {rps:.0f} | {spread} | {p50} | {p99} | {ratio} | {cpu_cell(runs)} | {rss} |")
