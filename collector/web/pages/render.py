"""Jinja2 set-up, formatting filters and the error-safe page wrapper.

Every page handler is wrapped by ``page``: a template or database failure is logged with its
traceback and answered with a friendly 500 page (never a stack trace); a missing object is a
friendly 404, a bad filter a friendly 400. If even the error template fails, a fixed plain HTML
body is sent.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from collector.alerts import fix_text, format_duration
from collector.alerts.verdict import OFD_CONSEQUENCE
from collector.security import PRINCIPAL_KEY, Principal
from collector.storage.errors import InvalidValue
from collector.web.i18n import DEFAULT_LANGUAGE, labels
from collector.web.problems import Problem
from collector.web.routing import now
from collector.web.shared.csrf import CSRF_FIELD, CsrfGuard
from collector.web.shared.zones import DEFAULT_TIME_ZONE

log = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
TimeZoneOf = Callable[[Principal], tzinfo]

STATIC_ROUTE = "static"
CSRF_KEY = web.AppKey("pages_csrf", CsrfGuard)
TIME_ZONE_KEY: web.AppKey[TimeZoneOf] = web.AppKey("pages_time_zone")

PageHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class PageError(Exception):
    """Raise from a page handler to answer with a friendly error page of ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def time_zone(request: web.Request) -> tzinfo:
    principal = request.get(PRINCIPAL_KEY)
    resolver = request.app.get(TIME_ZONE_KEY)
    if principal is None or resolver is None:
        return DEFAULT_TIME_ZONE
    return resolver(principal)


# --- filters -------------------------------------------------------------------------------------


def local_time(value: datetime | None, zone: tzinfo, with_seconds: bool = False) -> str:
    """An instant in the tenant's zone: ``28.11.2026 12:00``."""
    if value is None:
        return "—"
    if value.utcoffset() is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(zone).strftime("%d.%m.%Y %H:%M:%S" if with_seconds else "%d.%m.%Y %H:%M")


def register_time(value: datetime | None) -> str:
    """A naive register-local wall-clock time, shown as the register reported it."""
    return "—" if value is None else value.strftime("%d.%m.%Y %H:%M")


def ru_date(value: date | None) -> str:
    return "—" if value is None else value.strftime("%d.%m.%Y")


def countdown_text(seconds: float | None) -> str:
    """``"через 9 дн. 21 ч"``, ``"заблокирована 2 дн. назад"``; the same wording ``app.js`` renders live."""
    if seconds is None:
        return "—"
    if seconds > 0:
        return f"через {format_duration(timedelta(seconds=seconds))}"
    return (
        f"заблокирована {format_duration(timedelta(seconds=-seconds))} назад"
        if seconds < -60
        else "заблокирована"
    )


def block_marker(seconds: float | None) -> str:
    """Контур's colour markers: red once blocked, yellow within 30 days of the block, else none."""
    if seconds is None:
        return "none"
    if seconds <= 0:
        return "red"
    return "yellow" if seconds <= 30 * 86_400 else "none"


def sell_marker(item: Any) -> str:
    """The colour of a register's "can it sell" answer: red cannot sell now, grey unknown, yellow a
    stop within 30 days, else none. ``item``: a ``RegisterSummary`` (or anything with its fields)."""
    status = item.sell_status
    if status == "cannot_sell":
        return "red"
    if status == "unknown":
        return "grey"
    return block_marker(item.time_to_block_seconds) if status == "will_stop" else "none"


def store_path(path: Sequence[str]) -> str:
    """Where a register stands in a list: its path from the root without the company itself, which
    every row shares («Продукты у дома / Москва / Магазин №1»), as the node pickers name nodes."""
    return " / ".join(path[1:]) or " / ".join(path)


def alert_fix(alert: Any) -> str:
    """What to do about an alert (``AlertRow``/``AlertOut``): the catalogue's text, its numbers filled in."""
    return fix_text(alert.rule, alert.details) or ""


def iso(value: datetime | None) -> str:
    if value is None:
        return ""
    if value.utcoffset() is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


def setup_templates(app: web.Application) -> None:
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=jinja2.select_autoescape(["html"], default=True),
        undefined=jinja2.StrictUndefined,  # a typo in a template fails loudly in tests, not silently
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        register_time=register_time,
        ru_date=ru_date,
        countdown=countdown_text,
        marker=block_marker,
        sell_marker=sell_marker,
        store_path=store_path,
        fix=alert_fix,
        iso=iso,
    )
    env.globals["ofd_consequence"] = OFD_CONSEQUENCE


def render(
    request: web.Request, template: str, context: dict[str, Any], *, status: int = 200
) -> web.Response:
    zone = time_zone(request)
    principal = request.get(PRINCIPAL_KEY)
    csrf = request.app[CSRF_KEY]

    def local(value: datetime | None, with_seconds: bool = False) -> str:
        return local_time(value, zone, with_seconds)

    base = {
        "labels": labels(DEFAULT_LANGUAGE),
        "user": principal.user if principal is not None else None,
        "csrf_field": CSRF_FIELD,
        "csrf_token": csrf.token(request) if principal is not None else "",
        "zone_name": str(zone),
        "local": local,
        "path": request.path,
        "asset": lambda name: str(request.app.router[STATIC_ROUTE].url_for(filename=name)),
        "now": now(request),
    }
    response = aiohttp_jinja2.render_template(template, request, {**base, **context}, status=status)
    csrf.bind(request, response)
    response.headers.setdefault("Cache-Control", "no-store")
    return response


SERVER_FAILED = "Страница не открылась из-за ошибки на сервере. Мы уже записали её в журнал."
_LAST_RESORT = (
    '<!doctype html><html lang="ru"><meta charset="utf-8"><title>Ошибка</title>'
    "<main><h1>Что-то пошло не так</h1><p>Страница не открылась. Попробуйте ещё раз позже.</p>"
    '<p><a href="/">На главную</a></p></main></html>'
)


# A person reads the page: the API's English detail stays in the API.
_PROBLEM_TEXTS = {
    400: "Неверный адрес или параметры запроса: проверьте ссылку.",
    401: "Войдите, чтобы продолжить.",
    403: "Недостаточно прав для этого действия.",
    404: "Не найдено или вне вашей зоны доступа.",
    409: "Не выполнено: данные уже изменились или конфликтуют с существующими. Обновите страницу.",
    413: "Слишком большой запрос или файл.",
    422: "Неверные данные: проверьте заполненные поля.",
    503: "Сервис временно недоступен. Повторите позже.",
}


def error_page(request: web.Request, status: int, message: str) -> web.Response:
    try:
        return render(request, "error.html", {"status": status, "message": message}, status=status)
    except Exception:
        log.exception("the error page itself failed to render")
        return web.Response(status=status, text=_LAST_RESORT, content_type="text/html", charset="utf-8")


def page(handler: PageHandler) -> PageHandler:
    @functools.wraps(handler)
    async def safe(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise  # redirects after a form POST
            if exc.status >= 500:  # aiohttp-jinja2 reports a missing template this way
                log.error("page %s %s failed: %s", request.method, request.path, exc.text or exc.reason)
                return error_page(request, 500, SERVER_FAILED)
            return error_page(request, exc.status, "Запрос не выполнен.")
        except PageError as exc:
            return error_page(request, exc.status, exc.message)
        except Problem as problem:  # e.g. a malformed id in the path: the API's refusal, as a page in Russian
            status = problem.body.status
            return error_page(request, status, problem.ru or _PROBLEM_TEXTS.get(status, "Запрос не выполнен."))
        except InvalidValue as exc:
            return error_page(request, 400, f"Неверный фильтр: {exc}")
        except Exception:
            log.exception("page %s %s failed", request.method, request.path)
            return error_page(request, 500, SERVER_FAILED)

    return safe
