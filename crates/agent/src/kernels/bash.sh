# Airlock Bash kernel, run as `bash --norc --noprofile -c <this file>`.
#
# Requests on AIRLOCK_REQUEST_FD: a cell's code followed by a NUL byte. Control
# messages on AIRLOCK_CONTROL_FD, one JSON line each: {"type":"ready","pid":N} once,
# then {"type":"end","exit_code":N} after each cell. End of file: exit 0.
#
# How, and the trade-offs:
# - A cell runs in this shell, sourced from a here-string that evals it, so it
#   runs at the top level: cd, variables (declare/typeset without -g too),
#   functions, aliases, set/shopt options and positional parameters persist,
#   `local` fails as in a script, and `return` ends the cell. Error messages
#   name the source: "/dev/stdin: line N: ...". The cell's stdin is /dev/null.
# - SIGINT is ignored between cells. During a cell, bash runs the INT trap at
#   the next command boundary (after a foreground child that got the SIGINT
#   too has ended). The trap records the interrupt and installs a DEBUG trap
#   that, under extdebug, makes each following command return from the
#   function or sourced file it runs in: that unwinds the user's functions and
#   then the cell, whatever the nesting. The exit code is then 130. A DEBUG
#   trap, extdebug, functrace and errtrace that the user had are restored.
# - The channels sit on the two highest descriptors below min(ulimit -n, 1024),
#   out of the way of the cell's own {var} descriptors, and are closed while
#   a cell runs (bash keeps close-on-exec copies to restore them), so nothing
#   the cell starts inherits them. As bash's manual warns, a cell that names
#   descriptors 10 and up itself may clash with bash's copies.
# - Kernel code that runs after user code says `builtin` and tests only in
#   conditions, so the user's functions and set -e/-u/-x do not derail it;
#   xtrace is paused between cells. A cell's `exit`, or a failure under
#   set -e, ends the kernel as it would end a shell; the agent restarts it.

# Makes every command that follows return from its function or sourced file.
__airlock_unwind() {
  [[ -z ${FUNCNAME[1]-} ]] || return 2
}

# The INT trap during a cell.
__airlock_on_int() {
  __airlock_stopped=1
  __airlock_restore=$(builtin trap -p DEBUG; builtin shopt -p extdebug; builtin shopt -p -o functrace errtrace; builtin :)
  builtin shopt -s extdebug
  builtin trap __airlock_unwind DEBUG
}

shopt -s expand_aliases # so that aliases defined by a cell work in later cells
trap '' INT

__airlock_top=$(ulimit -n)
if [[ $__airlock_top == unlimited ]] || ((__airlock_top > 1024)); then
  __airlock_top=1024
fi
__airlock_req=$((__airlock_top - 1))
__airlock_ctl=$((__airlock_top - 2))
eval "exec $__airlock_req<&$AIRLOCK_REQUEST_FD $__airlock_ctl>&$AIRLOCK_CONTROL_FD"
eval "exec $AIRLOCK_REQUEST_FD<&- $AIRLOCK_CONTROL_FD>&-"
unset AIRLOCK_REQUEST_FD AIRLOCK_CONTROL_FD __airlock_top

__airlock_cell='builtin exec </dev/null; builtin eval "$__airlock_code"'
__airlock_flags=$-

printf '{"type":"ready","pid":%d}\n' "$$" >&"$__airlock_ctl"
while IFS= builtin read -r -d '' -u "$__airlock_req" __airlock_code; do
  if [[ $__airlock_flags == *x* ]]; then
    __airlock_code="builtin set -x; $__airlock_code" # xtrace for the cell, not for the kernel
  fi
  __airlock_stopped=
  builtin trap __airlock_on_int INT
  builtin source /dev/stdin <<<"$__airlock_cell" {__airlock_req}<&- {__airlock_ctl}>&-
  { __airlock_status=$? __airlock_flags=$-; builtin set +x; } 2>/dev/null
  builtin trap '' INT
  if [[ -n $__airlock_stopped ]]; then
    __airlock_status=130
    builtin trap - DEBUG
    builtin eval "$__airlock_restore"
  fi
  builtin printf '{"type":"end","exit_code":%d}\n' "$__airlock_status" >&"$__airlock_ctl"
done
