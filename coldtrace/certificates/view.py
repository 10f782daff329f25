"""The certificate document's content as plain data, for its two forms: the PDF
(coldtrace.certificates.pdf, Typst) and the verification page's HTML
(coldtrace.certificates.html, Jinja2). Every word, number and time is written here, in the
customer's language and time zone (coldtrace.certificates.i18n.Writer), so the templates only
lay it out: what the document says is decided in one place. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from coldtrace.certificates.document import (
    MAX_BREACHES,
    DocumentRequest,
    certificate_content,
    document_writer,
)
from coldtrace.certificates.i18n import NONE, Writer

# A cell of the document's tables: spans of (text, style); style "" plain, "b" bold, "bad"
# (red, bold: what makes a certificate less than compliant), "mono" (ids, addresses). A
# newline in a text breaks the line.
Span = tuple[str, str]
Cell = list[Span]
MAX_REASONS: Final = 6


def _plain(text: str) -> Cell:
    return [(text, "")]


def _bad(text: str, bad: bool) -> Cell:
    return [(text, "bad" if bad else "")]


def _named(name: str, rest: str) -> Cell:
    """A name in bold, then the rest plain: "**Laboratoire Nord** (labo)"."""
    return [(name, "b"), (rest, "")]


def _triple(t: Writer, x: Mapping[str, Any]) -> str:
    """Min / max / mean in C."""
    return f"{t.celsius(x['min_c'])} / {t.celsius(x['max_c'])} / {t.celsius(x['mean_c'])}"


def _sections(b: Mapping[str, Any], t: Writer, content: Mapping[str, Any]) -> list[Any]:
    """Page one's facts: the delivery, what it was judged against, the figures."""
    j = b["judged_against"]
    delay = t.minutes(j["delay_min"])
    if content["critical_text"]:
        delay += f" · {t('critical')} {content['critical_text']}"
    gaps = [
        f"{g['probe']}: {t.time(g['start'])} \u2013 {t.clock(g['end'])} ({t.minutes(g['minutes'])})"
        for g in b["gaps"]
    ]
    pickup, dropoff = b["pickup"], b["dropoff"]
    interval = t.number(b["recording_interval_s"], 0)
    delivery = [
        (t("customer"), _named(b["customer"]["name"], f" ({b['customer_id']})")),
        (t("pickup"), _plain(f"{pickup['address']}\n{t.time(pickup['time'])}")),
        (t("dropoff"), _plain(f"{dropoff['address']}\n{t.time(dropoff['time'])}")),
        (t("vehicle"), _plain(f"{b['vehicle']} ({b['vehicle_id']}) / {b['compartment']}")),
    ]
    judged = [
        (t("range"), _plain(content["range_text"])),
        (t("delay"), _plain(delay)),
        (t("regulation"), _plain(j.get("regulation") or NONE)),
        (t("calibration_required"), _plain(t("yes" if j["calibration_required"] else "no"))),
    ]
    figures = [
        (t("readings"), _plain(f"{b['readings']} · {t('interval')} {interval} s")),
        (t("min_max_mean"), _plain(_triple(t, b))),
        (t("in_range"), _plain(t.minutes(b["in_range_min"]))),
        (t("out_of_range"), _bad(t.minutes(b["out_of_range_min"]), bool(b["out_of_range_min"]))),
        (t("mkt"), [(t.celsius(b["mkt_c"]), "b")]),
        (t("gaps"), _bad("\n".join(gaps) if gaps else t("no_gaps"), bool(gaps))),
    ]
    return [
        {"title": t("delivery"), "rows": delivery},
        {"title": t("judged_against"), "rows": judged},
        {"title": t("figures"), "rows": figures},
    ]


def _probes(b: Mapping[str, Any], t: Writer) -> dict[str, Any]:
    """The probes' table: each probe's figures and its calibration."""
    rows = []
    for p in b["probes"]:
        cal = p["calibration"]
        calibration = t(cal["status"])
        if cal.get("reference"):
            calibration += (
                f" · {cal['reference']}, {t('calibrated')} {cal['calibrated'][:10]}, "
                f"{t('due')} {cal['due'][:10]}"
            )
        rows.append(
            [
                _plain(f"{p['device']} / {p['probe']}"),
                _plain(str(p["readings"])),
                _plain(_triple(t, p)),
                _plain(t.celsius(p["mkt_c"])),
                _plain(f"{t.number(p['in_range_pct'])} %"),
                _bad(calibration, cal["status"] != "valid"),
            ]
        )
    header = ("probe", "readings", "min_max_mean", "mkt", "in_range", "calibration")
    return {"title": t("probes"), "header": [t(k) for k in header], "rows": rows, "more": None}


def _minutes(start: str, end: str) -> float:
    """Minutes from one ISO 8601 instant to another."""
    seconds = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    return seconds / 60


@dataclass(frozen=True, slots=True)
class BreachEnd:
    """How the document and the verification page end a breach of the signed JSON: ``at``
    (ISO 8601 UTC) its end, or, for one still under way when the delivery ended
    (``ongoing``: the JSON's ``end`` null, since the window ended, not the breach), the
    window's end (drop-off), as `coldtrace breaches list` and the charts end it;
    ``minutes`` from its start to ``at``: the signed ``duration_min``, else counted to
    drop-off (None for a version from before bodies carried durations)."""

    at: str
    ongoing: bool
    minutes: float | None


def breach_end(breach: Mapping[str, Any], window_end: str) -> BreachEnd:
    """Where breach ``breach`` (a row of the body's ``breaches``) ends in a window ending at
    ``window_end`` (the body's ``end``, ISO 8601)."""
    if breach["end"] is None:
        return BreachEnd(window_end, True, _minutes(breach["start"], window_end))
    return BreachEnd(breach["end"], False, breach.get("duration_min"))


def _breaches(b: Mapping[str, Any], t: Writer) -> dict[str, Any]:
    """The breaches' table: the first MAX_BREACHES, then how many more the JSON has. A
    breach still under way at drop-off ends there, marked so (breach_end)."""
    rows = []
    for x in b["breaches"][:MAX_BREACHES]:
        rule = t("rule." + x["rule"]) + (f" ({t('suppressed')})" if x["suppressed"] else "")
        where = f"{x['where']['lat']:.4f}, {x['where']['lon']:.4f}" if x["where"] else NONE
        end = breach_end(x, b["end"])
        cells = (
            x["device"] + (f" / {x['probe']}" if x["probe"] else ""),
            rule,
            t.time(x["start"]),
            t.time(end.at) + (f"\n{t('ongoing_at_dropoff')}" if end.ongoing else ""),
            t.minutes(end.minutes),
            t.celsius(x["peak_c"]),
            t.number(x["degree_minutes"]),
            t("severity." + x["severity"]),
            where,
        )
        rows.append([_plain(text) for text in cells])
    more = len(b["breaches"]) - MAX_BREACHES
    header = ("start", "end", "duration", "peak", "degree_minutes", "severity", "where")
    return {
        "title": t("breaches"),
        "header": [t("probe"), "", *(t(k) for k in header)],
        "rows": rows,
        "more": f"+{more} {t('more')}" if more > 0 else None,
        "none": t("none"),
    }


def document_view(request: DocumentRequest) -> dict[str, Any]:
    """What the document shows of ``request.certificate``, as both templates read it: every
    text written in the request's language and the body's time zone, the pictures as SVG
    text (document.certificate_content: "" when there are no fixes or no verify_url),
    tables as rows of ``Cell`` (the logo is the templates' own). NoDocument for a version
    issued before certificates carried the document's content."""
    c, verify_url = request.certificate, request.verify_url
    b = c["body"]
    t = document_writer(b, request.language)
    content = certificate_content(c, request.readings, verify_url, t)
    j = b["judged_against"]
    reasons = list(b.get("reasons") or [])
    shown = reasons[:MAX_REASONS]
    if len(reasons) > MAX_REASONS:
        shown.append(f"+{len(reasons) - MAX_REASONS} {t('more')}")
    reference = str(b.get("reference") or b["delivery_id"])
    ident = (
        f"{t('certificate')} {b['delivery_id']}-{b['version']} "
        f"({t('version')} {b['version']}) · {t('delivery')} "
    )
    signature = [
        (t("signed_by"), _named(b["signer"]["name"], f" ({b['issuer']['name']})")),
        (t("signed_at"), _plain(t.time(b["signer"]["signed_at"], seconds=True))),
        (t("meaning"), _plain(t("meaning_text"))),
        (t("key"), [(c.get("key_id") or NONE, "mono")]),
    ]
    return {
        "language": t.language,
        "title": f"{t('title')} {reference} v{b['version']}",
        "heading": t("title"),
        "ident": [(ident, ""), (reference, "b"), (f" · {t('tz')} {b['timezone']}", "")],
        "issuer": _named(b["issuer"]["name"], "\n" + (b["issuer"].get("address") or "")),
        "verdict": {
            "kind": b["verdict"],
            "text": t(b["verdict"]),
            "detail": f"{t('judged_against')}{t('colon')}{j['name']} ({j['profile']}), "
            f"{content['range_text']} · {t('mkt')} {t.celsius(b['mkt_c'])}",
        },
        "reasons": {"label": t("reasons"), "items": shown} if reasons else None,
        "route": (
            {"title": t("route"), "svg": content["route"], "legend": t("route_legend")}
            if content["route"]
            else None
        ),
        "sections": _sections(b, t, content),
        "probes": _probes(b, t),
        "breaches": _breaches(b, t),
        "charts": content["charts"],
        "chart_legend": f"{t('chart_legend')} · {t('tz')} {b['timezone']}",
        "signature": {
            "title": f"{t('signature')} (21 CFR 11.50)",
            "qr": content["qr"],
            "verify_text": t("verify_text"),
            "rows": signature,
            "verify": t("verify"),
            "url": verify_url,
        },
        "page": t("page"),
        "of": t("of"),
    }


# The verification page's own words (templates/verify.html): English, times in UTC as signed.
PAGE_WRITER: Final = Writer("en", "UTC")


def page_breaches(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The verification page's breaches table, a row per breach of ``body`` (the signed
    body): ``breach`` its signed row, shown as the JSON has it (ids, UTC times, peak in C);
    ``end`` and ``duration`` as the document shows them (breach_end, the duration written
    as the document writes it): a breach under way at drop-off ends there, "(ongoing at
    drop-off)", its minutes counted to then."""
    t = PAGE_WRITER
    rows = []
    for x in body.get("breaches") or []:
        end = breach_end(x, body["end"])
        mark = f" ({t('ongoing_at_dropoff')})" if end.ongoing else ""
        rows.append({"breach": x, "end": end.at + mark, "duration": t.minutes(end.minutes)})
    return rows
