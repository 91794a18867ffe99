"""The validator admits only chunks our uploader could have cut: anything else is dead-lettered at once."""

import pytest
from aiokafka import ConsumerRecord

from services.validator.app import STAGE, ValidatorPorts
from services.validator.chunk_shape import ChunkOutOfShape, check_chunk_shape
from shared.events import Chunk
from shared.reading import Limits
from shared.settings import Settings

from .stage_fakes import run_stage

GOOD = Chunk(job_id="job", index=0, count=1, first_row=1, lines=(2, 3), csv="firstName,email\nAnn,ann@x.com\nBob,bob@x.com\n",
             columns={"firstName": 0, "email": 1})
OUT_OF_SHAPE = {
    # 100,000 empty column names over 150 rows: 27 s of the event loop and 2.4 GB before this check
    "a header of 100,000 columns": GOOD.model_copy(update={"csv": "," * 100_000 + "\n" + "a,u@ex.co\n" * 150,
                                                          "lines": tuple(range(2, 152))}),
    "a header line longer than any within the limits": GOOD.model_copy(update={"csv": "a" * 300_000 + "\nx\n"}),
    "a column name too long": GOOD.model_copy(update={"csv": "x" * 201 + ",email\nAnn,ann@x.com\nBob,bob@x.com\n"}),
    "more rows than a chunk holds": GOOD.model_copy(update={"lines": tuple(range(2, 503))}),
    "row numbers that do not match its rows": GOOD.model_copy(update={"rows": (7,)}),
    "a column past the end of the header": GOOD.model_copy(update={"columns": {"firstName": 0, "email": 9}}),
    "a header that is not CSV": GOOD.model_copy(update={"csv": '"' + "a" * 140_000 + '"\n'}),
    # within every bound alone, but 500 rows of 498 names of 200 characters: 51 MB of records from 107 KB
    "more rows of a wide header than fit in a record": GOOD.model_copy(update={
        "csv": ",".join(["firstName", "email", *(f"{i:03}" + "n" * 197 for i in range(498))]) + "\n"
               + "Ann,ann@x.com\n" * 500,
        "lines": tuple(range(2, 502))}),
}


def test_a_chunk_our_uploader_cuts_is_admitted():
    check_chunk_shape(GOOD, Limits(), 500, 1 << 20)


@pytest.mark.parametrize("chunk", OUT_OF_SHAPE.values(), ids=OUT_OF_SHAPE.keys())
def test_a_chunk_out_of_shape_is_refused_saying_which_bound(chunk: Chunk):
    with pytest.raises(ChunkOutOfShape):
        check_chunk_shape(chunk, Limits(), 500, 1 << 20)


def test_the_bounds_are_the_deployments_settings():
    narrow = Settings(_env_file=None, max_columns=2, chunk_rows=1)
    ports = ValidatorPorts.open(narrow)
    with pytest.raises(ChunkOutOfShape, match="2 rows; a chunk holds at most 1"):
        ports.admit(GOOD)


async def test_the_validator_dead_letters_it_at_once_and_validates_the_rest():
    values = [GOOD.model_dump_json().encode(), OUT_OF_SHAPE["a header of 100,000 columns"].model_dump_json().encode()]
    records = [ConsumerRecord("clients.import.chunks", 0, i, 0, 0, b"job", v, None, 3, len(v), []) for i, v in enumerate(values)]

    published, dead, runner = await run_stage(STAGE, ValidatorPorts.open(Settings(_env_file=None)), records)

    assert [letter.record.offset for letter in dead] == [1]
    assert "ChunkOutOfShape: a header of 100001 columns; at most 500" in dead[0].reason
    assert runner.tally.processed == 1 and runner.tally.retries == 0
    assert sum(len(p.event.rows) for p in published if hasattr(p.event, "rows")) == 2
