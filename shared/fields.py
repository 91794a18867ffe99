"""The fields of a client in an import file: the one place that names them.

The reader matches headers against these, the rules check values against their limits, the writer
fills defaults from them, the reports and the template use their order, and the page reads them
from `GET /settings`. Nothing else spells the list out.
"""

from dataclasses import dataclass

__all__ = ["ClientField", "FIELDS", "REQUIRED", "OPTIONAL", "BY_COLUMN", "BY_KEY", "UNIQUE", "DEFAULTS", "NAME_MAX",
           "EMAIL_MAX", "USERNAME_MIN", "USERNAME_MAX", "TYPE_DEFAULT", "CLIENT_TYPES", "EXAMPLE_ROWS"]

NAME_MAX = 100
EMAIL_MAX = 254
USERNAME_MIN = 3
USERNAME_MAX = 64
TYPE_DEFAULT = "personal"


@dataclass(frozen=True)
class ClientField:
    column: str  # the header name in a file, as the help page spells it
    key: str  # the attribute of ClientValues and the database column
    label: str  # in sentences a person reads
    kind: str  # which rule checks it: address, name, login, label or choice (services/validator/rules.py)
    required: bool = False
    unique: bool = False  # no two rows of a file, and no two clients, share it
    default: str | None = None
    max_length: int = NAME_MAX
    aliases: tuple[str, ...] = ()  # other header names taken for this column (compared case- and space-blind)
    note: str | None = None


FIELDS: tuple[ClientField, ...] = (
    ClientField("firstName", "first_name", "first name", "name", required=True),
    ClientField("email", "email", "email", "address", required=True, unique=True, max_length=EMAIL_MAX, note="unique"),
    ClientField("username", "username", "username", "login", unique=True, max_length=USERNAME_MAX,
                note="generated from the email when empty"),
    ClientField("middleName", "middle_name", "middle name", "name"),
    ClientField("lastName", "last_name", "last name", "name"),
    ClientField("project", "project", "project", "label", default="default"),
    ClientField("desk", "desk", "desk", "label", default="default"),
    ClientField("type", "type", "type", "choice", default=TYPE_DEFAULT, max_length=32),
)
CLIENT_TYPES: tuple[str, ...] = (TYPE_DEFAULT, "corporate")  # the default of the CLIENT_TYPES setting

# The help page's example rows, which the template repeats: column -> value, the rest empty.
EXAMPLE_ROWS: tuple[dict[str, str], ...] = tuple(
    {"firstName": f"example{n}", "email": f"example{n}@example.com", "lastName": f"exampleL{n}"} for n in (1, 2)
)

REQUIRED: tuple[str, ...] = tuple(f.column for f in FIELDS if f.required)
OPTIONAL: tuple[str, ...] = tuple(f.column for f in FIELDS if not f.required)
BY_COLUMN: dict[str, ClientField] = {f.column: f for f in FIELDS}
BY_KEY: dict[str, ClientField] = {f.key: f for f in FIELDS}
UNIQUE: tuple[str, ...] = tuple(f.column for f in FIELDS if f.unique)
DEFAULTS: dict[str, str] = {f.key: f.default for f in FIELDS if f.default is not None}
