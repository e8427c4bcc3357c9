#!/bin/bash
# The GitHub API side (github/) against tests/fake-github.py: real HTTPS
# with a CA made by openssl here, App JWTs checked with a test RSA key,
# ETag/304, pagination and the 409/422/403/404/429/5xx paths. The tests
# themselves are tests/unit/check_github's suite "github-fake".
: "${top_srcdir:?}" "${top_builddir:?}"
skip() { echo "SKIP: $*"; exit 77; }
command -v python3 >/dev/null || skip "python3 is not installed"
command -v openssl >/dev/null || skip "openssl is not installed"
bin=$top_builddir/tests/unit/check_github
[ -x "$bin" ] || { echo "FAIL: no $bin"; exit 1; }

work=$(mktemp -d /tmp/kiln-github.XXXXXX)
fpid=
cleanup() {
	[ -n "$fpid" ] && kill "$fpid" 2>/dev/null && wait "$fpid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
mkdir "$work/fake"
python3 "$top_srcdir/tests/fake-github.py" --dir "$work/fake" >"$work/fake.log" 2>&1 &
fpid=$!
for _ in $(seq 200); do [ -f "$work/fake/url" ] && break; sleep 0.1; done
[ -f "$work/fake/url" ] || { cat "$work/fake.log"; echo "FAIL: the fake GitHub did not start"; exit 1; }

CK_RUN_SUITE=github-fake GH_FAKE_DIR=$work/fake "$bin"
rc=$?

# `kiln github status` against the same fake: demand, runners, records.
if [ $rc -eq 0 ]; then
	url=$(cat "$work/fake/url")
	mkdir -p "$work/state/github/acme"
	printf '{"id": 7, "name": "kiln-0123456789ab", "vm": "gh-7", "created": 1, "job_id": 0}' \
		>"$work/state/github/acme/kiln-0123456789ab.json"
	cat >"$work/config.yml" <<EOC
state_dir: $work/state
github:
  - name: acme
    url: https://github.com/acme/widgets
    api_url: $url
    token: ghp_fake
    tls_ca_file: $work/fake/ca.pem
    labels: [self-hosted, kiln]
EOC
	"$top_builddir/kiln" -c "$work/config.yml" config check | grep -q "github acme: https://github.com/acme/widgets, token auth, 2 labels" ||
		{ echo "FAIL: config check does not show the github entry"; rc=1; }
	out=$("$top_builddir/kiln" -c "$work/config.yml" github status 2>&1) || { echo "$out"; echo "FAIL: github status"; rc=1; }
	for want in "github acme (https://github.com/acme/widgets), labels self-hosted,kiln" "queued jobs: " \
		"runners kiln-*: " "kiln-0123456789ab id 7 VM gh-7"; do
		case $out in *"$want"*) ;; *) echo "$out"; echo "FAIL: github status lacks '$want'"; rc=1 ;; esac
	done
	case $out in *ghp_fake*) echo "FAIL: the token was printed"; rc=1 ;; esac
	[ $rc -eq 0 ] && echo "PASS: kiln github status"

	# kiln doctor checks the credentials: fine, then a missing permission.
	out=$("$top_builddir/kiln" -c "$work/config.yml" doctor 2>&1)
	case $out in *"ok    github acme: runners readable"*"ok    github acme: workflow runs readable"*) ;;
	*) echo "$out"; echo "FAIL: doctor's github checks"; rc=1 ;; esac
	curl -sf --cacert "$work/fake/ca.pem" -X POST "$url/__faults" -d \
		'{"GET /repos/acme/widgets/actions/runners":[{"status":403,"body":{"message":"Resource not accessible by integration"}}]}' >/dev/null
	out=$("$top_builddir/kiln" -c "$work/config.yml" doctor 2>&1) && { echo "FAIL: doctor passed a 403"; rc=1; }
	case $out in *"FAIL  github acme: listing runners: "*"Resource not accessible by integration"*"fix: give the token the \"Administration: read and write\" permission"*) ;;
	*) echo "$out"; echo "FAIL: doctor's github 403"; rc=1 ;; esac
	[ $rc -eq 0 ] && echo "PASS: kiln doctor's github checks"

	# kiln run serves the entry: the record a killed kiln left is reaped
	# with the one of the status test (their runners deleted on GitHub), and /metrics has the kiln_github_*
	# series. No runner VM is started yet (docs/github.md).
	printf '{"id": 8, "name": "kiln-aaaaaaaaaaaa", "vm": "gh-8", "created": 1, "job_id": 0}' \
		>"$work/state/github/acme/kiln-aaaaaaaaaaaa.json"
	port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	printf '    webhook_secret: whsec\nlisten_address: 127.0.0.1:%s\n' "$port" >>"$work/config.yml"
	"$top_builddir/kiln" -c "$work/config.yml" run >"$work/run.log" 2>&1 &
	kpid=$!
	for _ in $(seq 100); do
		m=$(curl -s "http://127.0.0.1:$port/metrics")
		case $m in *'kiln_github_runners_deleted_total{entry="acme"} 2'*) break ;; esac
		sleep 0.1
	done
	# Webhooks: signed (a poll now), bad signature (401), replayed (400).
	body='{"action":"queued","workflow_job":{"id":77,"run_id":5,"labels":["self-hosted"],"status":"queued"},"repository":{"full_name":"acme/widgets"}}'
	sig=sha256=$(printf %s "$body" | openssl dgst -sha256 -hmac whsec | sed 's/^.* //')
	hook() { curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$port/github/webhook" \
		-H "X-GitHub-Event: workflow_job" -H "X-GitHub-Delivery: $1" -H "X-Hub-Signature-256: $2" --data-binary "$body"; }
	got="$(hook d-1 "$sig") $(hook d-2 sha256=0000) $(hook d-1 "$sig")"
	[ "$got" = "200 401 400" ] || { echo "FAIL: webhook statuses '$got', not '200 401 400'"; rc=1; }
	m2=$(curl -s "http://127.0.0.1:$port/metrics")
	case $m2 in *'kiln_github_webhooks_total 1'*) ;; *) echo "FAIL: no webhook counted"; rc=1 ;; esac
	kill -TERM $kpid
	wait $kpid || { echo "FAIL: kiln run exited $?"; rc=1; }
	case $m in *'kiln_github_queued_jobs{entry="acme"}'*'kiln_github_runners_deleted_total{entry="acme"} 2'*) ;;
	*) echo "$m"; echo "FAIL: kiln_github_* series"; rc=1 ;; esac
	[ ! -e "$work/state/github/acme/kiln-aaaaaaaaaaaa.json" ] || { echo "FAIL: the record stayed"; rc=1; }
	grep -q "ghp_fake" "$work/run.log" && { echo "FAIL: the token was logged"; rc=1; }
	[ $rc -eq 0 ] && echo "PASS: kiln run reaps a killed kiln's runners, takes signed webhooks" || cat "$work/run.log"
fi
[ $rc -eq 0 ] || { echo "--- fake.log"; tail -50 "$work/fake.log"; }
exit $rc
