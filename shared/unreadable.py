"""Records the Kafka client cannot read, handed on as placeholders instead of stopping the partition.

aiokafka reads a header's name as UTF-8 and raises when it is not (Kafka's own Java client replaces
what it cannot read). Any producer that writes raw bytes (librdkafka, `kcat -H`) can send such a
record. The error escaped `getmany` on every fetch, so the partition never moved again, and records
already drained from the other partitions of that fetch were dropped while their positions moved
on: a later commit skipped them. The same holds for a batch whose checksum holds but whose records do
not parse. A codec this process lacks is not the record's fault: that error still stops the partition
until the codec is installed (the project installs aiokafka's lz4, snappy and zstd extras).

`install()` makes every consumer of this process read such a batch up to the record it cannot read,
then yield one placeholder at that record's offset, standing for it and the rest of its batch (the
reader cannot go past it). Those records came from one producer's batch, so no other producer's
record is lost. The stage runner dead-letters the placeholder (`check_readable`); the letter
names the partition and the offsets, which an operator reads with a tool that tolerates them (kcat).
The letter holds nothing of them (`dlq.unreadable`), so it is never redriven.
"""

from aiokafka.consumer import fetcher
from aiokafka.errors import UnsupportedCodecError

__all__ = ["UnreadableRecord", "check_readable", "is_placeholder", "install"]


class UnreadableRecord(Exception):
    """The record stands for records the Kafka client could not read (its message says which)."""


class _Unreadable(bytes):
    """A placeholder's value (empty): its type, not its content, marks it, so no producer can forge one."""

    reason: str


def is_placeholder(record) -> bool:
    return isinstance(record.value, _Unreadable)


def check_readable(record) -> None:
    """Raise `UnreadableRecord` for a placeholder; every record that was read passes."""
    if is_placeholder(record):
        raise UnreadableRecord(record.value.reason)


class _Placeholder:
    """Stands in the reader's place for the records of a batch from the first one it could not read."""

    key = None
    headers = ()
    checksum = None

    def __init__(self, batch, offset: int, error: Exception) -> None:
        self.offset, self.timestamp, self.timestamp_type = offset, batch.first_timestamp, batch.timestamp_type
        self.value = _Unreadable()
        self.value.reason = (
            f"unreadable record: offsets {offset} to {batch.next_offset - 1} of this partition could not be read "
            f"by the Kafka client ({type(error).__name__}: {str(error)[:200]}); read them with kcat"
        )


class _TolerantBatch:
    """A record batch whose records are read until one cannot be, then a placeholder for the rest."""

    def __init__(self, batch, position) -> None:
        self._batch, self._position = batch, position

    def __getattr__(self, name: str):
        return getattr(self._batch, name)

    def __next__(self):  # the fetcher reads a control batch's one record this way
        return next(self._batch)

    def __iter__(self):
        following = self._batch.base_offset
        try:
            for record in self._batch:
                following = record.offset + 1
                yield record
        except (UnsupportedCodecError, MemoryError):
            raise  # this process lacks something (a codec, memory): fixed, the same bytes read; never skip them
        except Exception as error:  # noqa: BLE001 - the batch's CRC held: the same bytes fail the same way again
            # From where this consumer reads (it may start inside the batch, past the record that fails).
            first = max(following, self._position())
            if first < self._batch.next_offset:
                yield _Placeholder(self._batch, first, error)


class _TolerantRecords:
    def __init__(self, records, position) -> None:
        self._records, self._position = records, position

    def has_next(self) -> bool:
        return self._records.has_next()

    def next_batch(self):
        batch = self._records.next_batch()
        return None if batch is None else _TolerantBatch(batch, self._position)


class _TolerantPartitionRecords(fetcher.PartitionRecords):
    def __init__(self, tp, records, *args, **kwargs) -> None:
        super().__init__(tp, _TolerantRecords(records, lambda: self.next_fetch_offset), *args, **kwargs)


def install() -> None:
    """Every consumer of this process reads through the tolerant records (idempotent)."""
    fetcher.PartitionRecords = _TolerantPartitionRecords
