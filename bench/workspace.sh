#!/bin/sh
# Benchmark of the job workspace: usage bench/workspace.sh [PATH-TO-ws-bench]
# (make bench-workspace builds ws-bench and runs this).
#
# Generates a repository with git fast-import (COMMITS commits, default
# 10000, over a tree of FILES files, default 300, in 20 folders: 1-4 files
# change per commit, files are added and removed now and then), packs it as
# a server would (git repack -adf), then measures, RUNS times each (default
# 3), the median:
#   git clone       git clone --no-local file:// (a real pack transfer) + checkout
#   libgit2 cold    ws_prepare with an empty state folder: mirror + checkout +
#                   ext4 image. Over file:// the source is local, so the new
#                   mirror hard-links its object files (no pack transfer).
#   warm            ws_prepare with the mirror in place after one new commit
#                   was pushed: sync + checkout + image; the checkout updates
#                   the repository's kept checkout in place (workspace.h)
#   warm, fresh     the same with --fresh: a new checkout folder each time, as
#                   before kept checkouts (the previous version)
# both over file:// and, when git daemon can run on 127.0.0.1, over git://
# (libgit2's smart-protocol fetch: a real pack transfer, as from GitLab).
# The ratios warm/git-clone and libgit2-cold/git-clone come last. Everything
# happens under $TMPDIR (default /tmp): its file system decides much of the
# checkout time (creating files), for git clone and ws_prepare alike.
set -eu

BIN=${1:-./bench/ws-bench}
RUNS=${RUNS:-3}
COMMITS=${COMMITS:-10000}
FILES=${FILES:-300}
case $BIN in /*) ;; *) BIN=$(pwd)/$BIN ;; esac
[ -x "$BIN" ] || { echo "workspace.sh: $BIN not found (make bench/ws-bench)" >&2; exit 1; }

W=$(mktemp -d "${TMPDIR:-/tmp}/kiln-ws-bench-XXXXXX")
DAEMON=
cleanup() {
	[ -n "$DAEMON" ] && kill "$DAEMON" 2>/dev/null
	rm -rf "$W"
}
trap cleanup EXIT INT TERM

export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@kiln.invalid
export GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@kiln.invalid
export GIT_CONFIG_NOSYSTEM=1 HOME=$W

ms() { date +%s%3N; }
median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# ---- the repository --------------------------------------------------------
cat > "$W/gen.awk" <<'EOF'
function rnd(n) { return int(rand() * n) }
function line(f, i) { return sprintf("%s line %d: value %d of item %d // %x", names[f], i, rnd(100000), rnd(1000), rnd(2^30)) }
function content(f,    s, i) { s = ""; for (i = 1; i <= nl[f]; i++) s = s L[f, i] "\n"; return s }
function emit(f,    c) { c = content(f); printf "M 100644 inline %s\ndata %d\n%s\n", names[f], length(c), c }
BEGIN {
	srand(42); t = 1600000000
	for (f = 0; f < NF0; f++) {
		names[f] = sprintf("src/mod%02d/file%03d.c", f % 20, f); nl[f] = 20 + rnd(120)
		for (i = 1; i <= nl[f]; i++) L[f, i] = line(f, i)
	}
	nfiles = NF0
	for (c = 1; c <= NC; c++) {
		msg = sprintf("commit %d: change things", c)
		printf "commit refs/heads/main\nmark :%d\n", c
		printf "author Dev <dev@example.com> %d +0000\ncommitter Dev <dev@example.com> %d +0000\n", t + c * 60, t + c * 60
		printf "data %d\n%s\n", length(msg), msg
		if (c > 1) printf "from :%d\n", c - 1
		if (c == 1) { for (f = 0; f < nfiles; f++) emit(f); continue }
		k = 1 + rnd(4)
		for (j = 0; j < k; j++) {
			f = rnd(nfiles)
			if (names[f] == "") continue
			if (rnd(10) < 3 && nl[f] < 400) { nl[f]++; L[f, nl[f]] = line(f, nl[f]) }
			else L[f, 1 + rnd(nl[f])] = line(f, c)
			emit(f)
		}
		if (rnd(100) == 0) { f = nfiles++; names[f] = sprintf("src/mod%02d/new%05d.c", f % 20, c); nl[f] = 10 + rnd(50); for (i = 1; i <= nl[f]; i++) L[f, i] = line(f, i); emit(f) }
		if (rnd(200) == 0) { f = rnd(nfiles); if (names[f] != "") { printf "D %s\n", names[f]; names[f] = "" } }
		if (c % 1000 == 0) printf "reset refs/tags/v%d\nfrom :%d\n\n", c / 1000, c
	}
}
EOF
t=$(ms)
git init -q --bare "$W/src.git"
LC_ALL=C awk -v NC="$COMMITS" -v NF0="$FILES" -f "$W/gen.awk" | git -C "$W/src.git" fast-import --quiet
git -C "$W/src.git" symbolic-ref HEAD refs/heads/main
git -C "$W/src.git" repack -a -d -f -q
git -C "$W/src.git" config uploadpack.allowAnySHA1InWant true
NFILES=$(git -C "$W/src.git" ls-tree -r main | wc -l)
PACK=$(du -sk "$W/src.git/objects/pack" | cut -f1)
echo "generated $COMMITS commits, $NFILES files at the tip, pack $((PACK / 1024)) MiB in $(( $(ms) - t )) ms" >&2
URL=file://$W/src.git

# One new commit, pushed: changes one file.
git clone -q "$URL" "$W/dev"
push_one() {
	(cd "$W/dev" && echo "change $1" >> src/mod00/file000.c && git commit -q -am "bench $1" && git push -q origin main)
	git -C "$W/src.git" rev-parse main
}

# ws-bench key=value output -> the value of one key.
field() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }

# ---- git clone -------------------------------------------------------------
GIT_RUNS=
for i in $(seq "$RUNS"); do
	rm -rf "$W/gc"
	t=$(ms)
	git clone -q --no-local "$URL" "$W/gc"
	GIT_RUNS="$GIT_RUNS $(( $(ms) - t ))"
done
rm -rf "$W/gc"

# ---- ws_prepare: cold, then warm, then warm with a fresh checkout ---------
# prepare URL [ARG]: one ws_prepare of main's tip into the state folder of
# the current case; its key=value line in $out.
prepare() {
	out=$("$BIN" --state "$W/state-$name" --url "$1" --sha "$(git -C "$W/src.git" rev-parse main)" \
		--image "$W/ws.img" ${2:+"$2"})
}
# collect KIND: append $out's total and phases to KIND's lists.
collect() {
	eval "$1=\"\$$1 $(field "$out" total_ms)\" $1_m=\"\$$1_m $(field "$out" mirror_ms)\"" \
		"$1_c=\"\$$1_c $(field "$out" checkout_ms)\" $1_i=\"\$$1_i $(field "$out" image_ms)\""
}
# run_cases NAME URL: sets COLD_<NAME>, WARM_<NAME>, FRESH_<NAME> (run lists)
# and PH_{COLD,WARM,FRESH}_<NAME> (median phases).
run_cases() {
	name=$1 url=$2
	for k in cold warm fresh; do eval "$k= ${k}_m= ${k}_c= ${k}_i="; done
	for i in $(seq "$RUNS"); do
		rm -rf "$W/state-$name"
		prepare "$url"
		[ "$(field "$out" cloned)" = 1 ] || { echo "workspace.sh: cold run did not clone" >&2; exit 1; }
		collect cold
	done
	IMG=$(field "$out" image_bytes)
	for i in $(seq "$RUNS"); do
		push_one "$name-$i" >/dev/null
		prepare "$url"
		[ "$(field "$out" cloned)" = 0 ] || { echo "workspace.sh: warm run cloned" >&2; exit 1; }
		[ "$i" = 1 ] || [ "$(field "$out" reused)" = 1 ] || { echo "workspace.sh: warm run did not reuse the checkout" >&2; exit 1; }
		collect warm
	done
	for i in $(seq "$RUNS"); do
		push_one "$name-fresh-$i" >/dev/null
		prepare "$url" --fresh
		[ "$(field "$out" reused)" = 0 ] || { echo "workspace.sh: --fresh run reused the checkout" >&2; exit 1; }
		collect fresh
	done
	eval "COLD_$name=\"$cold\" WARM_$name=\"$warm\" FRESH_$name=\"$fresh\""
	for k in cold warm fresh; do
		eval "PH_$(echo $k | tr a-z A-Z)_$name=\"\$(echo \"\$${k}_m\" | median) / \$(echo \"\$${k}_c\" | median) / \$(echo \"\$${k}_i\" | median)\""
	done
}

run_cases file "$URL"

HAVE_DAEMON=no
PORT=$(( 20000 + $$ % 20000 ))
GIT_DAEMON="$(git --exec-path)/git-daemon"
if [ -x "$GIT_DAEMON" ]; then
	"$GIT_DAEMON" --listen=127.0.0.1 --port="$PORT" --export-all --reuseaddr --base-path="$W" "$W" \
		>/dev/null 2>&1 &
	DAEMON=$!
	for i in $(seq 50); do
		git ls-remote "git://127.0.0.1:$PORT/src.git" >/dev/null 2>&1 && { HAVE_DAEMON=yes; break; }
		sleep 0.1
	done
fi
if [ $HAVE_DAEMON = yes ]; then
	run_cases daemon "git://127.0.0.1:$PORT/src.git"
fi

# ---- report ----------------------------------------------------------------
G=$(echo "$GIT_RUNS" | median)
CF=$(echo "$COLD_file" | median)
WF=$(echo "$WARM_file" | median)
echo
echo "kiln workspace benchmark: $COMMITS commits, $NFILES files, pack $((PACK / 1024)) MiB,"
echo "image $((IMG >> 20)) MiB (sparse); median of $RUNS runs, ms; phases: mirror / checkout / image"
printf '%-44s %8s   %-18s %s\n' case median phases runs
printf '%-44s %8s   %-18s %s\n' "git clone --no-local file://" "$G" "" "$GIT_RUNS"
printf '%-44s %8s   %-18s %s\n' "libgit2 cold ws_prepare file://" "$CF" "$PH_COLD_file" "$COLD_file"
printf '%-44s %8s   %-18s %s\n' "warm ws_prepare file:// (1 new commit)" "$WF" "$PH_WARM_file" "$WARM_file"
printf '%-44s %8s   %-18s %s\n' "  the same, fresh checkout (before)" "$(echo "$FRESH_file" | median)" \
	"$PH_FRESH_file" "$FRESH_file"
if [ $HAVE_DAEMON = yes ]; then
	printf '%-44s %8s   %-18s %s\n' "libgit2 cold ws_prepare git://" "$(echo "$COLD_daemon" | median)" \
		"$PH_COLD_daemon" "$COLD_daemon"
	printf '%-44s %8s   %-18s %s\n' "warm ws_prepare git:// (1 new commit)" "$(echo "$WARM_daemon" | median)" \
		"$PH_WARM_daemon" "$WARM_daemon"
	printf '%-44s %8s   %-18s %s\n' "  the same, fresh checkout (before)" "$(echo "$FRESH_daemon" | median)" \
		"$PH_FRESH_daemon" "$FRESH_daemon"
fi
echo
DW= DC=
if [ $HAVE_DAEMON = yes ]; then
	DW=$(echo "$WARM_daemon" | median)
	DC=$(echo "$COLD_daemon" | median)
fi
FF=$(echo "$FRESH_file" | median)
DF=
[ $HAVE_DAEMON = yes ] && DF=$(echo "$FRESH_daemon" | median)
awk -v w="$WF" -v f="$FF" -v dw="$DW" -v df="$DF" 'BEGIN {
	printf "ratio warm kept/fresh checkout, file://:            %.3f\n", w / f
	if (df != "")
		printf "ratio warm kept/fresh checkout, git://:             %.3f\n", dw / df
}'
awk -v w="$WF" -v c="$CF" -v g="$G" -v dwm="$DW" -v dcm="$DC" 'BEGIN {
	printf "ratio warm/git-clone, file://:                      %.3f (target <= 0.200: %s)\n", w / g, w / g <= 0.2 ? "met" : "NOT met"
	if (dwm != "")
		printf "ratio warm/git-clone, git://:                       %.3f (target <= 0.200: %s)\n", dwm / g, dwm / g <= 0.2 ? "met" : "NOT met"
	printf "ratio libgit2-cold/git-clone, file:// (hard links): %.3f\n", c / g
	if (dcm != "")
		printf "ratio libgit2-cold/git-clone, git:// (transfer):    %.3f\n", dcm / g
}'
