#!/bin/bash
# A stand-in for GitHub's runner (tests/github.sh): `run.sh --jitconfig`
# with the JIT blob on standard input. It proves the blob arrived intact
# (its sha256, never the blob), "claims" a job from tests/fake-github.py
# (the .runner file inside the blob names the fake's serverUrl and the
# runner), and exits with the result the fake hands it.
set -eu
[ "${1:-}" = --jitconfig ] || { echo "stub run.sh: usage: run.sh --jitconfig < BLOB" >&2; exit 2; }
blob=$(cat)
echo "stub run.sh: user $(id -un), jitconfig sha256 $(printf '%s' "$blob" | sha256sum | cut -d' ' -f1)"
files=$(printf '%s' "$blob" | base64 -d)
runner=$(printf '%s' "$files" | sed -n 's/.*"\.runner": *"\([^"]*\)".*/\1/p' | base64 -d)
name=$(printf '%s' "$runner" | sed -n 's/.*"agentName": *"\([^"]*\)".*/\1/p')
url=$(printf '%s' "$runner" | sed -n 's/.*"serverUrl": *"\([^"]*\)".*/\1/p')
[ -n "$name" ] && [ -n "$url" ] || { echo "stub run.sh: no agentName or serverUrl in .runner" >&2; exit 3; }
# The fake's CA is not in the guest: the blob's sha256 above is what is checked.
reply=$(curl -sk --max-time 30 -X POST "$url/__claim" -d "{\"runner_name\": \"$name\"}") ||
	{ echo "stub run.sh: cannot reach $url" >&2; exit 4; }
echo "stub run.sh: claimed: $reply"
case $reply in *'"result": "success"'*) exit 0 ;; *) exit 1 ;; esac
