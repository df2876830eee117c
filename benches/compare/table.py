"""Prints the comparison as a markdown table: rows are `name|req/s|p50|p99|rss`."""
import sys

rows = [r.split("|") for r in sys.argv[1:]]
base = next((float(r[1]) for r in rows if r[0] == "nginx-proxy_pass"), None)
print("| contestant | req/s | p50 ms | p99 ms | ÷ nginx proxy_pass | RSS |")
print("|---|---:|---:|---:|---:|---|")
for name, rps, p50, p99, rss in rows:
    ratio = f"{float(rps) / base:.2f}" if base else "-"
    print(f"| {name} | {rps} | {p50} | {p99} | {ratio} | {rss} |")
