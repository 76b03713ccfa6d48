#!/usr/bin/env bash
# test_help.sh: ndl-train's --help, --version and man page (launch/help.c).
#   test_help.sh help    NDL_TRAIN SOURCE_DIR          groups, defaults, environment, exit codes, notes,
#                                                      every option config.c parses, lines <= 100 columns
#   test_help.sh version NDL_TRAIN MPI_ON(0|1) CUDA_ON  version, BLAS + live kernel, MPI/CUDA/NCCL lines
#   test_help.sh man     NDL_TRAIN MAN_FILE            the built ndl-train.1 is --help-man's output, renders
#                                                      (man -l, groff -ww when installed) with every option
set -uo pipefail
mode=$1 bin=$2
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
has_line() { # text regex what
  grep -Eq -- "$2" <<<"$1" || fail "$3: no line matches /$2/"
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

case $mode in
help)
  src=$3
  out=$("$bin" --help 2>"$tmp/err"); rc=$?
  [ "$rc" -eq 0 ] || fail "--help exited $rc"
  [ -s "$tmp/err" ] && fail "--help wrote to stderr: $(cat "$tmp/err")"
  [ "$("$bin" -h)" = "$out" ] || fail "-h differs from --help"
  for g in data model optimizer distributed device checkpoints output environment; do
    has_line "$out" "^$g:\$" "group $g"
  done
  has_line "$out" "^exit codes" "exit code section"
  # one line per option with its default, as config.c's ndl_config_defaults sets them
  has_line "$out" '^  --epochs N +.*\[10\]$' "--epochs default"
  has_line "$out" '^  --batch-size N +.*global.*\[100\]$' "--batch-size default"
  has_line "$out" '^  --optimizer NAME +sgd, adam, adamw or rmsprop \[adam\]$' "--optimizer default"
  has_line "$out" '^  --lr X +.*\[0\.001\]$' "--lr default"
  has_line "$out" '^  --weight-decay X +.*\[0\.001\]$' "--weight-decay default"
  has_line "$out" '^  --model NAME +.*\[mlpresnet\]$' "--model default"
  has_line "$out" '^  --hidden-dims A,B,\.\.\. +.*\[100,100\]$' "--hidden-dims default"
  has_line "$out" '^  --timeout S +.*\[60\]$' "--timeout default"
  has_line "$out" '^  --data DIR +.*\$NDL_DATA, else /usr/share/datasets/fashion-mnist\]$' "--data default"
  has_line "$out" '^  --device NAME +cpu or cuda \[cuda if built with CUDA and a GPU is visible, else cpu\]$' "--device"
  has_line "$out" '^  --collectives NAME +nccl or mpi \[nccl if every rank has its own GPU, else mpi\]$' "--collectives"
  has_line "$out" '^  --cuda-graph +.*\[off\]$' "--cuda-graph"
  for v in NDL_DATA NDL_FAULT OPENBLAS_CORETYPE OPENBLAS_NUM_THREADS OMPI_ALLOW_RUN_AS_ROOT; do
    has_line "$out" "^  $v +[^ ]" "environment variable $v"
  done
  has_line "$out" 'OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1' "environment variable OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"
  for code in 0 1 2 3 4 5 6; do
    has_line "$out" "^  $code +[a-z]" "exit code $code"
  done
  has_line "$out" '^  1 +internal failure: out of memory' "exit code 1's meaning"
  has_line "$out" '^  --max-steps counts optimizer steps, one per global batch, over the whole run' "--max-steps note"
  has_line "$out" '^  --eval-only without --load evaluates the untrained model as --seed initializes it' "--eval-only note"
  long=$(awk 'length($0) > 100' <<<"$out")
  [ -n "$long" ] && fail "lines over 100 columns: $long"
  # every option the parser knows ("--opt" literals in config.c) has its line
  opts=$(grep -oE '"--[a-z][a-z-]*"' "$src/launch/config.c" | tr -d '"' | sort -u)
  [ "$(wc -l <<<"$opts")" -ge 30 ] || fail "found only $(wc -l <<<"$opts") options in config.c"
  for o in $opts; do
    grep -Eq -- "^  ($o[ ,]|.*, $o( |\$))" <<<"$out" || fail "option $o (config.c) has no --help line"
  done
  ;;
version)
  mpi=$3
  out=$("$bin" --version 2>"$tmp/err"); rc=$?
  [ "$rc" -eq 0 ] || fail "--version exited $rc"
  [ -s "$tmp/err" ] && fail "--version wrote to stderr: $(cat "$tmp/err")"
  has_line "$out" '^ndl-train \(needle-c\) [0-9]+\.[0-9]+\.[0-9]+' "version"
  has_line "$out" '^BLAS: OpenBLAS [0-9.]+, kernel [A-Za-z0-9]+ \(' "BLAS and kernel"
  if [ "$mpi" = 1 ]; then has_line "$out" '^MPI: built in' "MPI"; else has_line "$out" '^MPI: not built in' "MPI"; fi
  cuda=${4:-}
  case $cuda in
    1) has_line "$out" '^CUDA: built in, (GPU visible|no GPU usable \(.+\))' "CUDA built in, with the GPU state" ;;
    0) has_line "$out" '^CUDA: not built in' "CUDA not built in" ;;
    *) has_line "$out" '^CUDA: (built in|not built in)' "CUDA" ;;
  esac
  has_line "$out" '^NCCL: (built in|not built in)' "NCCL"
  [ "$(wc -l <<<"$out")" -eq 5 ] || fail "expected 5 lines, got: $out"
  # the kernel line is the live one: a kernel the user forces shows up
  forced=$(OPENBLAS_CORETYPE=Haswell "$bin" --version)
  has_line "$forced" '^BLAS: OpenBLAS .*kernel Haswell \(OPENBLAS_CORETYPE=Haswell set by the user\)' "forced kernel"
  ;;
man)
  man_file=$3
  [ -s "$man_file" ] || { fail "$man_file missing or empty (the build makes it: target ndl-train-man)"; exit 1; }
  "$bin" --help-man >"$tmp/ndl-train.1" || fail "--help-man exited non-zero"
  cmp -s "$tmp/ndl-train.1" "$man_file" || fail "$man_file is not ndl-train --help-man's output (stale build?)"
  head -1 "$man_file" | grep -q '^\.\\"' || fail "no comment line first"
  grep -q '^\.TH NDL\\-TRAIN 1 ' "$man_file" || fail "no .TH NDL-TRAIN 1"
  for s in NAME SYNOPSIS DESCRIPTION OPTIONS ENVIRONMENT '"\?EXIT STATUS"\?' NOTES 'SEE ALSO'; do
    grep -q "^\.SH $s\$" "$man_file" || fail "no .SH $s"
  done
  grep -Eq '^[^.\\].*(^| )-[a-z-]' "$man_file" && fail "an unescaped '-' option in running text"
  help=$("$bin" --help)
  opts=$(grep -oE '^  --[a-z][a-z-]*' <<<"$help" | tr -d ' ' | sort -u)
  rendered=""
  if command -v man >/dev/null; then
    rendered=$(LC_ALL=C MANWIDTH=100 MANPAGER=cat man -l "$man_file" 2>"$tmp/man_err") || fail "man -l failed"
    [ -s "$tmp/man_err" ] && fail "man -l warned: $(cat "$tmp/man_err")"
  elif command -v groff >/dev/null; then
    rendered=$(groff -man -Tascii -P-c "$man_file")
  else
    echo "neither man nor groff installed: structural checks only"
  fi
  if command -v groff >/dev/null; then
    groff -man -Tascii -ww -z "$man_file" 2>"$tmp/groff_err"
    [ -s "$tmp/groff_err" ] && fail "groff warnings: $(cat "$tmp/groff_err")"
  fi
  if [ -n "$rendered" ]; then
    # strip overstrike (bold/underline) in case a pager setting leaves it
    rendered=$(sed 's/.\x08//g' <<<"$rendered")
    for h in NAME SYNOPSIS OPTIONS ENVIRONMENT 'EXIT STATUS' NOTES; do
      has_line "$rendered" "^$h\$" "rendered section $h"
    done
    for o in $opts; do
      grep -Eq -- "^ +$o( |,|\$)" <<<"$rendered" || fail "option $o of --help missing in the rendered page"
    done
    for code in 0 1 2 3 4 5 6; do has_line "$rendered" "^ +$code +[a-z]" "rendered exit code $code"; done
    has_line "$rendered" '^ +OMPI_ALLOW_RUN_AS_ROOT$' "rendered OMPI_ALLOW_RUN_AS_ROOT"
  fi
  ;;
*)
  echo "usage: test_help.sh help|version|man ..." >&2
  exit 2
  ;;
esac
[ "$fails" -eq 0 ] || { echo "$fails check(s) failed" >&2; exit 1; }
echo "ok: $mode"
