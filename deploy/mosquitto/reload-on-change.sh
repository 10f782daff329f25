#!/bin/sh
# The compose broker: Mosquitto, sent SIGHUP within 2 s of a change to its account files
# (password file, ACL), which `coldtrace devices` and the API's /devices routes rewrite from
# another container (docs/security.md "Device accounts"): Mosquitto re-reads both on SIGHUP
# and re-checks its connected clients.
set -u
accounts=/mosquitto/accounts
mosquitto -c /mosquitto/config/mosquitto.conf &
pid=$!
trap 'kill -TERM "$pid"' TERM INT
seen=$(cat "$accounts/passwd" "$accounts/acl" 2>/dev/null | cksum)
while kill -0 "$pid" 2>/dev/null; do
    sleep 2
    now=$(cat "$accounts/passwd" "$accounts/acl" 2>/dev/null | cksum)
    if [ "$now" != "$seen" ]; then
        kill -HUP "$pid"
        seen=$now
    fi
done
wait "$pid"
