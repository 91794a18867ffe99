"""Records the Kafka client cannot read, and headers FastStream cannot read: dead-lettered or read, never lost.

The batches are made with aiokafka's own record builder, then a header's name is made not UTF-8 and the
checksum made right again, as a raw producer (librdkafka, `kcat -H`) sends it.
"""

import struct

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.consumer import fetcher
from aiokafka.record._crc32c import crc as crc32c
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from faststream.kafka.message import KafkaMessage
from faststream.kafka.parser import AioKafkaBatchParser

import shared.kafka  # noqa: F401 - installs the tolerant reader, as every service does
from shared.kafka import parse_whatever_the_headers
from shared.unreadable import UnreadableRecord, check_readable

from .test_stage import Echo, Harness

TP = TopicPartition("t.in", 1)


def batch(base_offset: int, values: list[bytes], bad_header_at: int | None = None) -> bytes:
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0, producer_id=-1,
                                        producer_epoch=-1, base_sequence=-1, batch_size=1 << 20)
    for delta, value in enumerate(values):
        headers = [("HK", b"v")] if delta == bad_header_at else []
        builder.append(delta, timestamp=None, key=b"k", value=value, headers=headers)
    data = bytearray(builder.build())
    struct.pack_into(">q", data, 0, base_offset)
    if bad_header_at is not None:
        at = data.index(b"HK")
        data[at:at + 2] = b"\xff\xfe"
        struct.pack_into(">I", data, 17, crc32c(bytes(data[21:])))  # the checksum holds: only the name is bad
    return bytes(data)


def read(data: bytes, fetch_offset: int = 0) -> tuple[list[ConsumerRecord], int]:
    """What a consumer is handed from one fetched partition, and where it fetches next."""
    partition = fetcher.PartitionRecords(TP, MemoryRecords(data), [], fetch_offset, None, None, True, 0)
    return [partition._consumer_record(TP, r) if not isinstance(r, ConsumerRecord) else r
            for r in partition], partition.next_fetch_offset


def test_a_header_name_that_is_not_utf8_ends_its_batch_in_one_placeholder_and_the_partition_moves_on():
    good = [b'{"n": 1}', b'{"n": 2}']
    records, next_offset = read(batch(10, [*good, b'{"n": 3}', b'{"n": 4}'], bad_header_at=2))

    assert [r.offset for r in records] == [10, 11, 12]
    assert [r.value for r in records[:2]] == good
    check_readable(records[0])
    try:
        check_readable(records[2])
        raise AssertionError("the placeholder passed as a readable record")
    except UnreadableRecord as error:
        assert "offsets 12 to 13" in str(error)
    assert next_offset == 14  # past the batch: the next fetch does not meet it again


def test_a_consumer_starting_inside_the_batch_past_the_bad_record_gets_a_placeholder_from_where_it_reads():
    """An operator reset the group's offset into the batch: the records from there on are not skipped unsaid."""
    data = batch(10, [b'{"n": 1}', b'{"n": 2}', b'{"n": 3}', b'{"n": 4}', b'{"n": 5}'], bad_header_at=1)

    records, next_offset = read(data, fetch_offset=13)

    assert [r.offset for r in records] == [13] and next_offset == 15
    try:
        check_readable(records[0])
        raise AssertionError("the placeholder passed as a readable record")
    except UnreadableRecord as error:
        assert "offsets 13 to 14" in str(error)


def test_a_compressed_batch_reads_and_a_codec_this_process_lacks_stops_the_partition_skipping_nothing(monkeypatch):
    import aiokafka.record._crecords.default_records as c_reader
    from aiokafka.errors import UnsupportedCodecError

    builder = DefaultRecordBatchBuilder(magic=2, compression_type=3, is_transactional=0, producer_id=-1,  # lz4
                                        producer_epoch=-1, base_sequence=-1, batch_size=1 << 20)
    for delta in range(3):
        builder.append(delta, timestamp=None, key=b"k", value=b'{"n": %d}' % delta, headers=[])
    data = bytes(builder.build())
    assert [r.offset for r in read(data)[0]] == [0, 1, 2]  # the codecs are installed (aiokafka's extras)

    def missing(_data):
        raise UnsupportedCodecError("Libraries for lz4 compression codec not found")

    monkeypatch.setattr(c_reader, "lz4_decode", missing)
    with pytest.raises(UnsupportedCodecError):  # as aiokafka does: once the codec is installed, nothing was lost
        read(data)


def test_a_placeholders_dead_letter_says_it_holds_nothing_and_redrive_skips_it():
    from clients_import.dlq import Letter, _skip_reason
    from shared.kafka import DeadLetter, dead_letter_record

    records, _ = read(batch(0, [b'{"n": 1}', b'{"n": 2}'], bad_header_at=0))
    value, _key, headers = dead_letter_record(DeadLetter(records[0], "uploader", "unreadable"), 1 << 20)

    assert (value, headers["dlq.unreadable"]) == (b"", "true")
    letter = Letter(0, 0, 0, None, headers, len(value), value)
    assert "could not read" in _skip_reason(letter)


def test_a_batch_every_record_of_which_reads_is_handed_on_whole():
    records, next_offset = read(batch(0, [b'{"n": 1}', b'{"n": 2}']))
    assert [r.offset for r in records] == [0, 1] and next_offset == 2
    for record in records:
        check_readable(record)


def test_no_producer_can_forge_a_placeholder():
    forged = ConsumerRecord("t.in", 1, 0, 0, 0, None, b"", None, 0, 0, [("clients-import.unreadable", b"yes")])
    check_readable(forged)  # an empty value is an empty value: the stage decides what it is


async def test_the_stage_dead_letters_the_placeholder_and_processes_the_rest():
    async def handle(events, _ports):
        from shared.kafka import Publication
        return [Publication("t.out", e) for e in events]

    harness = Harness(handle)
    records, _ = read(batch(0, [b'{"n": 1}', b'{"n": 2}', b'{"n": 3}'], bad_header_at=1))

    await harness.runner.run(records)

    assert harness.numbers() == [1]
    assert [(d.record.offset, d.reason.split(":")[0]) for d in harness.dead] == [(1, "shared.unreadable.UnreadableRecord")]
    assert "offsets 1 to 2" in harness.dead[0].reason


def consumed(offset: int, headers) -> ConsumerRecord:
    value = Echo(n=offset).model_dump_json().encode()
    return ConsumerRecord("t.in", 0, offset, 0, 0, None, value, None, -1, len(value), headers)


async def test_a_header_value_that_is_null_or_not_utf8_does_not_lose_the_batch():
    parser = AioKafkaBatchParser(KafkaMessage, None)
    batch_ = (consumed(1, []), consumed(2, [("trace", None)]), consumed(3, [("trace", b"\xff\xfe")]))

    message = await parse_whatever_the_headers(batch_, parser.parse_batch)

    assert message.raw_message is batch_  # the records as consumed: what a dead letter carries
    assert [Echo.model_validate_json(body).n for body in message.body] == [1, 2, 3]
    assert message.batch_headers[1:] == [{"trace": ""}, {"trace": "\ufffd\ufffd"}]
