# Shared by the CLI tests (sourced after `kelp=$1`): a temp folder, pass/fail counting and the common assertions.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
passes=0

check() { # check NAME CONDITION...
  local name=$1; shift
  if "$@"; then passes=$((passes + 1)); else echo "FAIL: $name"; failures=$((failures + 1)); fi
}

run() { # run EXPECTED_STATUS ARGS... : stdout in $tmp/out, stderr in $tmp/err
  local want=$1; shift
  "$kelp" "$@" >"$tmp/out" 2>"$tmp/err"
  local got=$?
  if [ "$got" != "$want" ]; then
    echo "kelp $*: exit $got, expected $want; stderr: $(cat "$tmp/err")"
    return 1
  fi
}

quiet() { # quiet COMMAND...: output in $tmp/out and $tmp/err, shown (the end of stderr) only on failure
  "$@" >"$tmp/out" 2>"$tmp/err" || { echo "$*: $(tail -5 "$tmp/err")"; return 1; }
}

contains() { grep -qF -- "$2" "$1" || { echo "'$2' not in $1: $(head -c 600 "$1")"; return 1; }; }

finish() { # the summary line the test runners read, and the exit status
  echo "$passes passed, $failures failed"
  [ "$failures" = 0 ]
}
