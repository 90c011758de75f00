#!/bin/bash
# Runs inside the booted container (tests/systemd/test_unit.py) as a oneshot unit: installs and exercises the
# shipped unit as README.md says, records what systemd and the journal saw in /results, then powers off.
# Checks live in the test on the host; this script only acts and records (each step's exit code in steps.txt).
set -uo pipefail
R=/results
exec >"$R/driver.log" 2>&1
set -x
cd /src

step() {  # step NAME COMMAND...: run it, record its exit code
  local name=$1; shift
  "$@"; echo "$name $?" >>"$R/steps.txt"
}
readme() { bash -eo pipefail "/work/readme-$1.sh"; }
show() { systemctl show lambda-bridge -p ActiveState,SubState,Result,NRestarts,StatusText,ExecMainStatus \
  -p WatchdogUSec,WatchdogTimestampMonotonic,Documentation,ReadWritePaths,ReadOnlyPaths,ProtectSystem,DynamicUser \
  -p Delegate >"$R/$1"; }
poll() {  # poll SECONDS COMMAND...: until it succeeds (a readiness poll with a deadline)
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do [ "$SECONDS" -lt "$deadline" ] || return 1; sleep 0.2; done
}
invoke() {  # invoke FUNCTION OUTFILE: the Invoke API, as boto3 would call it
  python3 - "$1" "$R/$2" <<'PY'
import json, sys, urllib.request
req = urllib.request.Request(f"http://127.0.0.1:9001/2015-03-31/functions/{sys.argv[1]}/invocations",
                             data=b'{"n": 1}', method="POST")
with urllib.request.urlopen(req, timeout=30) as resp:
    json.dump({"status": resp.status, "error": resp.headers.get("X-Amz-Function-Error"),
               "body": resp.read().decode()}, open(sys.argv[2], "w"))
PY
}
has_function() { python3 -c "import json, sys, urllib.request
s = json.load(urllib.request.urlopen('http://127.0.0.1:9001/bridge/status', timeout=5))
sys.exit(0 if '$1' in [f['name'] for f in s['functions']] else 1)" 2>/dev/null; }
in_journal() { journalctl -u lambda-bridge -o cat --no-pager | grep -q "$1"; }

# A test-only drop-in: the watchdog at 2 s instead of 30, so the check takes seconds.
mkdir -p /etc/systemd/system/lambda-bridge.service.d
printf '[Service]\nWatchdogSec=2\n' >/etc/systemd/system/lambda-bridge.service.d/zz-test-watchdog.conf

step install readme 2            # config, unit, enable --now (returns once READY=1 arrived), status, journal
show ready.txt
step documented test -f "$(systemctl show -p Documentation --value lambda-bridge | sed 's|^file://||')"
step dropin readme 4             # ReadWritePaths=/srv/inbox, ReadOnlyPaths=/srv/handlers; restart
show dropin.txt

cp -r /work/handlers/. /srv/handlers/
install -d -m 1777 /srv/inbox/done           # where the handler writes: the watched folder, outside the state
cp /work/config.yaml /etc/lambda-bridge/config.yaml
step reload readme 3             # check && systemctl reload
step reloaded poll 30 has_function boom
show reloaded.txt
step in_journal_reload poll 10 in_journal reload.applied

echo 'a picture' >/srv/inbox/cat.jpg
step watched poll 30 test -f /srv/inbox/done/cat.jpg.txt   # .txt: not a .jpg, so not an event again
step invoke_boom invoke boom boom.json
step invoke_ok invoke ok ok.json
cp /var/lib/lambda-bridge/logs/*.log "$R/" 2>/dev/null || true   # the functions' own logs, for a failing run

show watchdog-1.txt
pings=0 last=$(systemctl show -p WatchdogTimestampMonotonic --value lambda-bridge)
pinged() {  # true once the watchdog timestamp moved 3 times: pings keep coming for longer than WatchdogSec
  local now; now=$(systemctl show -p WatchdogTimestampMonotonic --value lambda-bridge)
  [ "$now" != "$last" ] && { pings=$((pings + 1)); last=$now; }
  [ "$pings" -ge 3 ]
}
step watchdog poll 10 pinged
show watchdog-2.txt

step journal_boom poll 10 in_journal '"function": "boom".*"event": "invoke.report"'
journalctl -u lambda-bridge -p warning -o cat --no-pager >"$R/journal-warning.txt"

# A config that does not parse: root's CLI still finds the daemon (its entry in /run/lambda-bridge, the unit's
# RuntimeDirectory=, under DynamicUser= and ProtectSystem=strict), then the file is put back.
cp /etc/lambda-bridge/config.yaml /tmp/good.yaml
printf 'functions: [\n' >>/etc/lambda-bridge/config.yaml
step broken_seen poll 10 in_journal reload.invalid
step broken_status bash -c '/opt/lambda-bridge/bin/lambda-bridge status --config /etc/lambda-bridge/config.yaml \
  >"$0/broken-status.txt" 2>"$0/broken-status.err"' "$R"
stat -c '%a %U' /run/lambda-bridge /run/lambda-bridge/*.json >"$R/index-modes.txt" 2>&1
cp /tmp/good.yaml /etc/lambda-bridge/config.yaml
step stop systemctl stop lambda-bridge
show stopped.txt
journalctl -u lambda-bridge -o json --no-pager >"$R/journal.json"
touch "$R/finished"
