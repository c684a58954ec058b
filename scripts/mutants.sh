#!/usr/bin/env bash
# Mutation testing of the code that keeps the product's promises (counts, uniqueness,
# tenant isolation, secrets, restart): cargo-mutants changes one thing at a time (a function
# body replaced by a default, an operator flipped, a condition negated) and runs the
# package's tests; a mutant the tests do not catch ("missed") is code no test really checks.
#
#   bash scripts/mutants.sh                          # every named scope, one after the other
#   bash scripts/mutants.sh engine                   # one named scope (names below)
#   bash scripts/mutants.sh crates/iothubgdr-import/src/housekeeping.rs   # one file
#   bash scripts/mutants.sh 'crates/iothubgdr-store-sqlite/src/*.rs'       # a glob
#   bash scripts/mutants.sh crates/iothubgdr-import/src/schedule.rs,crates/iothubgdr-import/src/housekeeping.rs
#                                                    # files of one crate, one scope
#   bash scripts/mutants.sh crates/iothubgdr-auth    # a whole crate
#   bash scripts/mutants.sh --re import_cancel store-sqlite   # only matching mutants
#   bash scripts/mutants.sh --timeout 120 --iterate engine    # retry what was not caught
#   bash scripts/mutants.sh --list engine            # list the mutants, test nothing
#
# Options (before or between scopes):
#   --timeout SECS     per-mutant test timeout (default: cargo-mutants derives it from the
#                      unmutated run, 5 times its duration)
#   --jobs N           mutants built and tested at once (default 1; each job needs its own
#                      build, so more than 1 only helps on a machine with cores to spare)
#   --re REGEX         only mutants whose name matches; --exclude-re REGEX: leave these out
#   --iterate          skip mutants the previous run of the same scope caught or found
#                      unviable (the "after" run once tests were added)
#   --test-arg ARG     passed to `cargo test` (repeatable; default --tests: unit and
#                      integration tests, no doc tests), e.g. --test-arg=--test=engine
#   --cargo-arg ARG    passed to every cargo call, the build of each mutant too (repeatable):
#                      name the test targets here (--cargo-arg=--test=engine) so that each
#                      mutant builds only those, not every test binary of the package; then
#                      --test-arg carries only what follows `--` (--test-arg=-- --test-arg=--skip ...)
#   --test-package PKG run the tests of PKG instead of the mutated package's (repeatable):
#                      the shared store crate's planning is tested by the backends'
#                      conformance suites, e.g. --test-package=iothubgdr-store-sqlite
#                      (cargo-mutants' own baseline would run the mutated package's tests
#                      with these --test-args; the script runs the baseline itself instead)
#   --nice N           niceness of the whole run (default 19: the lowest priority)
#   --no-sync          test the copy of the sources the last run made, not the working tree
#   --list             list the mutants only
#
# Each run builds in a target dir of its own, never the developer's (cargo-mutants would
# otherwise rebuild the workspace crates over the developer's artifacts, and two runs or a
# run and a developer build would collide): $MUTANTS_DIR, by default
# ${CARGO_TARGET_DIR:-target}/mutants, holds
#   src/        a copy of the working tree (tracked and untracked-not-ignored files, with
#               their modification times, so unchanged crates are not rebuilt); mutants are
#               applied there, in place, and the developer's tree is never touched;
#   target/     the mutants' CARGO_TARGET_DIR, seeded once from the developer's debug
#               dependencies (MUTANTS_SEED=0: build from scratch; MUTANTS_SEED=link:
#               hard links instead of a 9 GB copy);
#   <scope>/mutants.out/  caught.txt, missed.txt, timeout.txt, unviable.txt, outcomes.json.
# The counts of every scope are printed at the end.
#
# Needs `cargo install --locked cargo-mutants`. It is slow (a build and the package's tests
# per mutant): on a small machine run one scope or one file at a time. With
# IOTHUBGDR_TEST_POSTGRES_URL set the store and engine tests also run on PostgreSQL.
# Each PostgreSQL test makes a database that is never dropped (31 mutants of the
# conformance suite: 15 GB): run store-postgres a file at a time and restart the throwaway
# cluster between runs.
# The older environment variables still work: MUTANTS_JOBS, MUTANTS_TIMEOUT, MUTANTS_NICE,
# MUTANTS_RE, MUTANTS_LIST.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# name  package  file glob(s), comma-separated (empty: the whole package)
named_scopes=(
    "auth-token      iothubgdr-auth           crates/iothubgdr-auth/src/token.rs"
    "auth-secret     iothubgdr-auth           crates/iothubgdr-auth/src/secret.rs"
    "store-sqlite    iothubgdr-store-sqlite   crates/iothubgdr-store-sqlite/src/*.rs,crates/iothubgdr-store-sqlite/src/**/*.rs"
    "store-postgres  iothubgdr-store-postgres crates/iothubgdr-store-postgres/src/*.rs,crates/iothubgdr-store-postgres/src/**/*.rs"
    "engine          iothubgdr-import         crates/iothubgdr-import/src/engine.rs,crates/iothubgdr-import/src/schedule.rs,crates/iothubgdr-import/src/housekeeping.rs,crates/iothubgdr-import/src/pipeline/*.rs"
)

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}

jobs="${MUTANTS_JOBS:-1}"
timeout="${MUTANTS_TIMEOUT:-}"
nice_level="${MUTANTS_NICE:-19}"
re="${MUTANTS_RE:-}"
exclude_re=""
list="${MUTANTS_LIST:-}"
iterate=""
no_sync=""
test_args=()
test_packages=()
cargo_args=()
wanted=()
while [ $# -gt 0 ]; do
    case "$1" in
        --timeout) timeout="$2"; shift 2 ;;
        --timeout=*) timeout="${1#*=}"; shift ;;
        --jobs | -j) jobs="$2"; shift 2 ;;
        --jobs=*) jobs="${1#*=}"; shift ;;
        --re) re="$2"; shift 2 ;;
        --re=*) re="${1#*=}"; shift ;;
        --exclude-re) exclude_re="$2"; shift 2 ;;
        --exclude-re=*) exclude_re="${1#*=}"; shift ;;
        --test-arg) test_args+=("$2"); shift 2 ;;
        --test-arg=*) test_args+=("${1#*=}"); shift ;;
        --cargo-arg) cargo_args+=("$2"); shift 2 ;;
        --cargo-arg=*) cargo_args+=("${1#*=}"); shift ;;
        --test-package) test_packages+=("$2"); shift 2 ;;
        --test-package=*) test_packages+=("${1#*=}"); shift ;;
        --nice) nice_level="$2"; shift 2 ;;
        --nice=*) nice_level="${1#*=}"; shift ;;
        --iterate) iterate=1; shift ;;
        --no-sync) no_sync=1; shift ;;
        --list) list=1; shift ;;
        -h | --help) usage ;;
        -*) echo "unknown option $1" >&2; usage ;;
        *) wanted+=("$1"); shift ;;
    esac
done

if ! cargo mutants --version >/dev/null 2>&1; then
    echo "cargo-mutants is missing: cargo install --locked cargo-mutants" >&2
    exit 2
fi

# Resolves a scope argument to "name package globs".
resolve() {
    local arg="$1" line name
    for line in "${named_scopes[@]}"; do
        read -r name _ <<<"$line"
        if [ "$name" = "$arg" ]; then
            echo "$line"
            return
        fi
    done
    # Several files of one crate, comma-separated, are one scope (one baseline run).
    if [[ "$arg" == *,* ]]; then
        local part package="" names=() globs=()
        IFS=',' read -ra parts <<<"$arg"
        for part in "${parts[@]}"; do
            read -r name part_package part_globs <<<"$(resolve "$part")"
            if [ -n "$package" ] && [ "$package" != "$part_package" ]; then
                echo "'$arg' names files of more than one crate" >&2
                exit 2
            fi
            package="$part_package"
            names+=("$name")
            globs+=("$part_globs")
        done
        echo "$(IFS=+; echo "${names[*]}") $package $(IFS=,; echo "${globs[*]}")"
        return
    fi
    local path="${arg#./}"
    path="${path%/}"
    if [[ "$path" =~ ^crates/([^/]+)(/.*)?$ ]]; then
        local package="${BASH_REMATCH[1]}"
        local rest="${BASH_REMATCH[2]}"
        if [ ! -f "crates/$package/Cargo.toml" ]; then
            echo "no crate at crates/$package" >&2
            exit 2
        fi
        # The scope's name is the path, readable as a directory name.
        name="$(echo "${path#crates/}" | sed 's#/src/#-#; s#[/*]#-#g; s#\.rs##g; s#--*#-#g; s#-$##')"
        if [ -z "$rest" ]; then
            echo "$name $package -"
        else
            echo "$name $package $path"
        fi
        return
    fi
    echo "unknown scope '$arg': one of ${named_scopes[*]%% *}… or a path under crates/" >&2
    exit 2
}

scopes=()
if [ ${#wanted[@]} -eq 0 ]; then
    scopes=("${named_scopes[@]}")
else
    for arg in "${wanted[@]}"; do
        scopes+=("$(resolve "$arg")")
    done
fi

home="${MUTANTS_DIR:-${CARGO_TARGET_DIR:-$root/target}/mutants}"
mkdir -p "$home"
home="$(cd "$home" && pwd)"
case "$home/" in
    "$root"/crates/* | "$root"/scripts/*) echo "MUTANTS_DIR must not be inside the sources" >&2; exit 2 ;;
esac
src="$home/src"
build="$home/target"

# Brings the copy up to the working tree. The first copy keeps the files' modification
# times, so the seeded dependencies and the workspace crates built by the developer count as
# fresh. Later, only files whose content differs are copied (and get a new time): the
# mutants' target dir holds builds of mutated files, newer than the developer's file times,
# which cargo would otherwise take as fresh for the restored originals.
sync_sources() {
    local list
    list="$(mktemp)"
    git -C "$root" ls-files -z --cached --others --exclude-standard >"$list"
    if [ ! -f "$src/Cargo.toml" ]; then
        rm -rf "$src"
        mkdir -p "$src"
        (cd "$root" && tar --null --ignore-failed-read -T "$list" -cf - 2>/dev/null) \
            | tar -xf - -C "$src"
    else
        local file
        while IFS= read -r -d '' file; do
            [ -f "$root/$file" ] || continue
            if ! cmp -s "$root/$file" "$src/$file"; then
                mkdir -p "$(dirname "$src/$file")"
                cp "$root/$file" "$src/$file"
            fi
        done <"$list"
    fi
    rm -f "$list"
}

# The names (as in target/debug/deps) of every library, binary and test of the workspace.
workspace_targets() {
    cargo metadata --no-deps --format-version 1 --manifest-path "$root/Cargo.toml" \
        | python3 -c 'import json, sys
for package in json.load(sys.stdin)["packages"]:
    for target in package["targets"]:
        print(target["name"].replace("-", "_"))' | sort -u
}

# Seeds the mutants' target dir with the developer's already-built dependencies, once.
seed_build() {
    [ -d "$build/debug" ] && return
    [ "${MUTANTS_SEED:-1}" = "0" ] && return
    local from="${CARGO_TARGET_DIR:-$root/target}/debug"
    [ -d "$from/deps" ] || return
    echo "== seeding $build/debug from $from (dependencies only, once)"
    mkdir -p "$build/debug"
    # MUTANTS_SEED=link hard-links the compiled dependencies instead of copying them (about
    # 9 GB saved): cargo names them by a hash of how they were built, so the mutants' builds
    # add new files beside them rather than rewriting them.
    local how=(-a --reflink=auto)
    [ "${MUTANTS_SEED:-1}" = "link" ] && how=(-al)
    for part in deps build; do
        if [ -d "$from/$part" ]; then cp "${how[@]}" "$from/$part" "$build/debug/$part"; fi
    done
    if [ -d "$from/.fingerprint" ]; then cp -a "$from/.fingerprint" "$build/debug/.fingerprint"; fi
    # The workspace's own crates and tests get the same file names in both target dirs and
    # are rebuilt for every mutant: they must be copies, or a mutant would be written
    # through the link into the developer's build.
    if [ "${MUTANTS_SEED:-1}" = "link" ]; then
        local name file
        for name in $(workspace_targets); do
            for file in "$build/debug/deps/$name"-* "$build/debug/deps/lib$name"-*; do
                if [ -f "$file" ]; then
                    cp --remove-destination -p "$from/deps/${file##*/}" "$file"
                fi
            done
        done
    fi
    # The last test above may be false (a crate not built yet): that is no failure.
    return 0
}

if [ -z "$list" ]; then
    if [ -z "$no_sync" ] || [ ! -f "$src/Cargo.toml" ]; then
        sync_sources
    fi
    seed_build
fi

summary=()
for line in "${scopes[@]}"; do
    read -r scope package globs <<<"$line"
    args=(--package "$package" --output "$home/$scope")
    if [ "$globs" != "-" ]; then
        IFS=',' read -ra files <<<"$globs"
        for file in "${files[@]}"; do
            args+=(--file "$file")
        done
    fi
    [ -n "$re" ] && args+=(--re "$re")
    [ -n "$exclude_re" ] && args+=(--exclude-re "$exclude_re")
    [ -n "$timeout" ] && args+=(--timeout "$timeout")
    [ -n "$iterate" ] && args+=(--iterate)
    # Unit and integration tests, not doc tests: no scoped crate has a runnable example,
    # and rustdoc would add a build per mutant.
    [ ${#test_args[@]} -eq 0 ] && [ ${#cargo_args[@]} -eq 0 ] && test_args=(--tests)
    for arg in "${cargo_args[@]}"; do
        args+=("--cargo-arg=$arg")
    done
    for arg in "${test_args[@]}"; do
        args+=("--cargo-test-arg=$arg")
    done
    baseline=()
    if [ ${#test_packages[@]} -gt 0 ]; then
        baseline=(cargo test)
        for test_package in "${test_packages[@]}"; do
            args+=(--test-package "$test_package")
            baseline+=(--package "$test_package")
        done
        baseline+=("${cargo_args[@]}" "${test_args[@]}")
        args+=(--baseline skip)
        if [ -z "$timeout" ] && [ -z "$list" ]; then
            echo "--test-package needs --timeout (there is no cargo-mutants baseline to derive it from)" >&2
            exit 2
        fi
    fi
    if [ -n "$list" ]; then
        cargo mutants --list "${args[@]}"
        continue
    fi
    if [ "$jobs" = "1" ]; then
        # One job: mutate the copy in place and build in the mutants' own target dir.
        run=(env CARGO_TARGET_DIR="$build" cargo mutants --in-place --dir "$src" "${args[@]}")
    else
        # Several jobs: cargo-mutants copies the tree once per job; each copy builds in a
        # target dir inside itself (a shared one would collide), from scratch.
        run=(env -u CARGO_TARGET_DIR cargo mutants --dir "$src" --jobs "$jobs" "${args[@]}")
    fi
    if [ ${#baseline[@]} -gt 0 ] && [ -z "$iterate" ]; then
        echo "== $scope: baseline: ${baseline[*]}"
        (cd "$src" && CARGO_TARGET_DIR="$build" nice -n "$nice_level" "${baseline[@]}" >"$home/$scope.baseline.log" 2>&1) || {
            echo "== $scope: the unmutated tests fail (see $home/$scope.baseline.log)" >&2
            exit 1
        }
    fi
    echo "== $scope: ${run[*]}"
    # Exit codes 2 (missed mutants) and 3 (timeouts) are results, not failures of the run.
    status=0
    (cd "$src" && nice -n "$nice_level" "${run[@]}") || status=$?
    if [ "$status" -ne 0 ] && [ "$status" -ne 2 ] && [ "$status" -ne 3 ]; then
        echo "== $scope: cargo mutants failed ($status)" >&2
        exit "$status"
    fi
    dir="$home/$scope/mutants.out"
    count() { cat "${@/#/$dir/}" 2>/dev/null | grep -c . || true; }
    # With --iterate, earlier runs' caught and unviable mutants are in previously_caught.txt.
    summary+=("$(printf '%-28s caught %4s  missed %4s  timeout %4s  unviable %4s  (earlier runs: %s caught or unviable)' \
        "$scope" "$(count caught.txt)" "$(count missed.txt)" "$(count timeout.txt)" \
        "$(count unviable.txt)" "$(count previously_caught.txt)")")
done

if [ ${#summary[@]} -gt 0 ]; then
    echo
    printf '%s\n' "${summary[@]}"
    echo "(the mutants of each scope: $home/<scope>/mutants.out/{caught,missed,timeout}.txt)"
fi
