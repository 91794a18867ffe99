"""A real stage's runner over fakes: what it published and what it dead-lettered."""

from collections.abc import Sequence

from aiokafka import ConsumerRecord

from shared.kafka import DeadLetter, Publication
from shared.stage import RetryPolicy, Stage, StageRunner


async def run_stage(stage: Stage, ports, records: Sequence[ConsumerRecord], policy: RetryPolicy = RetryPolicy()
                    ) -> tuple[list[Publication], list[DeadLetter], StageRunner]:
    published: list[Publication] = []
    dead: list[DeadLetter] = []

    async def publish(publications):
        published.extend(publications)

    async def dead_letter(letters):
        dead.extend(letters)

    async def healthy():
        return True

    runner = StageRunner(stage, ports, publish, dead_letter, healthy, policy)
    await runner.run(records)
    return published, dead, runner
