"""The fields of a client in an import file: the one place that names them.

The reader matches headers against these, the rules check values against their limits, the writer
fills defaults from them, the reports and the template use their order, and the page reads them
from `GET /settings`. Nothing else spells the list out.
"""

from dataclasses import dataclass

__all__ = ["ClientField", "FIELDS", "REQUIRED", "OPTIONAL", "BY_COLUMN", "DEFAULTS", "NAME_MAX", "EMAIL_MAX",
           "USERNAME_MIN", "USERNAME_MAX", "TYPE_DEFAULT"]

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
    required: bool = False
    default: str | None = None
    max_length: int = NAME_MAX
    aliases: tuple[str, ...] = ()  # other header names taken for this column (compared case- and space-blind)
    note: str | None = None


FIELDS: tuple[ClientField, ...] = (
    ClientField("firstName", "first_name", "first name", required=True),
    ClientField("email", "email", "email", required=True, max_length=EMAIL_MAX, note="unique"),
    ClientField("username", "username", "username", max_length=USERNAME_MAX,
                note="generated from the email when empty"),
    ClientField("middleName", "middle_name", "middle name"),
    ClientField("lastName", "last_name", "last name"),
    ClientField("project", "project", "project", default="default"),
    ClientField("desk", "desk", "desk", default="default"),
    ClientField("type", "type", "type", default=TYPE_DEFAULT, max_length=32),
)

REQUIRED: tuple[str, ...] = tuple(f.column for f in FIELDS if f.required)
OPTIONAL: tuple[str, ...] = tuple(f.column for f in FIELDS if not f.required)
BY_COLUMN: dict[str, ClientField] = {f.column: f for f in FIELDS}
DEFAULTS: dict[str, str] = {f.key: f.default for f in FIELDS if f.default is not None}
