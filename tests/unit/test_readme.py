"""The README's rule table is the user's reference: it must name exactly the codes the code uses."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
WARNINGS = {"decoded_as_windows_1252", "delimiter", "unknown_columns", "report_footer"}


def codes_in_code() -> set[str]:
    """Every stable code given to an Issue (directly or through `refuse`) in the services and shared."""
    found = set()
    for path in [*ROOT.glob("services/**/*.py"), *ROOT.glob("shared/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            if name == "refuse" and node.args and isinstance(node.args[0], ast.Constant):
                found.add(node.args[0].value)
            if name == "Issue":
                found |= {k.value.value for k in node.keywords if k.arg == "code" and isinstance(k.value, ast.Constant)}
    return found


def codes_in_readme_table() -> set[str]:
    section = (ROOT / "README.md").read_text().split("## The rules", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z_0-9]+)` \|", section, flags=re.MULTILINE))


def test_the_readme_rule_table_lists_every_code_and_only_those():
    in_code = codes_in_code() - WARNINGS
    in_table = codes_in_readme_table()
    assert in_code - in_table == set(), "codes missing from the README's table"
    assert in_table - in_code == set(), "codes in the README's table that the code never gives"


def test_the_readme_names_the_warnings():
    section = (ROOT / "README.md").read_text().split("## The rules", 1)[1]
    assert all(f"`{code}`" in section for code in WARNINGS)
    assert WARNINGS <= codes_in_code()


def test_the_readme_shows_both_set_up_commands():
    text = (ROOT / "README.md").read_text()
    assert "make demo" in text and "make test" in text


def test_the_readme_topology_table_is_the_one_the_code_declares():
    from clients_import.topology import describe

    assert describe() in (ROOT / "README.md").read_text()


def test_the_readme_webhook_recipe_is_the_tested_one():
    """Receivers copy the verification function from the README: it must be examples/verify_webhook.py, which
    the webhook tests run against real deliveries."""
    recipe = (ROOT / "examples" / "verify_webhook.py").read_text()
    assert f"```python\n{recipe}```" in (ROOT / "README.md").read_text()


def test_the_readme_route_table_names_every_route_the_api_serves():
    from faststream.kafka.fastapi import KafkaRouter

    from services.api.app import build_api
    from shared.settings import Settings

    app = build_api(Settings(_env_file=None, api_token="r" * 32), None, KafkaRouter("127.0.0.1:9", schema_url=None))
    section = (ROOT / "README.md").read_text().split("## HTTP API and the Clients page", 1)[1].split("\n## ", 1)[0]
    table = "\n".join(line for line in section.splitlines() if line.startswith("| `"))
    served = {route.path for route in app.routes if hasattr(route, "path")}
    served = {path for path in served if not path.startswith(("/static", "/asyncapi", "/docs/oauth2"))}
    def shape(text: str) -> str:  # `{id}` in the README is `{job_id}` in the code
        return re.sub(r"\{[a-z_]+\}", "{}", text)

    missing = {path for path in served if shape(path) not in shape(table)}
    assert not missing, f"routes the README's table does not name: {sorted(missing)}"
