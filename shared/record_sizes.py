"""What a row costs in the records the validator makes of a chunk: known to the uploader, which cuts
chunks so that they fit (services/uploader/chunking.py), and to the validator, which refuses a chunk
that could not have been cut so (services/validator/chunk_shape.py). One recipe for both.

Each row record (RowsAccepted, RowsRejected) carries every row's original values under every header
name (shared/rules.py `original_values`), so a wide header repeats in every row.
"""

import json
import re

__all__ = ["ROW_ALLOWANCE", "json_size", "original_keys_size"]

# Per row, beyond its values: its row and line numbers, the keys of its records, and its error messages
# (a handful of a few hundred bytes each in the usual case).
ROW_ALLOWANCE = 2 * 1024


def json_size(text: str) -> int:
    """Bytes of `text` as the body of a JSON string, escaped the way pydantic writes it: control characters as
    \\u0001 (6 bytes), quotes, backslashes, BS, FF, CR, LF, tab as two, anything else as its UTF-8."""
    size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    if _ESCAPED.search(text) is None:  # the usual value (it runs three times a row): counted in C
        return size
    return size + sum(_ESCAPE_EXTRA[c] for c in _ESCAPED.findall(text))


_ESCAPED = re.compile(r'[\x00-\x1f"\\]')  # what JSON escapes: control characters, the quote, the backslash
# What each escaped character adds to its own byte (1 for \n, 5 for \u0001), asked of the escaping itself.
_ESCAPE_EXTRA = {c: len(json.dumps(c)) - 3 for c in map(chr, [*range(32), ord('"'), ord("\\")])}


def original_keys_size(header: list[str] | tuple[str, ...]) -> int:
    """The header names as the keys of one row's `original`, with their quotes, colon and comma: the
    validator names an unnamed column "column N", and `"name":"value",` is 6 bytes besides the two."""
    return sum(max(json_size(name), len(f"column {i + 1}")) + 6 for i, name in enumerate(header))
