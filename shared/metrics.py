"""The metrics every service process exposes, in the Prometheus text format: defined once, here.

Each process has one registry (`REGISTRY`); `serve` with several services in one process serves
them all from one port, labelled by stage. The server itself (with /healthz and /readyz) is started
by the runner (`clients_import.pipeline`) when METRICS_PORT is set.
"""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["REGISTRY", "ROWS", "JOBS", "REQUEST_TO_NOTIFICATION", "DEAD_LETTERS", "BATCH_RECORDS",
           "TRANSACTION_SECONDS", "WEBHOOKS", "CONSUMER_LAG", "RECORDS"]

REGISTRY = CollectorRegistry(auto_describe=True)

ROWS = Counter("clients_import_rows", "Rows by stage and outcome (accepted, rejected, created, updated, unchanged).",
               ["stage", "outcome"], registry=REGISTRY)
RECORDS = Counter("clients_import_records", "Consumed records by stage and end (processed or dead_lettered).",
                  ["stage", "end"], registry=REGISTRY)
JOBS = Counter("clients_import_jobs", "Jobs by final status.", ["status"], registry=REGISTRY)
REQUEST_TO_NOTIFICATION = Histogram(
    "clients_import_request_to_notification_seconds", "Time from a job's request to its notification.",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800), registry=REGISTRY)
DEAD_LETTERS = Counter("clients_import_dead_letters", "Records dead-lettered, by stage.", ["stage"], registry=REGISTRY)
BATCH_RECORDS = Histogram("clients_import_batch_records", "Records per consumed batch, by stage.", ["stage"],
                          buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000), registry=REGISTRY)
TRANSACTION_SECONDS = Histogram("clients_import_db_transaction_seconds", "Database transaction time, by stage.",
                                ["stage"], registry=REGISTRY)
WEBHOOKS = Counter("clients_import_webhooks", "Webhook delivery attempts by outcome (delivered, retried, failed).",
                   ["outcome"], registry=REGISTRY)
CONSUMER_LAG = Gauge("clients_import_consumer_lag", "Records behind the end of the partition, per group.",
                     ["group", "topic", "partition"], registry=REGISTRY)
