"""The certificate document's content as plain data, for its two forms: the PDF
(coldtrace.certificates.pdf, Typst) and the verification page's HTML
(coldtrace.certificates.html, Jinja2). Every word, number and time is written here, in the
customer's language and time zone (coldtrace.certificates.i18n.Writer), so the templates only
lay it out: what the document says is decided in one place. The verification page's own
table of the certificate (templates/verify.html: page_view) is written here too, the same
way. Pure.
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
    language_of,
)
from coldtrace.certificates.i18n import NONE, Writer
from coldtrace.settings import known_timezone

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


def _profile(t: Writer, judged: Mapping[str, Any]) -> str:
    """The profile judged against (the body's ``judged_against``): its name in the reader's
    language (Writer.profile) and its id."""
    return f"{t.profile(judged['profile'], judged['name'])} ({judged['profile']})"


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
            "detail": f"{t('judged_against')}{t('colon')}{_profile(t, j)}, "
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


def page_writer(body: Mapping[str, Any], language: str | None = None) -> Writer:
    """The verification page's words, numbers and times for a version whose body is ``body``
    (as stored, signed or not): in ``language`` ("en", "fr"; None: the body's customer
    language) and the body's time zone, as its document; UTC for a version from before
    bodies carried one, or a zone this machine does not know (a row changed after
    signing: the page says it is invalid, and still shows it)."""
    zone = body.get("timezone")
    if not isinstance(zone, str) or not known_timezone(zone):
        zone = "UTC"
    return Writer(language or language_of(body), zone)


def _page_breaches(b: Mapping[str, Any], t: Writer) -> list[list[Cell]]:
    """The page's breaches table, a row per breach of the body ``b``: rule, probe, severity,
    start, end, duration, peak, written as the document writes them; a breach under way at
    drop-off ends there, marked so, its minutes counted to then (breach_end)."""
    rows = []
    for x in b.get("breaches") or []:
        end = breach_end(x, b["end"])
        # .get: the page shows any stored row, even one without the flag (changed after
        # signing, its status says so).
        suppressed = f" ({t('suppressed')})" if x.get("suppressed") else ""
        mark = f" ({t('ongoing_at_dropoff')})" if end.ongoing else ""
        cells = (
            t("rule." + x["rule"]) + suppressed,
            x["device"] + (f" / {x['probe']}" if x["probe"] else ""),
            t("severity." + x["severity"]),
            t.time(x["start"]),
            t.time(end.at) + mark,
            t.minutes(end.minutes),
            t.celsius(x["peak_c"]),
        )
        rows.append([_plain(text) for text in cells])
    return rows


def _page_facts(c: Mapping[str, Any], t: Writer) -> list[tuple[str, Cell]]:
    """The page's facts of the version ``c`` (an envelope): those its body has (a version
    from before bodies carried the figures shows fewer)."""
    b = c["body"]
    reference = b.get("reference")
    delivery = f"({t('page.number')} {b.get('delivery_id')})"
    rows = [
        (t("delivery"), _plain(f"{reference} {delivery}" if reference else delivery)),
        (t("page.version"), _plain(f"{c['version']}, {t('page.issued')} {t.time(c['issued'])}")),
        (t("verdict"), [(t(str(b.get("verdict"))), "b")]),
    ]
    if b.get("reasons"):
        rows.append((t("reasons"), _plain("\n".join(b["reasons"]))))
    if "customer_id" in b:
        rows.append((t("customer"), _plain(str(b["customer_id"]))))
    j = b.get("judged_against")
    if j:
        rows.append((t("page.profile"), _plain(_profile(t, j))))
    elif "profile" in b:
        rows.append((t("page.profile"), _plain(str(b["profile"]))))
    if "vehicle_id" in b:
        rows.append((t("vehicle"), _plain(f"{b['vehicle_id']} / {b.get('compartment')}")))
    if "start" in b and "end" in b:
        rows.append((t("page.window"), _plain(f"{t.time(b['start'])} \u2013 {t.time(b['end'])}")))
        rows.append((t("tz"), _plain(t.zone)))
    if "readings" in b:
        rows.append((t("readings"), _plain(str(b["readings"]))))
    if b.get("min_c") is not None:
        rows.append((t("min_max_mean"), _plain(_triple(t, b))))
    if b.get("mkt_c") is not None:
        rows.append((t("mkt"), _plain(t.celsius(b["mkt_c"]))))
    if b.get("in_range_min") is not None:
        rows.append((t("in_range"), _plain(t.minutes(b["in_range_min"]))))
        rows.append((t("out_of_range"), _plain(t.minutes(b["out_of_range_min"]))))
    rows.append((t("gaps"), _plain(str(len(b.get("gaps") or [])))))
    key = [(f"{c['algorithm']}, {t('page.key')} ", ""), (str(c["key_id"]), "mono")]
    rows.append((t("page.signed"), key))
    return rows


def page_view(certificate: Mapping[str, Any], t: Writer) -> dict[str, Any]:
    """What the verification page (templates/verify.html) shows of ``certificate`` (an
    envelope as the API returns it, its body as stored) beside its standing, written by
    ``t`` (page_writer): ``title``, ``facts`` (rows of label and ``Cell``), ``breaches``
    (``header``, ``rows`` of ``Cell``: none when the body has no breach)."""
    b = certificate["body"]
    header = ("page.rule", "probe", "severity", "start", "end", "duration", "peak")
    return {
        "title": f"{t('certificate')} {certificate['delivery_id']} v{certificate['version']}",
        "facts": _page_facts(certificate, t),
        "breaches": {"header": [t(k) for k in header], "rows": _page_breaches(b, t)},
    }
