"""`clients-import`: run imports, start a local broker, serve the services."""

import argparse
import asyncio
import base64
import contextlib
import secrets
import signal
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

from pydantic import SecretStr

from shared import jobs, logs
from shared.events import ImportNotification, ImportOptions, ImportRequest, JobStatus, Mode, Source
from shared.reading import Limits, size_refusal
from shared.settings import MIN_TOKEN_CHARS, Settings, get_settings

from .client import ImportClient
from .collector import tune_after_start
from .dlq import printable
from .local_kafka import LocalKafka, ScramUser
from .operator import progress_display, show_jobs, watch, write_report
from .pipeline import Pipeline
from .topology import SERVICES, STAGE_NAMES
from .undo_command import add_undo_command

IMPORTED = {JobStatus.COMPLETED, JobStatus.COMPLETED_WITH_ERRORS, JobStatus.VALIDATED}
REFUSED = 3  # exit code: Kafka could not be reached or refused us (as `status` and `dlq` say for no answer)


def main(argv: list[str] | None = None) -> int:
    from pydantic import ValidationError

    args = parser().parse_args(argv)
    try:
        settings = get_settings()
    except ValidationError as error:  # one line per setting, never the values (a password may be one)
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])).upper() or 'settings'}: {e['msg']}" for e in error.errors())
        print(f"clients-import: the settings are not usable: {problems}", file=sys.stderr)
        return 2
    logs.configure(args.log_level or settings.log_level)
    try:
        return args.command(args, settings)
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        from shared.kafka import BrokerAccessError

        if not isinstance(error, BrokerAccessError):
            raise
        print(f"clients-import {_command_name(args)}: {error}", file=sys.stderr)  # never a password: see explain()
        return REFUSED


def _command_name(args: argparse.Namespace) -> str:
    return args.command.__name__.removeprefix("cmd_").replace("_", " ")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="clients-import", description="Bulk client import for the CRM, on Kafka.")
    top.add_argument("--log-level", help="DEBUG, INFO, WARNING (default from LOG_LEVEL, else INFO)")
    commands = top.add_subparsers(required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="import CSV files through the whole pipeline and print each notification")
    run.add_argument("files", nargs="+", type=Path, metavar="FILE")
    run.add_argument("--json", action="store_true", help="one JSON notification per line")
    run.add_argument("--mode", choices=[m.value for m in Mode], default=Mode.UPSERT.value)
    run.add_argument("--dry-run", action="store_true", help="validate and report, write nothing")
    run.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for each notification")
    run.add_argument("--map", action="append", default=[], metavar="COLUMN=FIELD", dest="column_map",
                     help="read the file's COLUMN as FIELD (firstName, email, ...); COLUMN= ignores it; repeatable")
    run.add_argument("--mapping", metavar="NAME", help="use the saved mapping NAME (PUT /mappings/NAME); --map overrides it")
    run.set_defaults(command=cmd_run)
    add_undo_command(commands)

    retry = commands.add_parser("retry", help="import corrected rows of an import again (only its rejected rows) and "
                                              "print the notification")
    retry.add_argument("job", metavar="JOB", help="the import's job id")
    retry.add_argument("file", type=Path, metavar="FILE",
                       help='the corrected rows: a CSV with a "row" column (the edited errors.csv), or a .json file '
                            '{"rows": [{"row": 7, "values": {...}}]}')
    retry.add_argument("--json", action="store_true", help="the notification as JSON")
    retry.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the notification")
    retry.set_defaults(command=cmd_retry)

    broker = commands.add_parser("broker", help="start a local Kafka broker in the foreground")
    broker.add_argument("--sasl", action="store_true",
                        help="take only SCRAM-SHA-256/512 logins (SASL_PLAINTEXT), as KAFKA_SASL_USERNAME and "
                             "KAFKA_SASL_PASSWORD say, else as a user and password it makes and prints")
    broker.set_defaults(command=cmd_broker)

    jobs = commands.add_parser("jobs", help="list recent imports from the database")
    jobs.add_argument("--limit", type=int, default=20)
    jobs.add_argument("--json", action="store_true")
    jobs.set_defaults(command=cmd_jobs)

    watch = commands.add_parser("watch", help="follow one import, or all of them, live from the topics")
    watch.add_argument("job", nargs="?", help="a job id; every job when left out")
    watch.set_defaults(command=cmd_watch)

    for kind, text in (("errors", "write a job's errors.csv: the rejected rows, to fix and upload again"),
                       ("results", "write a job's results.csv: each accepted row with its client id and outcome"),
                       ("conflicts", "write an undo's conflicts.csv: the clients changed since, kept as they are")):
        report = commands.add_parser(kind, help=text)
        report.add_argument("job")
        report.add_argument("-o", "--output", type=Path, help=f"where to write it (default: <file>-{kind}.csv)")
        report.set_defaults(command=cmd_report, kind=kind)

    contract = commands.add_parser("contract", help="print the AsyncAPI document of the topics and events")
    contract.set_defaults(command=cmd_contract)

    status = commands.add_parser("status", help="consumer groups (members, lag), dead letters, the oldest unfinished job; "
                                                "exit 1 when unhealthy")
    status.add_argument("--json", action="store_true", help="one JSON document")
    status.add_argument("--newest", type=int, default=20, metavar="N", help="dead letters to show, newest first (default 20)")
    status.add_argument("--timeout", type=float, default=10.0, metavar="S", help="seconds for each Kafka or database call")
    status.set_defaults(command=cmd_status)

    dlq = commands.add_parser("dlq", help="dead letters on clients.import.dlq: list, show, redrive")
    dlq_actions = dlq.add_subparsers(required=True, metavar="ACTION")
    listing = dlq_actions.add_parser("list", help="the newest dead letters, newest first, with their reasons")
    show = dlq_actions.add_parser("show", help="one dead letter: its headers and its value")
    show.add_argument("coordinates", metavar="PARTITION:OFFSET",
                      help="the letter's own place on clients.import.dlq (also clients.import.dlq:P:O); or TOPIC:P:O, "
                           "the original record's place, for its newest dead letter")
    show.add_argument("--max-chars", type=int, default=8000, metavar="N", help="show at most N characters of the value")
    show.add_argument("--scan", type=int, default=10_000, metavar="N", help="with TOPIC:P:O, how far back to look (per partition)")
    show.add_argument("--timeout", type=float, default=10.0, metavar="S", help="seconds for each Kafka call")
    show.add_argument("--json", action="store_true", help="one JSON document (the value as text, or base64 when not UTF-8)")
    show.set_defaults(command=cmd_dlq_show)
    redrive = dlq_actions.add_parser("redrive", help="send dead letters back, unchanged, to the topic they came from "
                                                     "(oldest first; each once unless --again)")
    for action in (listing, redrive):
        action.add_argument("--stage", choices=STAGE_NAMES, help="only those this stage gave up on")
        action.add_argument("--reason", metavar="TEXT", help="only those whose reason contains TEXT (any case)")
        action.add_argument("--key", metavar="KEY", help="only those whose record has this key (a job id, for most topics)")
        action.add_argument("--since", metavar="TIME", help="only those since TIME: a duration (2h, 30m, 1d) or an ISO "
                                                            "date-time (UTC unless it says)")
        action.add_argument("--scan", type=int, default=10_000, metavar="N",
                            help="read at most the newest N records of each DLQ partition (default 10000)")
        action.add_argument("--timeout", type=float, default=10.0, metavar="S", help="seconds for each Kafka or database call")
        action.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.add_argument("--limit", type=int, default=50, metavar="N", help="at most N letters (default 50)")
    listing.set_defaults(command=cmd_dlq_list)
    redrive.add_argument("--limit", type=int, default=1000, metavar="N", help="send at most N letters (default 1000)")
    redrive.add_argument("--dry-run", action="store_true", help="say what would be sent, send nothing")
    redrive.add_argument("--rate", default="20/s", metavar="N/s", help="at most N records a second (default 20/s)")
    redrive.add_argument("--again", action="store_true", help="also send letters redriven before")
    redrive.set_defaults(command=cmd_dlq_redrive)

    serve = commands.add_parser("serve", help="run services against KAFKA_BOOTSTRAP_SERVERS until stopped")
    serve.add_argument("services", nargs="*", metavar="SERVICE", help=f"any of {', '.join(SERVICES)} (default: all five)")
    serve.add_argument("--no-api", action="store_true", help="leave out the HTTP API and the page (the four stages only)")
    serve.set_defaults(command=cmd_serve)
    return top


@contextlib.contextmanager
def broker_for(settings: Settings) -> Iterator[Settings]:
    """The configured broker, or a local one for as long as the command runs."""
    if settings.kafka_bootstrap_servers:
        yield settings
        return
    with local_broker(settings) as kafka:
        yield settings.model_copy(update={"kafka_bootstrap_servers": kafka.bootstrap})


def local_broker(settings: Settings) -> LocalKafka:
    """A local broker that takes the logins the settings make: none (PLAINTEXT) or SCRAM (SASL_PLAINTEXT)."""
    if settings.kafka_security_protocol == "PLAINTEXT":
        return LocalKafka(max_message_bytes=settings.request_max_bytes)
    if settings.kafka_security_protocol == "SASL_PLAINTEXT" and settings.kafka_sasl_mechanism.startswith("SCRAM-"):
        user = ScramUser(settings.kafka_sasl_username, settings.kafka_sasl_password.get_secret_value())
        return LocalKafka(max_message_bytes=settings.request_max_bytes, scram=user)
    asked = settings.kafka_security_protocol + (f" with {settings.kafka_sasl_mechanism}"
                                                 if settings.kafka_security_protocol.startswith("SASL_") else "")
    raise SystemExit(f"clients-import: the local broker speaks PLAINTEXT, or SASL_PLAINTEXT with SCRAM logins, not "
                     f"{asked}: set KAFKA_BOOTSTRAP_SERVERS to the cluster these settings are for")


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    missing = [str(f) for f in args.files if not f.is_file()]
    if missing:
        print(f"clients-import: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        options = ImportOptions(mode=Mode(args.mode), dry_run=args.dry_run, column_map=column_map(args.column_map),
                                mapping=args.mapping)
    except ValueError as error:  # a ValidationError: a map or name past its bounds
        print(f"clients-import: {printable(first_problem(error))}", file=sys.stderr)
        return 2
    if refused := _too_large(args.files, settings):
        print(f"clients-import run: {refused}", file=sys.stderr)
        return 2
    if settings.signing_key is None:  # the pipeline runs in this process: a key of its own will do
        settings = settings.model_copy(update={"job_signing_secret": secrets.token_hex(32)})
    requests = [request_for(path, options, settings.signing_key) for path in args.files]
    if settings.kafka_bootstrap_servers and asyncio.run(_served_there(settings)):
        print(f"clients-import run: the services already run on {settings.kafka_bootstrap_servers} (`serve`): send the "
              "file through the HTTP API (POST /imports) or the requests topic there. `run` runs the stages itself, "
              "for one machine: unset KAFKA_BOOTSTRAP_SERVERS and it starts a broker of its own.", file=sys.stderr)
        return 2
    with broker_for(settings) as settings:
        try:
            notes = asyncio.run(_run(settings, requests, args.timeout, show_progress=not args.json))
        except TimeoutError:
            print(f"clients-import run: no notification within {args.timeout:g} s (--timeout)", file=sys.stderr)
            return 1
    for note in notes:
        print(note.model_dump_json() if args.json else summary(note))
    return 0 if all(note.status in IMPORTED for note in notes) else 1


def cmd_retry(args: argparse.Namespace, settings: Settings) -> int:
    """As `run` does, for a retry: its rows keep the import's row numbers (shared/retries.py)."""
    from .retrying import RetryRefused, retry_request

    if not args.file.is_file():
        print(f"clients-import: no such file: {args.file}", file=sys.stderr)
        return 2
    if refused := _too_large([args.file], settings):
        print(f"clients-import retry: {refused}", file=sys.stderr)
        return 2
    if settings.signing_key is None:
        settings = settings.model_copy(update={"job_signing_secret": secrets.token_hex(32)})
    try:
        request = asyncio.run(retry_request(settings, args.job, args.file))
    except RetryRefused as refused:
        print(f"clients-import retry: {printable(str(refused))}", file=sys.stderr)
        return 2
    if settings.kafka_bootstrap_servers and asyncio.run(_served_there(settings)):
        print(f"clients-import retry: the services already run on {settings.kafka_bootstrap_servers} (`serve`): send "
              f"the rows through the HTTP API there (POST /imports/{args.job}/retry).", file=sys.stderr)
        return 2
    with broker_for(settings) as settings:
        try:
            (note,) = asyncio.run(_run(settings, [request], args.timeout, show_progress=not args.json))
        except TimeoutError:
            print(f"clients-import retry: no notification within {args.timeout:g} s (--timeout)", file=sys.stderr)
            return 1
    print(note.model_dump_json() if args.json else summary(note))
    return 0 if note.status in IMPORTED else 1


def _too_large(files: list[Path], settings: Settings) -> str | None:
    """The first file past MAX_BYTES, said as the pipeline would say it: such a file cannot even be sent."""
    for path in files:
        if issue := size_refusal(path.stat().st_size, Limits.of(settings)):
            return f"{printable(str(path))}: {issue.message} [{issue.code}]"
    return None


async def _served_there(settings: Settings) -> bool:
    """Whether the stages already run on this broker (`serve`): its uploader group has members. `run`
    must not join their groups with stages of its own, signing job ids with a key they do not know."""
    from aiokafka.admin import AIOKafkaAdminClient

    from shared.kafka import client_options, start_client

    admin = await start_client(AIOKafkaAdminClient(**client_options(settings)), settings)
    try:
        described = await admin.describe_consumer_groups([settings.group("uploader")])
    finally:
        await admin.close()
    return any(group["members"] for answer in described for group in answer.to_object()["groups"])


def column_map(entries: list[str]) -> dict[str, str | None] | None:
    """--map COLUMN=FIELD, each one: split at the last '=' (a field name has none); an empty FIELD ignores COLUMN."""
    if not entries:
        return None
    found: dict[str, str | None] = {}
    for entry in entries:
        column, equals, field_name = entry.rpartition("=")
        if not equals or not column:
            raise ValueError(f"--map takes COLUMN=FIELD (like --map \"Mail=email\"), not “{entry[:80]}”")
        if column in found:
            raise ValueError(f"--map names the column “{column[:80]}” twice")
        found[column] = field_name.strip() or None
    return found


def first_problem(error: ValueError) -> str:
    errors = getattr(error, "errors", None)
    if callable(errors):
        first = errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return f"{where.replace('column_map', '--map').replace('mapping', '--mapping')}: {first['msg']}"
    return str(error)


def request_for(path: Path, options: ImportOptions, signing_key: str) -> ImportRequest:
    job_id = str(uuid.uuid4())
    return ImportRequest(
        job_id=job_id,
        job_signature=jobs.sign(signing_key, job_id),
        requested_by="cli",
        source=Source.CLI,
        file_name=path.name,
        content_base64=base64.b64encode(path.read_bytes()).decode(),
        options=options,
    )


async def _run(
    settings: Settings, requests: list[ImportRequest], timeout: float, show_progress: bool = False
) -> list[ImportNotification]:
    display, on_progress = progress_display(requests, show_progress)
    async with Pipeline(settings), ImportClient(settings) as client:
        tune_after_start()
        for request in requests:
            await client.submit(request)
        with display:
            found = await client.wait([r.job_id for r in requests], timeout, on_progress=on_progress)
    return [found[r.job_id] for r in requests]


def summary(note: ImportNotification) -> str:
    """Plain text for a terminal: the file's name and the values quoted in messages are anyone's text, so
    control characters (an escape sequence, a bidi override) are shown as escapes, never sent to the terminal."""
    mark = {JobStatus.COMPLETED: "✔", JobStatus.VALIDATED: "✔", JobStatus.COMPLETED_WITH_ERRORS: "!"}.get(note.status, "✘")
    lines = [f"{mark} {note.message}  [{note.status.value}, job {note.job_id}]"]
    if note.retry_of:
        lines.append(f"    a retry of job {note.retry_of}: row numbers are that import's")
    if note.mapping and (note.mapping.version or note.mapping.columns):  # a mapping named but not found says so above
        used = f"mapping {note.mapping.name} (version {note.mapping.version})" if note.mapping.version else "column map"
        read = ", ".join(f"{field} from “{column}”" for field, column in note.mapping.fields.items())
        lines.append(f"    {used}: {read or 'nothing read'}")
    lines += [f"    warning: {w.message}" for w in note.warnings]
    lines += [f"    row {e.row} (line {e.line}){' ' + e.field if e.field else ''}: {e.message}" for e in note.errors]
    return "\n".join(printable(line) for line in lines)


def cmd_jobs(args: argparse.Namespace, settings: Settings) -> int:
    asyncio.run(show_jobs(settings, args.limit, args.json))
    return 0


def cmd_watch(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.kafka_bootstrap_servers:
        print("clients-import watch: set KAFKA_BOOTSTRAP_SERVERS", file=sys.stderr)
        return 2
    try:
        asyncio.run(watch(settings, args.job))
    except LookupError as error:
        print(f"clients-import watch: {error}", file=sys.stderr)
        return 2
    return 0


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    try:
        path = asyncio.run(write_report(settings, args.job, args.kind, args.output))
    except LookupError as error:
        print(f"clients-import {args.kind}: {error}", file=sys.stderr)
        return 2
    print(path)
    return 0


def cmd_contract(args: argparse.Namespace, settings: Settings) -> int:
    from .contract import asyncapi_document

    sys.stdout.write(asyncapi_document())
    return 0


def cmd_broker(args: argparse.Namespace, settings: Settings) -> int:
    made = None
    if args.sasl and settings.kafka_security_protocol == "PLAINTEXT":  # no credentials given: make some
        made = secrets.token_urlsafe(24)
        settings = settings.model_copy(update={
            "kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_mechanism": "SCRAM-SHA-512",
            "kafka_sasl_username": "clients-import", "kafka_sasl_password": SecretStr(made)})
    stopping = _stop_on_signals()
    with local_broker(settings) as kafka:
        print(kafka.bootstrap, flush=True)
        if kafka.scram:  # what the services and commands need to log in
            print(f"KAFKA_BOOTSTRAP_SERVERS={kafka.bootstrap}\nKAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT\n"
                  f"KAFKA_SASL_MECHANISM={settings.kafka_sasl_mechanism}\nKAFKA_SASL_USERNAME={kafka.scram.name}\n"
                  f"KAFKA_SASL_PASSWORD={made or '(yours, as given)'}", flush=True)
        while not stopping:
            signal.pause()
    return 0


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    services = tuple(args.services) or (STAGE_NAMES if args.no_api else SERVICES)
    unknown = sorted(set(services) - set(SERVICES))
    if unknown:
        print(f"clients-import serve: unknown service {', '.join(unknown)}; choose from {', '.join(SERVICES)}", file=sys.stderr)
        return 2
    if args.no_api:
        services = tuple(s for s in services if s != "api")
    if not settings.kafka_bootstrap_servers:
        print("clients-import serve: set KAFKA_BOOTSTRAP_SERVERS (or start one with `clients-import broker`)", file=sys.stderr)
        return 2
    if "api" in services and not settings.api_token and not settings.api_dev_mode:
        print("clients-import serve: set API_TOKEN (the HTTP API refuses to start without one), "
              "or API_DEV_MODE=true for development, or leave out the api (--no-api)", file=sys.stderr)
        return 2
    if "api" in services and settings.api_token and len(settings.api_token) < MIN_TOKEN_CHARS and not settings.api_dev_mode:
        print(f"clients-import serve: API_TOKEN is shorter than {MIN_TOKEN_CHARS} characters: make a long random one "
              "(openssl rand -base64 32)", file=sys.stderr)
        return 2
    if {"api", "uploader"} & set(services) and settings.signing_key is None:
        print("clients-import serve: set JOB_SIGNING_SECRET (or API_TOKEN), the same for the api and the uploader: "
              "the uploader honours only the job ids the api signs with it", file=sys.stderr)
        return 2
    from shared.kafka import check_instance_name, claim_instance_name

    # Static group membership: a process started again under the same name resumes its partitions at once.
    if settings.instance_name:
        try:
            check_instance_name(settings.instance_name)
        except ValueError as error:
            print(f"clients-import serve: {error}", file=sys.stderr)
            return 2
    elif settings.instance_name is None and set(services) - {"api"}:  # unset: the host's name, numbered per process
        settings = settings.model_copy(update={"instance_name": claim_instance_name(settings, set(services) - {"api"})})
    # INSTANCE_NAME set empty: dynamic members, as before static membership.
    asyncio.run(_serve(settings, services))
    return 0


async def _serve(settings: Settings, services: tuple[str, ...]) -> None:
    if "api" in services:
        await _serve_with_api(settings, services)
        return
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    from shared.kafka import leave_groups, static_memberships

    # Stopping: the batch in hand finishes and is committed, then the consumers stop; static members
    # then leave their groups, so the others take their partitions now rather than at the session timeout.
    async with (pipeline := Pipeline(settings, services)):
        tune_after_start()
        named = f" as {settings.instance_name}" if settings.instance_name else ""
        print(f"serving {', '.join(services)} on {settings.kafka_bootstrap_servers}{named}", flush=True)
        await stop.wait()
        members = static_memberships(pipeline.broker)
    await leave_groups(settings, members)


async def _serve_with_api(settings: Settings, services: tuple[str, ...]) -> None:
    """The uploader brings the HTTP API and the Clients page; uvicorn handles SIGINT and SIGTERM."""
    import uvicorn
    from faststream.kafka.fastapi import KafkaRouter

    from services.api.app import build_api
    from services.api.limits import server_config
    from shared.kafka import BrokerAccessError, broker_options, leave_groups, static_memberships

    pipeline = Pipeline(settings, services)
    refused: list[BrokerAccessError] = []  # uvicorn logs a failed start and returns: the command must still fail

    @contextlib.asynccontextmanager
    async def lifespan(app):  # the pipeline's, then its static members leave their groups (see _serve)
        members = []
        try:
            async with pipeline.lifespan(app):
                tune_after_start()
                yield
                members = static_memberships(pipeline.broker)
        except BrokerAccessError as error:
            refused.append(error)
            raise
        await leave_groups(settings, members)

    # The router's broker publishes the API's requests; the stages (if any here) consume on the pipeline's own,
    # which also makes the tables and topics the API needs when it runs alone.
    router = KafkaRouter(**broker_options(settings), lifespan=lifespan, schema_url=None, include_in_schema=False)
    app = build_api(settings, pipeline.engine, router)
    config = server_config(app, settings)  # with the head's size and time bounds (services/api/limits.py)
    print(f"serving {', '.join(services)} on {settings.kafka_bootstrap_servers}; "
          f"API and Clients page on http://{settings.api_host}:{settings.api_port}/", flush=True)
    await uvicorn.Server(config).serve()
    if refused:
        raise refused[0]


def _stop_on_signals() -> list:
    """A list that becomes truthy on SIGTERM or SIGINT; installed before anything starts."""
    stopping: list = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.append(True))
    return stopping


def _operator_usage(name: str, args: argparse.Namespace, settings: Settings) -> str | None:
    """What is wrong with a `status` or `dlq` command line, in one line; None when it can run."""
    if not settings.kafka_bootstrap_servers:
        return f"clients-import {name}: set KAFKA_BOOTSTRAP_SERVERS to the broker the services use"
    for option in ("limit", "scan", "newest", "max_chars", "timeout"):
        value = getattr(args, option, None)
        if value is not None and (value <= 0 if option != "newest" else value < 0):
            return f"clients-import {name}: --{option.replace('_', '-')} must be {'positive' if option != 'newest' else '0 or more'}"
    return None


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from .status import show_status

    if problem := _operator_usage("status", args, settings):
        print(problem, file=sys.stderr)
        return 2
    return asyncio.run(show_status(settings, args.json, args.newest, args.timeout))


def _dlq_filters(name: str, args: argparse.Namespace, settings: Settings):
    from .dlq import Filters, parse_since

    if problem := _operator_usage(name, args, settings):
        print(problem, file=sys.stderr)
        return None
    try:
        return Filters(stage=args.stage, reason=args.reason, since=parse_since(args.since) if args.since else None, key=args.key)
    except ValueError as error:
        print(f"clients-import {name}: {error}", file=sys.stderr)
        return None


def cmd_dlq_list(args: argparse.Namespace, settings: Settings) -> int:
    from .dlq import run_list

    if (filters := _dlq_filters("dlq list", args, settings)) is None:
        return 2
    return asyncio.run(run_list(settings, filters, args.limit, args.scan, args.timeout, args.json))


def cmd_dlq_show(args: argparse.Namespace, settings: Settings) -> int:
    from .dlq import parse_coordinates, run_show

    if problem := _operator_usage("dlq show", args, settings):
        print(problem, file=sys.stderr)
        return 2
    try:
        coordinates = parse_coordinates(args.coordinates)
    except ValueError as error:
        print(f"clients-import dlq show: {error}", file=sys.stderr)
        return 2
    return asyncio.run(run_show(settings, coordinates, args.max_chars, args.scan, args.timeout, args.json))


def cmd_dlq_redrive(args: argparse.Namespace, settings: Settings) -> int:
    from .dlq import parse_rate, run_redrive

    if (filters := _dlq_filters("dlq redrive", args, settings)) is None:
        return 2
    try:
        rate = parse_rate(args.rate)
    except ValueError as error:
        print(f"clients-import dlq redrive: {error}", file=sys.stderr)
        return 2
    return asyncio.run(run_redrive(settings, filters, args.limit, dry_run=args.dry_run, rate=rate, again=args.again,
                                   scan=args.scan, timeout=args.timeout, as_json=args.json))


if __name__ == "__main__":
    sys.exit(main())
