"""The fields of a client in an import file: the one place that names them.

The reader matches headers against these, the rules check values against their limits, the writer
fills defaults from them, the reports and the template use their order, and the page reads them
from `GET /settings`. Nothing else spells the list out.
"""

from collections import namedtuple
from dataclasses import dataclass

__all__ = ["ClientField", "FIELDS", "REQUIRED", "OPTIONAL", "BY_COLUMN", "BY_KEY", "UNIQUE", "DEFAULTS", "DEFAULT", "NAME_MAX",
           "EMAIL_MAX", "USERNAME_MIN", "USERNAME_MAX", "TYPE_DEFAULT", "CLIENT_TYPES", "EXAMPLE_ROWS", "FULL_NAME",
           "FULL_NAME_ALIASES", "NAME_PARTS", "split_full_name", "target_of", "TARGETS"]

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
    kind: str  # which rule checks it: address, name, login, label or choice (shared/rules.py)
    required: bool = False
    unique: bool = False  # no two rows of a file, and no two clients, share it
    default: str | None = None
    max_length: int = NAME_MAX
    aliases: tuple[str, ...] = ()  # other header names taken for this column (compared case- and space-blind)
    note: str | None = None
    # Words that, inside a column name no alias matches, make that column look like this field: what a
    # refusal suggests mapping (never matched on their own).
    hints: tuple[str, ...] = ()


# The aliases are the header names of the exports our users bring (compared ignoring case, spaces, '_' and
# '-'; the test files are in tests/files/exports/): Outlook's CSV export and Google Contacts' "Outlook CSV"
# (First Name, Middle Name, Last Name, E-mail Address), Google Contacts' "Google CSV" (Given Name, Additional
# Name, Family Name, E-mail 1 - Value; newer ones First Name ... E-mail 1 - Value), Mailchimp's audience
# export (Email Address, First Name, Last Name; FNAME/LNAME as merge tags), HubSpot's contacts export and
# Salesforce's contact reports (First Name, Last Name, Email).
FIELDS: tuple[ClientField, ...] = (
    ClientField("firstName", "first_name", "first name", "name", required=True,
                aliases=("First Name", "Given Name", "Forename", "FNAME"),
                hints=("first", "given", "vorname", "prenom", "prénom", "fore", "nombre")),
    ClientField("email", "email", "email", "address", required=True, unique=True, max_length=EMAIL_MAX, note="unique",
                aliases=("E-mail Address", "Email Address", "E-mail 1 - Value", "Email 1 - Value", "Primary Email",
                         "Work Email"),
                hints=("mail", "courriel", "correo", "adresse")),
    ClientField("username", "username", "username", "login", unique=True, max_length=USERNAME_MAX,
                note="generated from the email when empty", aliases=("User Name", "Login"),
                hints=("user", "login", "handle", "benutzer")),
    ClientField("middleName", "middle_name", "middle name", "name", aliases=("Middle Name", "Additional Name"),
                hints=("middle", "second")),
    ClientField("lastName", "last_name", "last name", "name", aliases=("Last Name", "Family Name", "Surname", "LNAME"),
                hints=("last", "family", "surname", "nachname", "apellido")),
    ClientField("project", "project", "project", "label", default="default"),
    ClientField("desk", "desk", "desk", "label", default="default"),
    ClientField("type", "type", "type", "choice", default=TYPE_DEFAULT, max_length=32, aliases=("Client Type",)),
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
# The same defaults by attribute, None where a field has none: `DEFAULT.project` (the writer reads it per row).
DEFAULT = namedtuple("Defaults", [f.key for f in FIELDS])(*(f.default for f in FIELDS))

# A single column holding the whole name: split into the name fields no column of the file gives (the
# reader takes it only when no column is firstName; a column map can point any column at it, or away).
FULL_NAME = "fullName"
FULL_NAME_ALIASES: tuple[str, ...] = ("Name", "Full Name", "Contact Name", "Full_Name", "fullName")
NAME_PARTS: tuple[str, ...] = ("firstName", "middleName", "lastName")

# What a column map may name as a field: each field's column name or its key (first_name), and fullName.
TARGETS: tuple[str, ...] = (*(f.column for f in FIELDS), FULL_NAME)


def _blind(name: str) -> str:
    return "".join(c for c in name if c not in " _-").lower()


_TARGET_OF = {**{_blind(n): f.column for f in FIELDS for n in (f.column, f.key)}, _blind(FULL_NAME): FULL_NAME}


def target_of(name: str) -> str | None:
    """The field a column map's value names (its column name or key, ignoring case, spaces, '_' and '-')."""
    return _TARGET_OF.get(_blind(name.strip()))


def split_full_name(value: str) -> dict[str, str]:
    """A whole name as firstName, middleName and lastName, by one rule:

    - "Last, First Middle..." (a comma): the last name is what comes before the first comma; after it, the
      first word is the first name and the other words are the middle name;
    - otherwise, by words: one word is the first name; two are the first and last names; with three or
      more, the first word is the first name, the last word the last name, the words between the middle name.

    Spaces are collapsed; a part with nothing in it is left out.
    """
    before, comma, after = value.partition(",")
    if comma:
        words = after.split()
        parts = {"firstName": words[0] if words else "", "middleName": " ".join(words[1:]),
                 "lastName": " ".join(before.split())}
    else:
        words = value.split()
        parts = {"firstName": words[0] if words else ""}
        if len(words) > 1:
            parts["lastName"] = words[-1]
            parts["middleName"] = " ".join(words[1:-1])
    return {key: part for key, part in parts.items() if part}
