#!/bin/bash
# A stand-in for GitHub's runner (tests/github.sh): `run.sh --jitconfig`
# with the JIT blob on standard input. It proves the blob arrived intact
# (its sha256, never the blob), says it started, then waits for a job the
# way the runner's long poll to GitHub's broker does (tests/fake-github.py,
# whose base URL and runner name the .runner file inside the blob holds):
# a job it gets runs for the fake's stub_sleep seconds with heartbeats,
# then completes with the fake's stub_result, which is run.sh's exit
# status; a runner deleted while it waits exits 0, as the real one does.
set -eu
t0=${EPOCHREALTIME/[.,]/} # "run.sh started" (us) for the bench: the fake is told how long ago
echo "stub run.sh: started" # its arrival in kiln's log: "run.sh started" for the bench
[ "${1:-}" = --jitconfig ] || { echo "stub run.sh: usage: run.sh --jitconfig [BLOB] (else on stdin)" >&2; exit 2; }
# GitHub's own run.sh takes the blob as an argument: so does this one when
# the github-runner image's wrapper (images/recipes/github-runner) runs it.
if [ $# -ge 2 ]; then blob=$2; else blob=$(cat); fi
echo "stub run.sh: user $(id -un), jitconfig sha256 $(printf '%s' "$blob" | sha256sum | cut -d' ' -f1)"
echo "stub run.sh: in $PWD, home $HOME, groups $(id -Gn)$(sudo -n true 2>/dev/null && echo ', sudo works')"
files=$(printf '%s' "$blob" | base64 -d)
runner=$(printf '%s' "$files" | sed -n 's/.*"\.runner": *"\([^"]*\)".*/\1/p' | base64 -d)
name=$(printf '%s' "$runner" | sed -n 's/.*"agentName": *"\([^"]*\)".*/\1/p')
url=$(printf '%s' "$runner" | sed -n 's/.*"serverUrl": *"\([^"]*\)".*/\1/p')
[ -n "$name" ] && [ -n "$url" ] || { echo "stub run.sh: no agentName or serverUrl in .runner" >&2; exit 3; }
# The fake's CA is not in the guest: the blob's sha256 above is what is checked.
fake() { curl -sk --max-time 40 -X POST "$url/$1" -d "{\"runner_name\": \"$name\"${2:-}}"; }
fake __started ", \"elapsed_us\": $((${EPOCHREALTIME/[.,]/} - t0))" >/dev/null || { echo "stub run.sh: cannot reach $url" >&2; exit 4; }
while :; do
	reply=$(fake __claim ', "wait": 30') || { echo "stub run.sh: cannot reach $url" >&2; exit 4; }
	case $reply in
	*'"job"'*) break ;;
	*'"gone"'*) echo "stub run.sh: runner deleted while waiting for a job"; exit 0 ;;
	esac
done
echo "stub run.sh: claimed: $reply"
secs=$(printf '%s' "$reply" | sed -n 's/.*"sleep": *\([0-9]*\).*/\1/p')
for _ in $(seq $((${secs:-0} * 2))); do
	fake __heartbeat >/dev/null || true
	sleep 0.5
done
fake __complete >/dev/null || true
case $reply in *'"result": "success"'*) exit 0 ;; *) exit 1 ;; esac
