# Shared by scripts/kafka.sh and scripts/moto.sh (sourced): a loopback server started in the
# background, waited for, and stopped by its pid file.

# Whether something answers on 127.0.0.1:PORT.
answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_ready SCRIPT WHAT PORT PIDFILE LOG...: wait up to 60 s for the server to answer; if it exits
# first, show the end of its logs.
wait_ready() {
  local script=$1 what=$2 port=$3 pidfile=$4
  shift 4
  for _ in $(seq 1 120); do
    if answers "$port"; then echo "$script: $what ready on 127.0.0.1:$port (pid $(cat "$pidfile"))"; return 0; fi
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      echo "$script: the $what exited; its output:" >&2; tail -50 "$@" >&2 || true; return 1
    fi
    sleep 0.5
  done
  echo "$script: the $what did not answer within 60 s" >&2; return 1
}

# stop_pid PIDFILE: stop the server (SIGTERM, then SIGKILL after 20 s) and remove the pid file.
stop_pid() {
  local pidfile=$1 pid
  [ -f "$pidfile" ] || return 0
  pid="$(cat "$pidfile")"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}
