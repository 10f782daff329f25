#!/usr/bin/env bash
# Set up a fresh Debian/Ubuntu machine for coldtrace: system packages, then a venv with the
# project and its dev tools. Idempotent; as root it installs what is missing, otherwise it
# says what to install.
set -euo pipefail
venv=${1:-.venv}
need=()
command -v mosquitto >/dev/null || need+=(mosquitto)
command -v mosquitto_pub >/dev/null || need+=(mosquitto-clients)
command -v influxd >/dev/null || need+=(influxdb)
# PostgreSQL for the test suite's second store (Debian keeps its programs off PATH).
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || need+=(postgresql)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
# The tests check that a certificate verifies with openssl alone, as a lab would.
command -v openssl >/dev/null || need+=(openssl)
# The public verification page is tested in a real headless browser (Selenium drives it).
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
# Certificate PDFs: the DejaVu fonts Typst embeds in them, and poppler-utils (pdftoppm,
# pdftotext) with which the tests read them as a person would.
fc-list 2>/dev/null | grep -q "DejaVu Sans" || need+=(fonts-dejavu-core fontconfig)
command -v pdftoppm >/dev/null || need+=(poppler-utils)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing system packages: ${need[*]}; run: sudo apt-get install -y ${need[*]}" >&2
    exit 1
  fi
  echo "installing system packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  # Keep the packages' own system services from starting (they would take ports 1883 and
  # 8086): coldtrace runs its own servers, on its own ports, from its own configs.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get install -y -q --no-install-recommends "${need[@]}"
fi
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
# pip is quiet (-q) below: say what the minute or two without output is.
echo "installing coldtrace and its locked Python dependencies into $venv (a minute or two the first time) ..."
"$venv/bin/python" -m pip install -q --upgrade pip
# grafana-client (coldtrace dashboards push) brings niquests, whose urllib3-future wheel
# replaces urllib3 itself at every interpreter start (a .pth hook), which breaks `requests`
# (schemathesis in the tests). Built from source with URLLIB3_NO_OVERRIDE=1 it installs as
# urllib3_future only, beside the real urllib3; a venv the wheel already changed is repaired.
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ -e "$site/urllib3_future.pth" ]; then
  "$venv/bin/python" -m pip uninstall -q -y urllib3-future urllib3
  rm -rf "$site/urllib3"
fi
# The locked versions, each checked against its hash; then coldtrace itself, whose declared
# dependencies `pip check` finds in the lock (else: `make lock`).
URLLIB3_NO_OVERRIDE=1 "$venv/bin/python" -m pip install -q --require-hashes \
  --no-binary urllib3-future -r requirements/dev.txt
"$venv/bin/python" -m pip install -q --no-deps -e .
"$venv/bin/python" -m pip check >/dev/null || {
  "$venv/bin/python" -m pip check >&2
  echo "requirements/dev.txt misses a dependency of pyproject.toml: run make lock" >&2
  exit 1
}
echo "ready: $venv/bin/coldtrace"
