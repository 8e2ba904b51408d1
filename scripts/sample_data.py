"""Write a realistic sample data set as JSONL for the demo: a person's notes, contacts, events
and measurements, with unicode text. Deterministic (seeded), streamed to the output.

    python scripts/sample_data.py OUT.jsonl [COUNT]
"""

from __future__ import annotations

import json
import random
import sys

FIRST = ["Ada", "Grace", "Linus", "Zoë", "José", "Mei", "Øystein", "Amara", "Kenji", "Fatima"]
LAST = ["Lovelace", "Hopper", "Ngata", "Müller", "García", "Chen", "Dubois", "Okafor", "Sato"]
CITIES = ["Lisbon", "Kyōto", "Zürich", "Nairobi", "Montréal", "Auckland", "São Paulo", "Oslo"]
WORDS = [
    "garden",
    "ledger",
    "river",
    "sovereign",
    "quiet",
    "harbour",
    "lantern",
    "orbit",
    "meadow",
    "cipher",
    "ember",
    "tide",
    "archive",
    "compass",
    "signal",
    "thread",
    "window",
]


def record(i: int, rng: random.Random) -> dict[str, object]:
    kind = ("note", "contact", "event", "measurement")[i % 4]
    ts = 1_700_000_000 + i * 37
    if kind == "note":
        value: dict[str, object] = {
            "title": " ".join(rng.sample(WORDS, 3)).capitalize(),
            "body": " ".join(rng.choices(WORDS, k=24)),
            "tags": rng.sample(WORDS, 2),
            "created": ts,
        }
    elif kind == "contact":
        value = {
            "name": f"{rng.choice(FIRST)} {rng.choice(LAST)}",
            "city": rng.choice(CITIES),
            "email": f"user{i}@example.org",
            "since": ts,
        }
    elif kind == "event":
        value = {
            "what": rng.choice(["walk", "call", "read", "cook", "swim"]),
            "where": rng.choice(CITIES),
            "minutes": rng.randint(5, 180),
            "at": ts,
        }
    else:
        value = {
            "metric": rng.choice(["steps", "sleep_h", "heart_bpm"]),
            "value": round(rng.uniform(1, 12000), 2),
            "at": ts,
        }
    return {"key": f"{kind}/{i:07d}", "value": value}


def main() -> None:
    out = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    rng = random.Random(42)
    with open(out, "w", encoding="utf-8") as f:
        for i in range(count):
            f.write(json.dumps(record(i, rng), ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
