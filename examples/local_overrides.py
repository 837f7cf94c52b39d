"""Pin flags for local work without touching the store: --flag NAME=VALUE and FLAGSTAFF_OVERRIDES.

Run: python examples/local_overrides.py --flag new_checkout=on --flag search_ranker=variant:neural
(or FLAGSTAFF_OVERRIDES="new_checkout=on" python examples/local_overrides.py)
"""

import argparse
import json
from pathlib import Path

import flagstaff
from flagstaff import overrides
from flagstaff.admin import Admin
from flagstaff.errors import ValidationError
from flagstaff.stores import open_store

parser = argparse.ArgumentParser(description="Show decisions with local flag overrides.")
overrides.add_argument(parser)  # --flag NAME=VALUE, repeatable
args = parser.parse_args()

store = open_store("memory://")  # stands in for the shared store everyone reads
Admin(store).import_documents(json.loads(Path(__file__).with_name("flags.json").read_text()))

with flagstaff.connect(store) as client:
    try:
        overrides.install(client, args.flag_overrides)  # the environment first, then the command line
    except ValidationError as exc:  # a bad FLAGSTAFF_OVERRIDES entry: a usage error (exit 2)
        parser.error(str(exc))
    for user in ("alice", "bob"):
        checkout = client.evaluate("new_checkout", user)
        ranker = client.evaluate("search_ranker", user)
        dark = client.is_enabled("dark_mode", user)
        print(
            f"{user}: new_checkout={checkout.enabled} ({checkout.reason.value}), "
            f"search_ranker={ranker.variant} ({ranker.reason.value}), dark_mode={dark}"
        )
    print("store untouched:", json.loads(store.get("new_checkout").raw))  # type: ignore[union-attr]
store.close()
