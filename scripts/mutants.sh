#!/usr/bin/env bash
# Mutation testing of the code that keeps the product's promises (counts, uniqueness,
# tenant isolation, secrets, restart): cargo-mutants changes one thing at a time (a function
# body replaced by a default, an operator flipped, a condition negated) and runs the
# package's tests; a mutant the tests do not catch ("missed") is code no test really checks.
#
#   bash scripts/mutants.sh                 # every scope below, one after the other
#   bash scripts/mutants.sh auth-token      # one scope (names below)
#   MUTANTS_RE='import_cancel' bash scripts/mutants.sh store-sqlite   # only matching mutants
#   MUTANTS_LIST=1 bash scripts/mutants.sh  # list the mutants, test nothing
#
# Needs `cargo install --locked cargo-mutants`. It is slow (a build and the package's tests
# per mutant): on a small machine run one scope at a time. Results land in
# target/mutants/<scope>/mutants.out (caught.txt, missed.txt, timeout.txt, unviable.txt);
# the script prints the counts of each scope at the end.
#
# Environment: MUTANTS_JOBS (default 1), MUTANTS_TIMEOUT seconds per test run (default:
# cargo-mutants derives it from the unmutated run), MUTANTS_NICE (default 10),
# MUTANTS_RE (a regex passed as --re), CARGO_TARGET_DIR (reused, so dependencies are not
# rebuilt).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if ! cargo mutants --version >/dev/null 2>&1; then
    echo "cargo-mutants is missing: cargo install --locked cargo-mutants" >&2
    exit 2
fi

# scope  package  file glob(s, comma-separated)
scopes=(
    "auth-token      iothubgdr-auth          crates/iothubgdr-auth/src/token.rs"
    "auth-secret     iothubgdr-auth          crates/iothubgdr-auth/src/secret.rs"
    "store-sqlite    iothubgdr-store-sqlite  crates/iothubgdr-store-sqlite/src/*.rs"
    "store-postgres  iothubgdr-store-postgres crates/iothubgdr-store-postgres/src/*.rs"
    "engine          iothubgdr-import        crates/iothubgdr-import/src/*.rs,crates/iothubgdr-import/src/**/*.rs"
)

wanted=("$@")
out_root="${MUTANTS_OUT:-$root/target/mutants}"
mkdir -p "$out_root"
summary=()

for line in "${scopes[@]}"; do
    read -r scope package globs <<<"$line"
    if [ ${#wanted[@]} -gt 0 ] && [[ ! " ${wanted[*]} " == *" $scope "* ]]; then
        continue
    fi
    if [ ! -d "crates/$package" ]; then
        echo "== $scope: crates/$package does not exist here, skipped"
        continue
    fi
    args=(--package "$package" --jobs "${MUTANTS_JOBS:-1}" --output "$out_root/$scope")
    IFS=',' read -ra files <<<"$globs"
    for file in "${files[@]}"; do
        args+=(--file "$file")
    done
    [ -n "${MUTANTS_RE:-}" ] && args+=(--re "$MUTANTS_RE")
    [ -n "${MUTANTS_TIMEOUT:-}" ] && args+=(--timeout "$MUTANTS_TIMEOUT")
    if [ -n "${MUTANTS_LIST:-}" ]; then
        cargo mutants --list "${args[@]}"
        continue
    fi
    echo "== $scope: cargo mutants ${args[*]}"
    # Exit codes 2 (missed mutants) and 3 (timeouts) are results, not failures of the run.
    status=0
    nice -n "${MUTANTS_NICE:-10}" cargo mutants "${args[@]}" || status=$?
    if [ "$status" -ne 0 ] && [ "$status" -ne 2 ] && [ "$status" -ne 3 ]; then
        echo "== $scope: cargo mutants failed ($status)" >&2
        exit "$status"
    fi
    dir="$out_root/$scope/mutants.out"
    count() { if [ -f "$dir/$1.txt" ]; then grep -c . "$dir/$1.txt" || true; else echo 0; fi; }
    summary+=("$(printf '%-15s caught %4s  missed %4s  timeout %4s  unviable %4s' \
        "$scope" "$(count caught)" "$(count missed)" "$(count timeout)" "$(count unviable)")")
done

if [ ${#summary[@]} -gt 0 ]; then
    echo
    printf '%s\n' "${summary[@]}"
    echo "(missed mutants: target/mutants/<scope>/mutants.out/missed.txt)"
fi
