"""Prints the comparison as a markdown table.

Arguments are rows `name|req/s|p50|p99|rss`, one per contestant per round.
A contestant run in several rounds is shown by its median round (by req/s;
the lower of the middle two for an even count), with the lowest and highest
req/s of all its rounds; ratios are of medians.
"""
import sys

by_name = {}
for arg in sys.argv[1:]:
    name, rps, p50, p99, rss = arg.split("|")
    by_name.setdefault(name, []).append((float(rps), p50, p99, rss))


def median(runs):
    return sorted(runs, key=lambda r: r[0])[(len(runs) - 1) // 2]


base = median(by_name["nginx-proxy_pass"])[0] if "nginx-proxy_pass" in by_name else None
print("| contestant | req/s (median) | rounds: lowest–highest | p50 ms | p99 ms | ÷ nginx proxy_pass | RSS |")
print("|---|---:|---:|---:|---:|---:|---|")
for name, runs in by_name.items():
    rps, p50, p99, rss = median(runs)
    spread = f"{min(r[0] for r in runs):.0f}–{max(r[0] for r in runs):.0f}" if len(runs) > 1 else "-"
    ratio = f"{rps / base:.2f}" if base else "-"
    print(f"| {name} | {rps:.0f} | {spread} | {p50} | {p99} | {ratio} | {rss} |")
