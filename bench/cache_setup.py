"""Helpers of bench/cache.sh that are easier in Python than in shell.

    zipf     a dnsperf query file of outside names drawn with repetition, Zipf-like (rank r drawn in
             proportion to 1/r), as real resolvers see them
    random   a dnsperf query file of distinct random outside names (every one a cache miss)
    report   the table of one run, from the key=value lines cache.sh collected

No root needed here and no kernel access.
"""

from __future__ import annotations

import argparse
import random
import secrets


def write_zipf(path: str, lines: int, distinct: int, suffix: str, seed: int) -> int:
    """``lines`` A queries over ``distinct`` names NAME.SUFFIX, rank r with weight 1/r; returns how many distinct
    names the file holds."""
    rng = random.Random(seed)
    names = [f"n{rank}.{suffix}" for rank in range(1, distinct + 1)]
    drawn = rng.choices(names, weights=[1 / rank for rank in range(1, distinct + 1)], k=lines)
    with open(path, "w") as file:
        file.writelines(f"{name} A\n" for name in drawn)
    return len(set(drawn))


def write_random(path: str, lines: int, suffix: str) -> None:
    """``lines`` A queries, each for a random name of its own under ``suffix``."""
    with open(path, "w") as file:
        for _ in range(lines):
            file.write(f"r{secrets.token_hex(6)}.{suffix} A\n")


def report(path: str, title: str) -> str:
    """The table of a run from KEY=VALUE lines (see cache.sh for the keys)."""
    values: dict[str, float] = {}
    with open(path) as file:
        for line in file:
            key, _, value = line.strip().partition("=")
            if key:
                values[key] = float(value)

    def get(key: str) -> float:
        return values.get(key, float("nan"))

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}x" if b and b == b and a == a else "n/a"

    dnsd, dnsmasq, aardvark = get("qps_zipf_dnsd"), get("qps_zipf_dnsmasq"), get("qps_zipf_aardvark")
    rows = [
        title,
        "",
        "1. outside names (Zipf-like file, upstream answers after 1 ms), QPS:",
        f"   dnsd (cache)        {dnsd:10.0f}",
        f"   dnsmasq (cache)     {dnsmasq:10.0f}   dnsd/dnsmasq  {ratio(dnsd, dnsmasq)}  (goal >= 1.0x)",
        f"   aardvark-dns        {aardvark:10.0f}   dnsd/aardvark {ratio(dnsd, aardvark)}  (goal >= 10x)",
        "",
        "2. dnsd CPU per answered query at a fixed offered rate (dnsperf -Q):",
        f"   local name          {get('cpu_us_local'):8.2f} us",
        f"   cached outside name {get('cpu_us_cached'):8.2f} us   cached/local "
        f"{ratio(get('cpu_us_cached'), get('cpu_us_local'))}  (goal <= 1.2x)",
        "",
        "3. metrics on, local names (100 records), QPS:",
        f"   off                 {get('qps_local_plain'):10.0f}",
        f"   on (--metrics)      {get('qps_local_metrics'):10.0f}   on/off "
        f"{ratio(get('qps_local_metrics'), get('qps_local_plain'))}  (goal >= 0.95x)",
        "",
        "4. dnsd RSS with the cache full, random names (every one a miss, asked upstream):",
        f"   after {get('names_first'):9.0f} names {get('rss_first_kb') / 1024:8.1f} MB",
        f"   after {get('names_total'):9.0f} names {get('rss_total_kb') / 1024:8.1f} MB   growth "
        f"{(get('rss_total_kb') / get('rss_first_kb') - 1) * 100:+.1f}%  (goal within 5%)",
        f"   cache entries at the end: {get('cache_entries'):.0f}, evictions: {get('cache_evictions'):.0f}",
    ]
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cache_setup.py")
    steps = parser.add_subparsers(dest="step", required=True)
    zipf = steps.add_parser("zipf")
    zipf.add_argument("--out", required=True)
    zipf.add_argument("--lines", type=int, default=1000)
    zipf.add_argument("--distinct", type=int, default=1000)
    zipf.add_argument("--suffix", default="upstream.test")
    zipf.add_argument("--seed", type=int, default=16)
    rand = steps.add_parser("random")
    rand.add_argument("--out", required=True)
    rand.add_argument("--lines", type=int, required=True)
    rand.add_argument("--suffix", default="upstream.test")
    rep = steps.add_parser("report")
    rep.add_argument("values")
    rep.add_argument("--title", default="")
    rep.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.step == "zipf":
        print(write_zipf(args.out, args.lines, args.distinct, args.suffix, args.seed))
    elif args.step == "random":
        write_random(args.out, args.lines, args.suffix)
    else:
        table = report(args.values, args.title)
        with open(args.out, "w") as file:
            file.write(table)
        print(table, end="")


if __name__ == "__main__":
    main()
