"""Generate extraction.jsonl: short synthetic notes about people, each with its expected JSON fields.

Run from this folder: ``python make_data.py``. The texts are made up from the word lists below
with a seeded random generator (seed 15), so the file is reproducible and holds no third-party text.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SEED = 15
COUNT = 40

FIRST = [
    "Maria",
    "Tomas",
    "Aiko",
    "Samuel",
    "Ingrid",
    "Ravi",
    "Lucia",
    "Omar",
    "Greta",
    "Daniel",
    "Nadia",
    "Pavel",
    "Chloe",
    "Kwame",
    "Elena",
    "Hugo",
    "Leila",
    "Victor",
    "Sofia",
    "Jonas",
]
LAST = [
    "Lopez",
    "Berg",
    "Tanaka",
    "Okafor",
    "Novak",
    "Sharma",
    "Rossi",
    "Haddad",
    "Lind",
    "Moreau",
    "Petrov",
    "Silva",
    "Keller",
    "Mensah",
    "Costa",
    "Weber",
    "Nasser",
    "Dumont",
    "Ferreira",
    "Holm",
]
CITIES = [
    "Lisbon",
    "Oslo",
    "Osaka",
    "Lagos",
    "Prague",
    "Pune",
    "Turin",
    "Beirut",
    "Malmo",
    "Lyon",
    "Kazan",
    "Porto",
    "Zurich",
    "Accra",
    "Seville",
    "Bremen",
    "Tunis",
    "Nantes",
    "Recife",
    "Bergen",
]
PATTERNS = [
    "Hello, my name is {name}. I am {age} years old and I live in {city}.",
    "{name}, {age}, recently moved to {city} and is looking for a running club.",
    "Customer note: {name} ({age} years old) called from {city} about a late delivery.",
    "From {city}: {name}, aged {age}, won the local chess tournament on Sunday.",
    "New member: {name} from {city}, age {age}, joined the book club.",
    "{name} is a {age}-year-old nurse who works in {city}.",
]


def records(seed: int = SEED, count: int = COUNT) -> list[dict[str, object]]:
    """`count` distinct examples: a note as input, its fields as a JSON object in target."""
    rng = random.Random(seed)
    out: list[dict[str, object]] = []
    seen: set[str] = set()
    while len(out) < count:
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        city, age = rng.choice(CITIES), rng.randint(19, 78)
        text = rng.choice(PATTERNS).format(name=name, city=city, age=age)
        if text in seen:
            continue
        seen.add(text)
        target = json.dumps({"name": name, "city": city, "age": age})
        out.append({"id": f"note-{len(out):03d}", "input": text, "target": target})
    return out


if __name__ == "__main__":
    path = Path(__file__).with_name("extraction.jsonl")
    path.write_text("".join(json.dumps(r) + "\n" for r in records()), encoding="utf-8")
    print(f"wrote {COUNT} examples to {path}")
