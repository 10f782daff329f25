"""The certificate document's words and number, time and duration formats, in English and
French (a customer's language, else COLDTRACE_CERTIFICATE_LANGUAGE). Pure.

Times are written in the customer's time zone with its UTC offset, as the signed body has
them in UTC: the reader compares them with their own clock, the auditor with the JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final
from zoneinfo import ZoneInfo

LANGUAGES: Final = ("en", "fr")
# Each language in itself, for the verification page's language switch.
LANGUAGE_NAMES: Final = {"en": "English", "fr": "Français"}
NONE: Final = "\u2013"  # an en dash where there is no value

WORDS: Final[dict[str, dict[str, str]]] = {
    "en": {
        "title": "Temperature certificate",
        "colon": ": ",
        "certificate": "Certificate",
        "version": "version",
        "delivery": "Delivery",
        "customer": "Customer",
        "issued_by": "Issued by",
        "verdict": "Verdict",
        "compliant": "COMPLIANT",
        "not_compliant": "NOT COMPLIANT",
        "incomplete": "INCOMPLETE",
        "reasons": "Reasons (as signed)",
        "judged_against": "Judged against",
        "range": "Range",
        "delay": "Breach after",
        "critical": "Critical",
        "regulation": "Source",
        "calibration_required": "Calibrated probes required",
        "yes": "yes",
        "no": "no",
        "pickup": "Pickup",
        "dropoff": "Drop-off",
        "vehicle": "Vehicle / compartment",
        "figures": "Figures",
        "readings": "Readings",
        "interval": "Recording interval",
        "gaps": "Data gaps",
        "min_max_mean": "Min / max / mean",
        "in_range": "Time in range",
        "out_of_range": "Time out of range",
        "mkt": "Mean kinetic temperature",
        "probes": "Probes",
        "probe": "Probe",
        "calibration": "Calibration",
        "calibrated": "calibrated",
        "due": "due",
        "valid": "valid",
        "expired": "EXPIRED",
        "missing": "MISSING",
        "breaches": "Breaches",
        "none": "none",
        "no_gaps": "none",
        "start": "Start",
        "end": "End",
        "duration": "Duration",
        "peak": "Peak",
        "degree_minutes": "Degree-minutes",
        "severity": "Severity",
        "where": "Where it began",
        "ongoing_at_dropoff": "ongoing at drop-off",
        "suppressed": "suppressed",
        "more": "more: see the attached JSON",
        "route": "Route",
        "route_legend": "green: pickup, black: drop-off, red: breach",
        "chart_legend": "green band: the profile's range; red: breach; grey: data gap",
        "signature": "Electronic signature",
        "signed_by": "Signed by",
        "signed_at": "Signed on",
        "meaning": "Meaning",
        "meaning_text": "certification: the verdict and figures are computed from the "
        "delivery's stored readings against the limits stated",
        "key": "Ed25519 key",
        "verify": "Verify",
        "verify_text": "Scan the code or open the address to check this certificate. "
        "Offline: this PDF carries the signed certificate (certificate.json); "
        "`coldtrace certificates verify` accepts the PDF itself.",
        "page": "Page",
        "of": "of",
        "tz": "Times in",
        "rule.excursion_high": "above the range",
        "rule.excursion_low": "below the range",
        "rule.cumulative": "cumulative time out of range",
        "rule.mkt": "mean kinetic temperature",
        "rule.probe_fault": "probe fault",
        "rule.probe_stuck": "probe stuck",
        "rule.probe_jump": "impossible jump",
        "rule.device_silent": "device silent",
        "rule.door_open": "door open",
        "severity.minor": "minor",
        "severity.major": "major",
        "severity.critical": "critical",
        # The verification page's own words (templates/verify.html, view.page_view).
        "page.heading": "coldtrace certificate verification",
        "page.languages": "Language",
        "page.number": "no.",
        "page.version": "Version",
        "page.issued": "issued",
        "page.profile": "Product profile",
        "page.window": "From, to",
        "page.signed": "Signed",
        "page.key": "key",
        "page.rule": "Rule",
        "page.superseded_by": "superseded by",
        "page.valid_text": "The signature of this certificate checks with the issuer's key, "
        "and it is the current version.",
        "page.superseded_text": "The signature checks, but late readings changed the "
        "evaluation: a newer version replaced this one. Rely on the newer one.",
        "page.invalid_text": "Do not rely on this certificate.",
        "page.as_issued": "The certificate as issued",
        "page.download": "Download",
        "page.the_pdf": "the certificate (PDF)",
        "page.or": "or",
        "page.the_json": "the signed certificate (JSON)",
        "page.offline": "to check it offline (the PDF carries the JSON).",
        "page.offline_no_pdf": "to check it offline (this version was issued before "
        "certificates had a PDF).",
        "page.not_found_title": "Not found",
        "page.not_found": "not found: no certificate has this address",
        "page.not_found_text": "Check the address printed on the certificate or in its QR code.",
        "page.your_file": "Your file",
        "page.result": "Result",
        "page.this_record": "this installation's record",
        "page.retired_key": "signed with retired key",
        "page.check_title": "Check a certificate",
        "page.checked_title": "Checked",
        "page.not_a_certificate": "Not a certificate",
        "page.check_file": "Check a certificate file",
        "page.drop": "Drop a certificate here (PDF or JSON), or choose it",
        "page.check": "Check",
        "state.valid": "valid",
        "state.superseded": "superseded",
        "state.invalid": "invalid",
    },
    "fr": {
        "title": "Certificat de température",
        "colon": "\u00a0: ",  # French puts a (no-break) space before the colon
        "certificate": "Certificat",
        "version": "version",
        "delivery": "Livraison",
        "customer": "Client",
        "issued_by": "Émis par",
        "verdict": "Verdict",
        "compliant": "CONFORME",
        "not_compliant": "NON CONFORME",
        "incomplete": "INCOMPLET",
        "reasons": "Motifs (texte signé, en anglais)",
        "judged_against": "Référentiel",
        "range": "Plage",
        "delay": "Écart après",
        "critical": "Critique",
        "regulation": "Source",
        "calibration_required": "Sondes étalonnées exigées",
        "yes": "oui",
        "no": "non",
        "pickup": "Enlèvement",
        "dropoff": "Remise",  # not "Livraison": the section it is in
        "vehicle": "Véhicule / compartiment",
        "figures": "Mesures",
        "readings": "Relevés",
        "interval": "Intervalle d'enregistrement",
        "gaps": "Lacunes de données",
        "min_max_mean": "Min / max / moyenne",
        "in_range": "Temps dans la plage",
        "out_of_range": "Temps hors plage",
        "mkt": "Température cinétique moyenne",
        "probes": "Sondes",
        "probe": "Sonde",
        "calibration": "Étalonnage",
        "calibrated": "étalonnée le",
        "due": "échéance",
        "valid": "valide",
        "expired": "EXPIRÉ",
        "missing": "ABSENT",
        "breaches": "Écarts",
        "none": "aucun",
        "no_gaps": "aucune",  # lacunes: feminine
        "start": "Début",
        "end": "Fin",
        "duration": "Durée",
        "peak": "Pic",
        "degree_minutes": "Degrés-minutes",
        "severity": "Gravité",
        "where": "Lieu du début",
        "ongoing_at_dropoff": "en cours à la remise",
        "suppressed": "neutralisé",
        "more": "autres : voir le JSON joint",
        "route": "Trajet",
        "route_legend": "vert : enlèvement, noir : remise, rouge : écart",
        "chart_legend": "bande verte : plage du profil ; rouge : écart ; gris : lacune",
        "signature": "Signature électronique",
        "signed_by": "Signé par",
        "signed_at": "Signé le",
        "meaning": "Signification",
        "meaning_text": "certification : le verdict et les mesures sont calculés à partir "
        "des relevés enregistrés de la livraison, selon les limites indiquées",
        "key": "Clé Ed25519",
        "verify": "Vérifier",
        "verify_text": "Scannez le code ou ouvrez l'adresse pour vérifier ce certificat. "
        "Hors ligne : ce PDF contient le certificat signé (certificate.json) ; "
        "`coldtrace certificates verify` accepte le PDF lui-même.",
        "page": "Page",
        "of": "sur",
        "tz": "Heures en",
        "rule.excursion_high": "au-dessus de la plage",
        "rule.excursion_low": "en dessous de la plage",
        "rule.cumulative": "temps cumulé hors plage",
        "rule.mkt": "température cinétique moyenne",
        "rule.probe_fault": "défaut de sonde",
        "rule.probe_stuck": "sonde figée",
        "rule.probe_jump": "saut impossible",
        "rule.device_silent": "appareil muet",
        "rule.door_open": "porte ouverte",
        "severity.minor": "mineur",
        "severity.major": "majeur",
        "severity.critical": "critique",
        "page.heading": "Vérification des certificats coldtrace",
        "page.languages": "Langue",
        "page.number": "n°",
        "page.version": "Version",
        "page.issued": "émise le",
        "page.profile": "Profil de produit",
        "page.window": "Du, au",
        "page.signed": "Signé",
        "page.key": "clé",
        "page.rule": "Règle",
        "page.superseded_by": "remplacé par",
        "page.valid_text": "La signature de ce certificat est vérifiée avec la clé de "
        "l'émetteur, et c'est la version en vigueur.",
        "page.superseded_text": "La signature est vérifiée, mais des relevés arrivés en retard "
        "ont changé l'évaluation : une version plus récente a remplacé celle-ci. Fiez-vous à "
        "la plus récente.",
        "page.invalid_text": "Ne vous fiez pas à ce certificat.",
        "page.as_issued": "Le certificat tel qu'émis",
        "page.download": "Téléchargez",
        "page.the_pdf": "le certificat (PDF)",
        "page.or": "ou",
        "page.the_json": "le certificat signé (JSON)",
        "page.offline": "pour le vérifier hors ligne (le PDF contient le JSON).",
        "page.offline_no_pdf": "pour le vérifier hors ligne (cette version a été émise avant "
        "que les certificats aient un PDF).",
        "page.not_found_title": "Introuvable",
        "page.not_found": "introuvable : aucun certificat n'a cette adresse",
        "page.not_found_text": "Vérifiez l'adresse imprimée sur le certificat ou dans son code QR.",
        "page.your_file": "Votre fichier",
        "page.result": "Résultat",
        "page.this_record": "l'exemplaire enregistré ici",
        "page.retired_key": "signé avec l'ancienne clé",
        "page.check_title": "Vérifier un certificat",
        "page.checked_title": "Vérifié",
        "page.not_a_certificate": "Pas un certificat",
        "page.check_file": "Vérifier un fichier de certificat",
        "page.drop": "Déposez un certificat ici (PDF ou JSON), ou choisissez-le",
        "page.check": "Vérifier",
        "state.valid": "valide",
        "state.superseded": "remplacé",
        "state.invalid": "non valide",
    },
}


# The shipped profiles' display names (coldtrace/profiles.toml: "en" is its ``name``) in
# each language, by profile id. A profile configured under a shipped id with another name
# (a user profiles file replacing it) is the user's own, and is shown as named.
PROFILE_NAMES: Final[dict[str, dict[str, str]]] = {
    "chilled": {"en": "Chilled food", "fr": "Denrées réfrigérées"},
    "fresh-fish": {"en": "Fresh fish", "fr": "Poisson frais"},
    "cook-chill": {"en": "Cook-chill meals", "fr": "Repas en liaison froide"},
    "deep-frozen": {"en": "Deep-frozen (quick-frozen) food", "fr": "Denrées surgelées"},
    "frozen": {"en": "Frozen food", "fr": "Denrées congelées"},
    "hot-meals": {"en": "Hot-delivered meals", "fr": "Repas livrés chauds"},
    "pharma": {"en": "Pharmaceutical, refrigerated", "fr": "Produits pharmaceutiques réfrigérés"},
    "crt": {"en": "Controlled room temperature", "fr": "Température ambiante contrôlée"},
}


@dataclass(frozen=True, slots=True)
class Writer:
    """Writes values for a reader of ``language`` in time zone ``zone`` (IANA)."""

    language: str
    zone: str

    def __call__(self, key: str) -> str:
        """The word for ``key`` (the key itself when there is none: a new rule's name)."""
        return WORDS[self.language].get(key, key.split(".", 1)[-1])

    def profile(self, profile_id: str, name: str) -> str:
        """The display name of profile ``profile_id`` named ``name`` (as configured, signed):
        a shipped profile's in the reader's language (PROFILE_NAMES), any other as named."""
        shipped = PROFILE_NAMES.get(profile_id)
        return shipped[self.language] if shipped and shipped["en"] == name else name

    def number(self, value: float | None, digits: int = 1) -> str:
        if value is None:
            return NONE
        text = f"{value:.{digits}f}"
        return text.replace(".", ",") if self.language == "fr" else text

    def celsius(self, value: float | None) -> str:
        return NONE if value is None else f"{self.number(value)}\u202f°C"

    def minutes(self, value: float | None) -> str:
        """A duration in minutes as "1 h 05 min" / "12 min"."""
        if value is None:
            return NONE
        whole = round(value)
        hours, mins = divmod(whole, 60)
        return f"{hours}\u202fh\u202f{mins:02d}\u202fmin" if hours else f"{mins}\u202fmin"

    def time(self, iso: str | None, seconds: bool = False) -> str:
        """An ISO 8601 instant (UTC "Z" or with an offset) in the reader's zone, with its
        offset: 2026-01-05 09:30 (UTC+01:00), 05/01/2026 09:30 (UTC+01:00) in French."""
        if iso is None:
            return NONE
        local = datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(ZoneInfo(self.zone))
        day = local.strftime("%d/%m/%Y" if self.language == "fr" else "%Y-%m-%d")
        clock = local.strftime("%H:%M:%S" if seconds else "%H:%M")
        return f"{day} {clock} ({self.offset(local)})"

    def clock(self, iso: str | None) -> str:
        """Only the local time of day, for a row whose date the table already gave."""
        if iso is None:
            return NONE
        local = datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(ZoneInfo(self.zone))
        return local.strftime("%H:%M")

    @staticmethod
    def offset(local: datetime) -> str:
        delta = local.utcoffset()
        total = 0 if delta is None else int(delta.total_seconds()) // 60
        sign = "-" if total < 0 else "+"
        return f"UTC{sign}{abs(total) // 60:02d}:{abs(total) % 60:02d}"
