"""The webhook verification recipe the README gives receivers (examples/verify_webhook.py), loaded from its
file and run as it is written: the tests check the text partners copy, not a copy of it."""

from pathlib import Path

RECIPE = Path(__file__).parents[1] / "examples" / "verify_webhook.py"


def _load():
    namespace: dict = {}
    exec(compile(RECIPE.read_text(), str(RECIPE), "exec"), namespace)
    return namespace["verify_webhook"]


verify_webhook = _load()
