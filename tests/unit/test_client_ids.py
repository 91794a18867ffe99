"""The ids the writer gives new clients (services/writer/upsert.py `new_ids`): random version 4 UUIDs."""

import uuid

from services.writer.upsert import new_ids


def test_each_new_client_id_is_a_random_version_4_uuid_in_its_usual_text_form():
    ids = list(new_ids(5000))
    assert len(ids) == len(set(ids)) == 5000
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_every_bit_but_the_version_and_variant_is_random():
    # Over many ids each of the 122 random bits is seen both set and clear; the 6 fixed ones never vary.
    values = [uuid.UUID(text).int for text in new_ids(2000)]
    varying = 0
    for bit in range(128):
        ones = sum(v >> bit & 1 for v in values)
        varying += 0 < ones < len(values)
    assert varying == 122


def test_asking_for_no_ids_gives_none():
    assert list(new_ids(0)) == []
