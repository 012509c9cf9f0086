"""Writes the long-summary benchmark's log: CUSTOMERS customers (dec_1..) x ten years
(2015-01-01..2024-12-31) x PER_DAY requests a day, durations to the microsecond (days hardly
share a value), one request in 50 a 5xx. Deterministic.

    python3 bench/decade.py CUSTOMERS PER_DAY > decade.log
"""
import datetime
import random
import sys

customers, per_day = int(sys.argv[1]), int(sys.argv[2])
rng = random.Random(11)
out = sys.stdout
day = datetime.date(2015, 1, 1)
while day.year < 2025:
    text = day.isoformat()
    for customer in range(1, customers + 1):
        lines = []
        for _ in range(per_day):
            status = 503 if rng.random() < 0.02 else 200
            us = rng.randrange(1, 3_000_000)
            lines.append(f"{text} 12:00:00 dec_{customer} /v1/items {status} {us // 1000000}.{us % 1000000:06d}\n")
        out.writelines(lines)
    day += datetime.timedelta(days=1)
