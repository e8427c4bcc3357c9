#!/bin/sh
# agent.sh: kiln-agent's job mode on the host, through `kiln-agent
# --serve-fd` and tests/agent-driver (which plays the host's side of
# docs/agent-protocol.md). Automake test, run with $SHELL: plain POSIX sh.
set -u

: "${top_builddir:?top_builddir is not set (run from make check)}"
agent=$top_builddir/kiln-agent
driver=$top_builddir/tests/agent-driver
if [ ! -x "$agent" ] || [ ! -x "$driver" ]; then
	echo "SKIP: build kiln-agent and tests/agent-driver first"
	exit 77
fi
command -v bash >/dev/null 2>&1 || { echo "SKIP: no bash"; exit 77; }

tmp=$(mktemp -d) || { echo "FAIL: mktemp"; exit 1; }
trap 'rm -rf "$tmp"' EXIT
# The agent writes its scripts under TMPDIR: keep them in ours, to check
# it cleans up.
TMPDIR=$tmp/agent-tmp
export TMPDIR
mkdir "$TMPDIR"
esc=$(printf '\033')
KILN_AGENT_TEST_LEAK=leaked
export KILN_AGENT_TEST_LEAK
fail=0

ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fail=1; }

# job NAME [DRIVER-OPTION...] < JSON: run one job; the log is $tmp/NAME.out,
# the frame timings $tmp/NAME.ev, the driver's status $tmp/NAME.rc.
job() {
	name=$1
	shift
	cat >"$tmp/$name.json"
	"$driver" -e "$tmp/$name.ev" "$@" "$agent" "$tmp/$name.json" >"$tmp/$name.out" 2>"$tmp/$name.err"
	echo $? >"$tmp/$name.rc"
	if [ "$(cat "$tmp/$name.rc")" != 0 ]; then
		bad "$name: the driver failed: $(cat "$tmp/$name.err")"
	fi
}

show() {
	echo "--- $1 log:"
	cat "$tmp/$1.out"
	echo "--- $1 events:"
	cat "$tmp/$1.ev"
	echo "---"
}

# has NAME TEXT: the log of NAME holds the fixed string TEXT.
has() {
	if grep -qF -- "$2" "$tmp/$1.out"; then ok "$1: has '$2'"; else bad "$1: no '$2'"; show "$1"; fi
}

lacks() {
	if grep -qF -- "$2" "$tmp/$1.out"; then bad "$1: unexpected '$2'"; show "$1"; else ok "$1: lacks '$2'"; fi
}

# last NAME LINE: the log's last line is exactly LINE.
last() {
	got=$(tail -n 1 "$tmp/$1.out")
	if [ "$got" = "$2" ]; then ok "$1: ends with '$2'"; else bad "$1: ends with '$got', want '$2'"; show "$1"; fi
}

# last_match NAME ERE: the last line matches the extended regex.
last_match() {
	got=$(tail -n 1 "$tmp/$1.out")
	if printf '%s\n' "$got" | grep -qE -- "$2"; then ok "$1: ends with '$got'"; else bad "$1: ends with '$got', want /$2/"; show "$1"; fi
}

# at NAME FRAME: ms (since JOB was sent) of FRAME's first event.
at() {
	awk -v f="$2" '$2 == f { print $1; exit }' "$tmp/$1.ev"
}

# within NAME FRAME MS: FRAME came at most MS after the JOB.
within() {
	t=$(at "$1" "$2")
	if [ -n "$t" ] && [ "$t" -le "$3" ]; then ok "$1: $2 after ${t} ms (<= $3)"; else bad "$1: $2 after '${t}' ms, want <= $3"; show "$1"; fi
}

# The plain job: echo lines, environment, file variables, workdir, stdin.
work=$tmp/builds/group/project
job basic <<EOF
{
  "workdir": "$work",
  "env": [ ["CI", "true"], ["FOO", "first"], ["QUOTED", "it's \"q\""], ["FOO", "later"] ],
  "files": [ { "path": "$tmp/builds/group/project.tmp/MY_FILE", "content": "file-secret\n", "mode": 384 } ],
  "steps": [
    { "name": "script", "timeout": 10, "when": "on_success", "script": [
      "echo hello",
      "echo \"FOO=\$FOO CI=\$CI QUOTED=\$QUOTED HOME=\$HOME\"",
      "echo \"leak=\${KILN_AGENT_TEST_LEAK:-none}\"",
      "cat \"$tmp/builds/group/project.tmp/MY_FILE\"",
      "echo \"cwd=\$(pwd)\"",
      "cat; echo stdin-done",
      "if true; then\n  echo multi-ok\nfi"
    ] },
    { "name": "after_script", "timeout": 10, "when": "always", "script": [ "echo \"status=\$CI_JOB_STATUS\"" ] }
  ]
}
EOF
has basic "${esc}[32;1m\$ echo hello${esc}[0;m"
has basic "hello"
has basic "FOO=later CI=true QUOTED=it's \"q\" HOME=/root"
has basic "leak=none"
has basic "file-secret"
has basic "cwd=$work"
has basic "stdin-done"
has basic "${esc}[32;1m\$ if true; then # collapsed multi-line command${esc}[0;m"
has basic "multi-ok"
has basic "status=success"
last basic "EXIT 0 -"
mode=$(stat -c %a "$tmp/builds/group/project.tmp/MY_FILE" 2>/dev/null)
if [ "$mode" = 600 ]; then ok "basic: file mode 600"; else bad "basic: file mode '$mode', want 600"; fi
left=$(ls -A "$TMPDIR")
if [ -z "$left" ]; then ok "basic: scripts cleaned up"; else bad "basic: left in TMPDIR: $left"; fi
if grep -q '^[0-9]* STEP {"step":"script","exit_code":0}' "$tmp/basic.ev" &&
	grep -q '^[0-9]* STEP {"step":"after_script","exit_code":0}' "$tmp/basic.ev"; then
	ok "basic: STEP frames"
else
	bad "basic: STEP frames"
	show basic
fi

# A failing command: its code, the rest skipped, on_failure and after_script run.
job failing <<EOF
{
  "workdir": "$work",
  "steps": [
    { "name": "script", "timeout": 10, "script": [ "echo before", "exit 7", "echo not-reached" ] },
    { "name": "more", "timeout": 10, "script": [ "echo skipped-step" ] },
    { "name": "on_fail", "timeout": 10, "when": "on_failure", "script": [ "echo on-failure-ran" ] },
    { "name": "after_script", "timeout": 10, "when": "always", "script": [ "echo \"status=\$CI_JOB_STATUS\"" ] }
  ]
}
EOF
has failing "before"
lacks failing "not-reached"
lacks failing "skipped-step"
has failing "on-failure-ran"
has failing "status=failed"
last failing "EXIT 7 script_failure"

# A pipeline fails as a whole (pipefail).
job pipefail <<EOF
{ "workdir": "$work", "steps": [ { "name": "script", "timeout": 10, "script": [ "false | true", "echo not-reached" ] } ] }
EOF
lacks pipefail "not-reached"
last pipefail "EXIT 1 script_failure"

# A step's timeout: SIGTERM ends it at once, after_script still runs.
job timeout <<EOF
{
  "workdir": "$work",
  "steps": [
    { "name": "script", "timeout": 1, "script": [ "sleep 30" ] },
    { "name": "after_script", "timeout": 10, "when": "always", "script": [ "echo \"status=\$CI_JOB_STATUS\"" ] }
  ]
}
EOF
last_match timeout "^EXIT [0-9]+ job_execution_timeout\$"
within timeout EXIT 2500
has timeout "status=failed"

# Output is forwarded as it comes, not when the step ends.
job stream <<EOF
{ "workdir": "$work", "steps": [ { "name": "script", "timeout": 10, "script": [ "echo first", "sleep 2", "echo second" ] } ] }
EOF
first=$(at stream OUTPUT)
step=$(at stream STEP)
if [ -n "$first" ] && [ -n "$step" ] && [ $((step - first)) -ge 1500 ]; then
	ok "stream: first OUTPUT at $first ms, STEP at $step ms"
else
	bad "stream: first OUTPUT at '$first' ms, STEP at '$step' ms: want 1500 ms apart"
	show stream
fi
last stream "EXIT 0 -"

# A background process holding the output pipe does not hold up the step.
job background <<EOF
{ "workdir": "$work", "steps": [ { "name": "script", "timeout": 20, "script": [ "sleep 10 &", "echo bg-started" ] } ] }
EOF
has background "bg-started"
within background STEP 1500
last background "EXIT 0 -"

# Graceful cancel: the step gets SIGTERM, after_script runs with "canceled".
job cancel_graceful -g -c cancel-me <<EOF
{
  "workdir": "$work",
  "steps": [
    { "name": "script", "timeout": 60, "script": [ "echo cancel-me", "sleep 30", "echo not-reached" ] },
    { "name": "after_script", "timeout": 10, "when": "always", "script": [ "echo \"status=\$CI_JOB_STATUS\"" ] }
  ]
}
EOF
lacks cancel_graceful "not-reached"
has cancel_graceful "status=canceled"
last_match cancel_graceful "^EXIT [0-9]+ canceled\$"
within cancel_graceful EXIT 5000

# Hard cancel: the step ends, nothing more runs.
job cancel_hard -c cancel-me <<EOF
{
  "workdir": "$work",
  "steps": [
    { "name": "script", "timeout": 60, "script": [ "echo cancel-me", "sleep 30", "echo not-reached" ] },
    { "name": "after_script", "timeout": 10, "when": "always", "script": [ "echo \"status=\$CI_JOB_STATUS\"" ] }
  ]
}
EOF
lacks cancel_hard "not-reached"
lacks cancel_hard "status="
last_match cancel_hard "^EXIT [0-9]+ canceled\$"
within cancel_hard EXIT 5000

# A step that ignores SIGTERM gets SIGKILL 1 s into a hard cancel.
job cancel_stubborn -c cancel-me <<EOF
{ "workdir": "$work", "steps": [ { "name": "script", "timeout": 60, "script": [ "trap '' TERM", "echo cancel-me", "sleep 30" ] } ] }
EOF
last cancel_stubborn "EXIT 137 canceled"
within cancel_stubborn EXIT 2500

# The host stream closing is a hard cancel, and the agent ends.
job host_gone -C close-me <<EOF
{
  "workdir": "$work",
  "steps": [
    { "name": "script", "timeout": 60, "script": [ "echo close-me", "sleep 30", "echo not-reached" ] },
    { "name": "after_script", "timeout": 10, "when": "always", "script": [ "echo after-ran" ] }
  ]
}
EOF
lacks host_gone "not-reached"
lacks host_gone "after-ran"
within host_gone AGENT-EXIT 5000

# PID 1's signals, tini-style: SIGTERM goes on to the step's group (the
# step fails, the job goes on); SIGINT (ctrl-alt-del) is a graceful cancel.
job sigterm -I term-me <<EOF
{
  "workdir": "$work",
  "steps": [
    { "name": "script", "timeout": 60, "script": [ "echo term-me", "sleep 30", "echo not-reached" ] },
    { "name": "after_script", "timeout": 10, "when": "always", "script": [ "echo \"status=\$CI_JOB_STATUS\"" ] }
  ]
}
EOF
lacks sigterm "not-reached"
has sigterm "status=failed"
last sigterm "EXIT 143 script_failure"
within sigterm EXIT 5000

job sigint -i int-me <<EOF
{
  "workdir": "$work",
  "steps": [
    { "name": "script", "timeout": 60, "script": [ "echo int-me", "sleep 30", "echo not-reached" ] },
    { "name": "after_script", "timeout": 10, "when": "always", "script": [ "echo \"status=\$CI_JOB_STATUS\"" ] }
  ]
}
EOF
lacks sigint "not-reached"
has sigint "status=canceled"
last_match sigint "^EXIT [0-9]+ canceled\$"
within sigint EXIT 5000

# Bad specs: one line naming the problem, then EXIT, nothing run.
printf 'this is not json' >"$tmp/notjson.in"
job notjson <"$tmp/notjson.in"
has notjson "kiln-agent: bad job: job: not valid JSON"
last notjson "EXIT 1 runner_system_failure"
if [ "$(grep -c '' "$tmp/notjson.out")" = 2 ]; then ok "notjson: one line"; else bad "notjson: not one line"; show notjson; fi

job nosteps <<EOF
{ "workdir": "$work" }
EOF
has nosteps "kiln-agent: bad job: steps: missing"
last nosteps "EXIT 1 runner_system_failure"

job badfield <<EOF
{ "workdir": "$work", "steps": [ { "name": "script", "script": [ "echo not-run" ] }, { "name": "x", "script": [ 1 ] } ] }
EOF
has badfield "kiln-agent: bad job: steps[1].script[0]: must be a string"
lacks badfield "not-run"
last badfield "EXIT 1 runner_system_failure"

# A job's service (issue #16): "mode": "service" execs argv (quotes kept)
# with the env; no steps needed; hosts is read (the host's /etc/hosts is
# left alone: the agent is not PID 1 here).
job service <<EOF
{ "mode": "service", "argv": [ "sh", "-c", "echo \"svc \$1 \$SVC_VAR\"; exit 3", "sh", "it's" ],
  "env": [ ["SVC_VAR", "from-env"] ], "hosts": "10.0.0.3 postgres db\n" }
EOF
has service "svc it's from-env"
last service "EXIT 3 script_failure"
if grep -q 'postgres db' /etc/hosts; then bad "service: the host's /etc/hosts was written"; else ok "service: host /etc/hosts untouched"; fi

job noargv <<EOF
{ "mode": "service", "argv": [] }
EOF
has noargv "kiln-agent: bad job: argv: must not be empty"
last noargv "EXIT 1 runner_system_failure"

# An exec step (issue #17: GitHub's run.sh): argv without a shell, its
# stdin from the spec (never a file), as the named user with HOME, USER
# and LOGNAME from passwd. "$0" stays literal: no shell expands argv.
exec_user=nobody
if [ "$(id -u)" != 0 ] || ! getent passwd nobody >/dev/null; then exec_user=""; fi
job execstep <<EOF
{ "mode": "exec", "workdir": "$work", "argv": [ "/bin/sh", "-c", "echo \"argv \$1 \$0\"; echo \"as \$(id -un) \$USER \$LOGNAME home \$HOME in \$(pwd)\"; echo \"stdin \$(cat)\"; exit 4", "\$0", "it's" ],
  ${exec_user:+"\"user\": \"$exec_user\","} "stdin": "blob-on-stdin\n", "env": [ ["EXEC_VAR", "v"] ] }
EOF
has execstep "argv it's \$0"
has execstep "stdin blob-on-stdin"
has execstep "in $work"
[ -z "$exec_user" ] || has execstep "as nobody nobody nobody home $(getent passwd nobody | cut -d: -f6)"
last execstep "EXIT 4 script_failure"
if grep -rqs blob-on-stdin "$tmp"/*.out.d "$work" 2>/dev/null; then bad "execstep: a file holds the stdin"; else ok "execstep: no file in the workdir holds the stdin"; fi

job execnoprog <<EOF
{ "mode": "exec", "workdir": "$work", "argv": [ "no-such-program-kiln" ] }
EOF
has execnoprog "kiln-agent: cannot run no-such-program-kiln: No such file or directory"
last execnoprog "EXIT 127 script_failure"

job execbaduser <<EOF
{ "mode": "exec", "workdir": "$work", "argv": [ "true" ], "user": "x:0:0::/:/bin/sh\nroot2" }
EOF
has execbaduser "kiln-agent: bad job: user: must be"
last execbaduser "EXIT 1 runner_system_failure"

job execnouser <<EOF
{ "mode": "exec", "workdir": "$work", "argv": [ "true" ], "user": "kiln-no-such-user" }
EOF
has execnouser "kiln-agent: exec: user kiln-no-such-user: not in the image's /etc/passwd"

big=$(head -c 70000 /dev/zero | tr '\0' a)
job execbigstdin <<EOF
{ "mode": "exec", "workdir": "$work", "argv": [ "true" ], "stdin": "$big" }
EOF
has execbigstdin "kiln-agent: bad job: stdin: longer than 64 KiB"

job badmode <<EOF
{ "mode": "daemon", "workdir": "$work", "steps": [ { "name": "script", "script": [ "echo not-run" ] } ] }
EOF
has badmode "kiln-agent: bad job: mode: must be"
lacks badmode "not-run"

exit $fail
