"""The HTTP API and the Clients page: a service of its own, which publishes import requests on
clients.import.requests exactly as a partner does, and reads job documents, reports and clients.

Every route but /healthz and the page's static files needs the API token: as `Authorization: Bearer`
(programs) or as the session cookie the page gets by signing in with it (people).
"""

import base64
import contextlib
import hmac
import logging
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from faststream.kafka.fastapi import KafkaRouter
from pydantic import BaseModel, Field
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared import jobs, search, undo
from shared.callbacks import CallbackPolicy, CallbackRefused, check_url
from shared.db import create_reader
from shared.events import ImportOptions, ImportRequest, JobStatus, Mode, Source
from shared.fields import FIELDS, FULL_NAME, FULL_NAME_ALIASES, NAME_PARTS, REQUIRED, TARGETS
from shared.mappings import MAP_MAX_COLUMNS
from shared.settings import MIN_TOKEN_CHARS, Settings

from . import guards, readside, reports
from .errors import ApiError
from .limits import RequestLimits
from .mappings import add_mapping_routes, form_column_map, form_mapping_name
from .paths import DotSegmentGuard, JobIdGuard
from .preview import PATH as PREVIEW_PATH
from .preview import add_preview_route
from .queueing import publish_request
from .readcache import ReadCache
from .retry import RETRY_PATH, add_retry_routes
from .sessions import COOKIE as SESSION_COOKIE
from .sessions import Sessions, cookie_name
from .upload import FORM_ALLOWANCE, MAPPING_FIELDS, check_contract_text, dry_run_of, form_schema, take_upload

__all__ = ["build_api", "ApiError", "SESSION_COOKIE"]

log = logging.getLogger("clients_import.api")
STATIC = Path(__file__).parent / "static"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0, DEL and C1


_UPLOAD_BODY = form_schema(
    mode={"type": "string", "enum": [m.value for m in Mode], "default": Mode.UPSERT.value},
    dry_run={"type": "boolean", "default": False},
    callback_url={"type": "string", "format": "uri"},
    **MAPPING_FIELDS,
)


def _refusal_example(code: str) -> dict:
    return {"application/json": {"example": {"code": code, "message": "…"}}}


UNDO_RESPONSES = {
    404: {"description": "`unknown_import`: no import with that id", "content": _refusal_example("unknown_import")},
    409: {"description": "`already_undone` · `not_finished` (still running, or failed with rows still on their way) · "
                         "`nothing_to_undo` (a dry run, a file rejected whole, an undo) · `too_old` (ended more than "
                         "UNDO_RETENTION_DAYS ago) · `idempotency_key_reused` (the key named the undo of another import)",
          "content": _refusal_example("already_undone")},
}


class SignIn(BaseModel):
    token: str = Field(max_length=1000)


def build_api(settings: Settings, engine: AsyncEngine, router: KafkaRouter) -> FastAPI:
    if not settings.api_token and not settings.api_dev_mode:
        raise RuntimeError("API_TOKEN is not set: the API refuses to start without it (API_DEV_MODE=true for development)")
    if settings.api_token and len(settings.api_token) < MIN_TOKEN_CHARS and not settings.api_dev_mode:
        raise RuntimeError(f"API_TOKEN is shorter than {MIN_TOKEN_CHARS} characters: make a long random one "
                           "(openssl rand -base64 32)")
    signing_key = settings.signing_key  # never None here: API_TOKEN or development mode gives one
    # Reads on a pool of their own, on connections that cannot write: never queued behind the pipeline's writes.
    reader = create_reader(engine.url) if engine is not None else None
    answers = ReadCache()  # many readers asking the same at once cost one read
    app = FastAPI(
        lifespan=_disposing(reader),
        title="Client Import",
        version="1",
        description="Import clients from CSV files and follow each import to its notification.",
        openapi_url=None,  # served below, behind the token like every route but health
        docs_url=None,
        redoc_url=None,
    )
    # No redirect to the path without its trailing slash: Starlette builds it from the Host header, so
    # anyone could have the API send a caller elsewhere (`Host: evil.example`). A 404 says it plainly.
    app.router.redirect_slashes = False
    app.include_router(router)
    app.add_middleware(JobIdGuard)  # /imports/a%00b: 404 before any query (PostgreSQL refuses a NUL)
    app.add_middleware(DotSegmentGuard)  # added last: runs first
    sessions = Sessions(engine, settings.session_ttl_s)  # in the database: they outlive a restart
    sign_ins = guards.SignInLimiter(settings.signin_attempts, settings.signin_window_s, settings.signin_addresses)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, error: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else {}
        return JSONResponse({"code": error.code, "message": error.message}, status_code=error.status,
                            headers=headers | error.headers)

    # FastAPI's own answers (bad parameters, unknown routes) take the same {"code", "message"} shape.
    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'request'}: {e['msg']}" for e in error.errors())
        return JSONResponse({"code": "invalid_parameters", "message": problems}, status_code=422)

    @app.exception_handler(PoolTimeout)
    async def _busy(_: Request, error: PoolTimeout) -> JSONResponse:
        return JSONResponse({"code": "busy", "message": "The server is busy: try again in a moment."}, status_code=503,
                            headers={"Retry-After": "1"})

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {404: "unknown_route", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        return JSONResponse({"code": code, "message": str(error.detail)}, status_code=error.status_code)

    def token_checked(request: Request, given: str) -> bool:
        """Whether `given` is the API token. Failed checks, wherever the token is given (the sign-in form
        or a bearer header), count against the caller's address: past SIGNIN_ATTEMPTS a window, 429
        with Retry-After, whatever the token."""
        host = request.client.host if request.client else None
        address, network = guards.client_key(host), guards.client_prefix(host)
        if wait_s := sign_ins.wait_s(address, network):
            raise guards.too_many_attempts(wait_s)
        right = hmac.compare_digest(given.encode("utf-8", "surrogatepass"), settings.api_token.encode())
        if not right:
            sign_ins.failed(address, network)
        return right

    async def caller(request: Request) -> str:
        """Who is asking: 'api' (bearer token) or 'web' (a signed-in page). Anyone else gets 401."""
        if not settings.api_token:
            return "dev"
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() == "bearer":
            # A wrong bearer is refused, never rescued by the cookie: the cross-site guard lets bearer calls by.
            if token_checked(request, given.strip()):
                # Checked here, once for every route: a name with a control character is refused (422).
                return check_contract_text("requested_by", request.headers.get("x-requested-by", "api")[:200],
                                           "The X-Requested-By header", "requested_by")
            raise ApiError(401, "unauthorized", "That API token is not valid (Authorization: Bearer <token>).")
        cookie = request.cookies.get(session_cookie(request))
        if await sessions.valid(cookie):
            return "web"
        if cookie:
            raise ApiError(401, "unauthorized", "Your session has ended: sign in again.")
        raise ApiError(401, "unauthorized", "Sign in with the API token (Authorization: Bearer <token>).")

    Caller = Annotated[str, Depends(caller)]

    @app.get("/healthz", tags=["health"])
    async def health() -> dict:
        return {"status": "ok"}

    @app.post("/session", status_code=204, tags=["session"], response_model=None)
    async def sign_in(body: SignIn, request: Request, response: Response) -> Response | None:
        """Failed attempts are limited per client address (SIGNIN_ATTEMPTS per SIGNIN_WINDOW_S): past
        that, 429 with Retry-After, whatever the token."""
        if not settings.api_token or not token_checked(request, body.token):
            raise ApiError(401, "invalid_token", "That token is not valid.")
        https = is_https(request)
        response.set_cookie(cookie_name(https), await sessions.open(), max_age=int(settings.session_ttl_s), httponly=True,
                            samesite="strict", path="/", secure=https)
        return None

    @app.get("/session", tags=["session"])
    async def session(who: Caller) -> dict:
        return {"signed_in": True, "as": who}

    @app.delete("/session", status_code=204, tags=["session"])
    async def sign_out(request: Request, response: Response) -> None:
        await sessions.close(request.cookies.get(session_cookie(request)))
        https = is_https(request)
        response.delete_cookie(cookie_name(https), path="/", httponly=True, samesite="strict", secure=https)

    @app.get("/settings", tags=["imports"])
    async def import_settings(_: Caller) -> dict:
        """What the page shows and checks before an upload; it keeps no copy of any of it."""
        return import_settings_document(settings)

    @app.get("/clients-template.csv", tags=["imports"])
    async def template(_: Caller) -> Response:
        return _csv(reports.template_csv(), "clients-template.csv")

    @app.post("/imports", status_code=202, tags=["imports"], openapi_extra={"requestBody": _UPLOAD_BODY})
    async def create_import(request: Request, who: Caller) -> JSONResponse:
        """Upload a CSV (multipart field `file`; optional fields `mode`, `dry_run`, `callback_url`;
        optional header `Idempotency-Key`). The byte limit is enforced while the upload streams in."""
        key = check_contract_text("idempotency_key", request.headers["idempotency-key"], "The Idempotency-Key header",
                                  "idempotency_key") if request.headers.get("idempotency-key") else None
        upload = await take_upload(request, settings.max_bytes)
        options = _options(upload.fields, CallbackPolicy.of(settings))
        # The same Idempotency-Key from the same caller is the same job; the uploader honours the id we sign.
        job_id = jobs.idempotent_job_id("api", who, key) if key else str(uuid.uuid4())
        job = ImportRequest(
            idempotency_key=key, requested_by=who, source=Source.API, file_name=upload.file_name,
            content_base64=base64.b64encode(bytes(upload.data)).decode(), options=options,
            job_id=job_id, job_signature=jobs.sign(signing_key, job_id),
        )
        async with engine.begin() as conn:
            known = await readside.job_document(conn, job_id, 0)
            bound = await jobs.bound_digest(conn, job_id) if known is not None else None
            if known is None:
                await jobs.record_received(conn, job_id, job)
        if bound is not None and bound != jobs.content_digest(job):
            raise ApiError(409, "idempotency_key_reused", "That Idempotency-Key was used before for another file "
                           "(or other options): use a new key for a new file.")
        # Published again for a known job too: the uploader answers a repeat of an ended job with its
        # notification (and webhook) once more, and plans a running one again harmlessly.
        await publish_request(engine, router, job, recorded_now=known is None)
        log.info("upload taken", extra={"step": "job.uploaded", "job_id": job_id, "bytes": len(upload.data),
                                        "repeat": known is not None})
        status = known["status"] if known else JobStatus.RECEIVED.value
        return JSONResponse({"job_id": job_id, "status": status, "status_url": f"/imports/{job_id}"}, status_code=202)

    @app.post("/imports/{job_id}/undo", status_code=202, tags=["imports"], responses=UNDO_RESPONSES)
    async def undo_import(job_id: str, request: Request, who: Caller) -> JSONResponse:
        """Undo an import: delete the clients it created, give the clients it updated their earlier values
        back, leave what was changed since as it is (listed in the undo's conflicts.csv). The undo is a job
        of its own (kind `undo`); follow it at `status_url`. Optional header `Idempotency-Key`."""
        key = check_contract_text("idempotency_key", request.headers["idempotency-key"], "The Idempotency-Key header",
                                  "idempotency_key") if request.headers.get("idempotency-key") else None
        undo_job_id = jobs.idempotent_job_id("api-undo", who, key) if key else str(uuid.uuid4())
        async with engine.begin() as conn:
            if key and await undo.undo_of(conn, undo_job_id) not in (None, job_id):
                raise ApiError(409, "idempotency_key_reused", "That Idempotency-Key was used before for the undo of "
                               "another import: use a new key for a new undo.")
            state = await undo.undo_state(conn, job_id)
            refused = undo.refusal(state, undo_job_id, datetime.now(UTC), settings.undo_retention_days)
            if refused is not None:
                raise ApiError(undo.HTTP_STATUS[refused.code], refused.code, refused.message)
            job = ImportRequest(idempotency_key=key, requested_by=who, source=Source.API,
                                file_name=state.job["file_name"], undo_of=job_id, job_id=undo_job_id,
                                job_signature=jobs.sign(signing_key, undo_job_id))
            known = await readside.job_document(conn, undo_job_id, 0)
            if known is None:
                await jobs.record_received(conn, undo_job_id, job)
        await publish_request(engine, router, job, recorded_now=known is None)
        log.info("undo taken", extra={"step": "job.undo", "job_id": undo_job_id, "undo_of": job_id})
        status = known["status"] if known else JobStatus.RECEIVED.value
        return JSONResponse({"job_id": undo_job_id, "status": status, "status_url": f"/imports/{undo_job_id}"},
                            status_code=202)

    @app.get("/imports", tags=["imports"])
    async def list_imports(
        _: Caller, limit: int = Query(20, ge=1, le=200), offset: int = Query(0, ge=0, le=readside.MAX_OFFSET)
    ) -> Response:
        """The newest jobs first, each a summary: at most a few warnings (`warnings_more` counts the rest)."""
        async def read() -> dict:
            async with reader.connect() as conn:
                items, total = await readside.list_jobs(conn, limit, offset)
            return {"items": items, "total": total}

        return _json(await answers.answer(("imports", limit, offset), read))

    async def _job(job_id: str) -> dict:
        async with reader.connect() as conn:
            document = await readside.job_document(conn, job_id, settings.first_errors)
        if document is None:
            raise ApiError(404, "unknown_import", "There is no import with that id.")
        return document

    @app.get("/imports/{job_id}", tags=["imports"])
    async def get_import(job_id: str, _: Caller) -> Response:
        return _json(await answers.answer(("import", job_id), lambda: _job(job_id)))

    async def _report(job_id: str, kind: str) -> Response:
        async with reader.connect() as conn:
            found = await readside.report(conn, job_id, kind)
        if found is None:
            raise ApiError(404, "unknown_import", "There is no import with that id.")
        return _csv(found[1], found[0], suffix=f"-{kind}.csv")

    @app.get("/imports/{job_id}/errors.csv", tags=["imports"])
    async def errors_report(job_id: str, _: Caller) -> Response:
        """The rejected rows as uploaded, with row, line and errors: fix them and upload again."""
        return await _report(job_id, "errors")

    @app.get("/imports/{job_id}/results.csv", tags=["imports"])
    async def results_report(job_id: str, _: Caller) -> Response:
        """Each accepted row with its client id and outcome."""
        return await _report(job_id, "results")

    @app.get("/imports/{job_id}/conflicts.csv", tags=["imports"])
    async def conflicts_report(job_id: str, _: Caller) -> Response:
        """An undo's conflicts: each field changed since the import it undid, with what the client holds now and
        what undo would have written."""
        return await _report(job_id, "conflicts")

    @app.get("/clients", tags=["clients"], description=(
        f"`q` is plain text found in a first or last name, an email or a username ({search.MIN_SUBSTRING} characters "
        f"or more; fewer match the start of an email or username), at most {readside.MAX_Q_CHARS} characters. A search "
        f"finds at most {search.MAX_MATCHES} clients: `total_exact` is false when there are more."))
    async def list_clients(
        _: Caller, q: str = Query("", max_length=readside.MAX_Q_CHARS), limit: int = Query(50, ge=1, le=500),
        offset: int = Query(0, ge=0, le=readside.MAX_OFFSET),
    ) -> Response:
        if _CONTROL.search(q):
            raise ApiError(422, "invalid_parameters", "q: a search may not contain control characters.")
        async def read() -> dict:
            async with reader.connect() as conn:
                items, total, exact = await readside.search_clients(conn, q, limit, offset)
            return {"items": items, "total": total, "total_exact": exact}

        return _json(await answers.answer(("clients", q.strip(), limit, offset), read))

    add_mapping_routes(app, engine, caller)
    add_preview_route(app, engine, caller, settings)
    add_retry_routes(app, engine, reader, router, caller, settings)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_document(_: Caller) -> dict:
        return app.openapi()

    @app.get("/docs", include_in_schema=False)
    async def openapi_page(_: Caller) -> Response:
        html = get_swagger_ui_html(openapi_url="/openapi.json", title="Client Import API")
        html.headers["Content-Security-Policy"] = guards.docs_policy(html.body)
        return html

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_exception_handler(Exception, guards.internal_error)
    # Every head and body is bounded (see limits.py): an answer given without reading the body still
    # closes the connection in time.
    app.add_middleware(
        RequestLimits, max_head_bytes=settings.api_max_head_bytes, stall_s=settings.api_body_stall_s,
        whole_s=settings.api_body_timeout_s, default_bytes=settings.api_max_body_bytes,
        # the upload's reader refuses first, with its own message; this is the backstop
        limits={(route, path): settings.max_bytes + 2 * FORM_ALLOWANCE
                for route, path in (("POST", "/imports"), ("POST", PREVIEW_PATH), ("POST", RETRY_PATH))},
    )
    # Added last, so outermost: every answer, the limits' own included, carries the security headers.
    app.add_middleware(guards.FrontDoor, cookie_names=(cookie_name(False), cookie_name(True)))
    return app


def is_https(request: Request) -> bool:
    """The scheme the browser used: uvicorn takes it from X-Forwarded-Proto only when the proxy's address is
    in FORWARDED_ALLOW_IPS (loopback by default), never from any client."""
    return request.scope.get("scheme") == "https"


def session_cookie(request: Request) -> str:
    return cookie_name(is_https(request))


def _disposing(reader: AsyncEngine | None):
    @contextlib.asynccontextmanager
    async def lifespan(_app):
        try:
            yield
        finally:
            if reader is not None:
                await reader.dispose()

    return lifespan


def import_settings_document(settings: Settings) -> dict:
    """The fields, their defaults and limits, the modes, the statuses and the file limits, from their owners."""
    return {
        "max_records": settings.max_records,
        "max_bytes": settings.max_bytes,
        "max_columns": settings.max_columns,
        "required_columns": list(REQUIRED),
        "optional_columns": [
            {"name": f.column, "default": f.default, **({"note": f.note} if f.note else {})}
            for f in FIELDS if not f.required
        ],
        "fields": [
            {"name": f.column, "key": f.key, "label": f.label, "required": f.required, "default": f.default,
             "max_length": f.max_length, "note": f.note, "aliases": list(f.aliases),
             **({"choices": list(settings.client_types)} if f.key == "type" else {})}
            for f in FIELDS
        ],
        # What a column map may name, and the whole-name column the reader splits (shared/fields.py).
        "column_map": {"targets": list(TARGETS), "max_columns": MAP_MAX_COLUMNS,
                       "full_name": {"name": FULL_NAME, "aliases": list(FULL_NAME_ALIASES), "splits_into": list(NAME_PARTS)}},
        "modes": [{"value": m.value, "label": m.label, "default": m is Mode.UPSERT} for m in Mode],
        "statuses": [
            {"value": s.value, "label": s.text.label, "heading": s.text.heading, "tone": s.text.tone,
             "running": not s.is_final}
            for s in JobStatus
        ],
        "client_types": list(settings.client_types),
    }


def _options(fields: dict[str, str], callbacks: CallbackPolicy) -> ImportOptions:
    callback_url = fields.get("callback_url") or None
    if callback_url is not None:
        try:
            check_url(callback_url, callbacks)
        except CallbackRefused as refused:
            raise ApiError(422, "invalid_options", str(refused)) from None
    mode = fields.get("mode") or Mode.UPSERT.value
    if mode not in {m.value for m in Mode}:
        raise ApiError(422, "invalid_options", f"mode must be one of {', '.join(Mode)}, not “{mode[:40]}”.")
    try:
        return ImportOptions(
            mode=Mode(mode),
            dry_run=dry_run_of(fields.get("dry_run") or ""),
            callback_url=callback_url,
            column_map=form_column_map(fields),
            mapping=form_mapping_name(fields),
        )
    except ValueError as error:
        raise ApiError(422, "invalid_options", "callback_url must be an http:// or https:// URL.") from error


def _json(body: bytes) -> Response:
    return Response(body, media_type="application/json")


def _csv(text: str, file_name: str, suffix: str = ".csv") -> Response:
    return Response(
        text.encode("utf-8"), media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": reports.content_disposition(file_name, suffix), "X-Content-Type-Options": "nosniff"},
    )
