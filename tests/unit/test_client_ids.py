"""The ids the writer gives new clients (services/writer/upsert.py `new_ids`): time-ordered version 7 UUIDs."""

import time
import uuid

from services.writer.upsert import new_ids


def test_each_new_client_id_is_a_version_7_uuid_in_its_usual_text_form():
    ids = list(new_ids(5000))
    assert len(ids) == len(set(ids)) == 5000
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122


def test_an_id_starts_with_the_millisecond_it_was_made():
    before = time.time_ns() // 1_000_000
    ids = list(new_ids(100))
    after = time.time_ns() // 1_000_000
    assert all(before <= uuid.UUID(text).int >> 80 <= after for text in ids)


def test_ids_made_later_sort_after_earlier_ones_as_text():
    # What keeps the id index's inserts at its end: text order is time order.
    earlier = list(new_ids(200))
    time.sleep(0.002)
    later = list(new_ids(200))
    assert max(earlier) < min(later)


def test_every_bit_after_the_time_but_the_version_and_variant_is_random():
    # Over many ids each of the 74 random bits is seen both set and clear; the version and variant never vary.
    values = [uuid.UUID(text).int for text in new_ids(2000)]
    varying = sum(0 < sum(v >> bit & 1 for v in values) < len(values) for bit in range(80))
    assert varying == 74


def test_asking_for_no_ids_gives_none():
    assert list(new_ids(0)) == []
