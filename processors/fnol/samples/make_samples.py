"""Regenerate fnol.jsonl (valid claims) and fnol_malformed.jsonl: ``python make_samples.py``.

Fictional people; deterministic output (seeded), so the files only change on purpose.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIRST = [
    "Alice",
    "Bilal",
    "Chloe",
    "Dmitri",
    "Eleanor",
    "Farah",
    "George",
    "Hana",
    "Ivan",
    "Julia",
    "Kwame",
    "Laura",
    "Mateo",
    "Nadia",
    "Oscar",
    "Priya",
]
LAST = [
    "Smith",
    "Okafor",
    "Nguyen",
    "Kowalski",
    "Brown",
    "Haddad",
    "Murphy",
    "Tanaka",
    "Petrov",
    "Garcia",
    "Mensah",
    "Rossi",
]
POSTCODES = [
    "SW1A 1AA",
    "M1 1AE",
    "B33 8TH",
    "CR2 6XH",
    "DN55 1PT",
    "LS1 4AP",
    "EH1 1YZ",
    "CF10 1EP",
    "BT1 5GS",
    "OX1 2JD",
]
CARS = [
    ("Ford", "Focus"),
    ("Vauxhall", "Corsa"),
    ("Toyota", "Yaris"),
    ("BMW", "3 Series"),
    ("Nissan", "Qashqai"),
    ("Tesla", "Model 3"),
]
LOSS = {
    "auto_collision": (
        ["front_bumper_dent", "rear_bumper_dent", "door_dent", "airbag_deployed", "frame_damage"],
        "Another car hit mine at a junction near {postcode}. Call me on {phone} or email {email}. My car {plate} is not drivable.",
    ),
    "auto_theft": ([], "My car {plate} was stolen from outside my house overnight. I am {name}, reachable on {phone}."),
    "auto_glass": (
        ["windscreen_chip", "windscreen_crack"],
        "A stone chipped the windscreen of {plate} on the motorway.",
    ),
    "property_water": (
        ["water_stain", "flooded_room"],
        "A pipe burst in the upstairs bathroom and water came through the kitchen ceiling. Contact {email}.",
    ),
    "property_fire": (
        ["smoke_damage", "burnt_out", "structural_damage"],
        "A fire started in the kitchen; the fire service attended. {name} was at home.",
    ),
    "property_theft": (["broken_window"], "Burglars broke a window and took a laptop and jewellery. Phone {phone}."),
    "liability": ([], "A visitor slipped on our wet floor and was injured; they have written to {email}."),
}


# Reported through a broker with no contact details: documents cannot be requested
# from the claimant, so these runs show a compensated saga (the reserve is released).
NO_CONTACT = {5, 43}


def claim(rng: random.Random, n: int) -> dict[str, object]:
    loss_type = list(LOSS)[n % len(LOSS)]
    labels, template = LOSS[loss_type]
    first, last = rng.choice(FIRST), rng.choice(LAST)
    name = f"{first} {last}"
    email = f"{first.lower()}.{last.lower()}{n}@example.com"
    phone = f"+44 7700 9{rng.randint(10000, 99999)}"
    plate = f"{rng.choice(['AB', 'CD', 'EF', 'GH', 'LK', 'YX'])}{rng.randint(10, 99)} {''.join(rng.choice('ABCDEFGHJKLMNPRSTUVWXYZ') for _ in range(3))}"
    postcode = rng.choice(POSTCODES)
    day = 1 + n % 26
    late = n % 11 == 0
    report: dict[str, object] = {
        "claim_id": f"CLM-{100000 + n:06d}",
        "tenant_id": "acme" if n % 3 else "globex",
        "policy_number": f"POL-{rng.randint(100000, 999999)}",
        "reported_at": f"2026-11-{min(27, day + 1):02d}T{8 + n % 10:02d}:{n % 60:02d}:00Z",
        "loss_date": f"2026-{'09' if late else '11'}-{day:02d}",
        "loss_type": loss_type,
        "description": template.format(name=name, email=email, phone=phone, plate=plate, postcode=postcode),
        "location": {"postcode": postcode, "country": "GB"},
        "claimant": {"name": name, "email": email, "phone": phone},
        "photos": [
            {"uri": f"s3://claims-photos/{100000 + n}/{i}.jpg", "labels": rng.sample(labels, k=min(len(labels), 1 + i))}
            for i in range(rng.randint(0, 3) if labels else 0)
        ],
        "estimated_amount": float(rng.choice([450, 900, 1800, 3200, 6400, 12500, 24000, 48000])),
        "currency": "GBP",
    }
    if n in NO_CONTACT:
        report["claimant"] = {"name": name}
        report["description"] = template.format(
            name=name, email="my broker", phone="my broker", plate=plate, postcode=postcode
        )
    if loss_type.startswith("auto"):
        make, model = rng.choice(CARS)
        report["vehicle"] = {"plate": plate, "make": make, "model": model, "year": rng.randint(2008, 2025)}
    return report


MALFORMED = [
    "this is not json",
    '{"claim_id": "CLM-900001", "tenant_id": "acme"}',
    '{"claim_id": "CLM-900002", "tenant_id": "acme", "policy_number": "POL-1", "reported_at": "2026-11-27T10:15:00Z", "loss_date": "2026-11-26", "loss_type": "meteor_strike", "location": {"postcode": "SW1A 1AA", "country": "GB"}, "claimant": {"name": "Zed Example"}, "estimated_amount": 100.0, "currency": "GBP"}',
    '{"claim_id": "CLM-900003", "tenant_id": "acme", "policy_number": "POL-1", "reported_at": "yesterday", "loss_date": "2026-11-26", "loss_type": "auto_glass", "location": {"postcode": "SW1A 1AA", "country": "GB"}, "claimant": {"name": "Zed Example"}, "estimated_amount": 100.0, "currency": "GBP"}',
    '{"claim_id": "CLM-900004", "tenant_id": "acme", "policy_number": "POL-1", "reported_at": "2026-11-27T10:15:00Z", "loss_date": "2026-11-26", "loss_type": "auto_glass", "location": {"postcode": "SW1A 1AA", "country": "GB"}, "claimant": {"name": "Zed Example"}, "estimated_amount": -5, "currency": "GBP"}',
    "[1, 2, 3]",
    '{"claim_id": "CLM 900005 with spaces", "tenant_id": "acme", "policy_number": "POL-1", "reported_at": "2026-11-27T10:15:00Z", "loss_date": "2026-11-26", "loss_type": "auto_glass", "location": {"postcode": "SW1A 1AA", "country": "GB"}, "claimant": {"name": "Zed Example", "email": "not-an-email"}, "estimated_amount": 100.0, "currency": "pounds"}',
    '{"claim_id": "CLM-900006", "truncated": ',
]


def main() -> None:
    rng = random.Random(20261127)
    with open(HERE / "fnol.jsonl", "w") as f:
        for n in range(1, 61):
            f.write(json.dumps(claim(rng, n)) + "\n")
    with open(HERE / "fnol_malformed.jsonl", "w") as f:
        f.write(json.dumps(claim(rng, 901)) + "\n")  # one good line among the bad
        for line in MALFORMED:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
