#!/usr/bin/env bash
# Converge THIS machine with `make provision` against the fake Cerebras on loopback, prove
# that a second run changes nothing, and run the converged-host checks that apply here
# (tests/converged_host, Molecule's too). What the macOS CI job runs (.github/workflows/ci.yml); it
# also works on a Linux box. It provisions the current user for real: run it on a CI machine
# or a machine you are setting up anyway, not on a laptop you care about.
#
# Environment: CCQ_FAKE_UPSTREAM_PORT (default 18400), CCQ_PROXY_PORT (default 14000),
# CCQ_WORK_DIR (logs and the upstream's request log; default a new temporary directory).
set -euo pipefail
cd "$(dirname "$0")/../.."

upstream_port="${CCQ_FAKE_UPSTREAM_PORT:-18400}"
proxy_port="${CCQ_PROXY_PORT:-14000}"
work="${CCQ_WORK_DIR:-$(mktemp -d)}"
mkdir -p "$work"
# Not a real key: a sentinel that must never show up in the play's output.
export CEREBRAS_API_KEY="csk-sentinel-converge-and-verify-not-a-real-key"

# The same stand-in upstream as Molecule's target (molecule/shared/prepare.yml).
python3 tests/fake_cerebras/fake_cerebras.py --host 127.0.0.1 --port "$upstream_port" --strict \
  --tool-preference Agent,Task,get_weather --request-log "$work/requests.jsonl" >"$work/fake.log" 2>&1 &
fake_pid=$!
trap 'kill "$fake_pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 30); do
  curl -fsS --noproxy '*' -o /dev/null "http://127.0.0.1:${upstream_port}/health" && break
  sleep 1
done

# The settings of both converges, and what the checks read back (CCQ_VERIFY_SETTINGS).
settings="$work/settings.json"
printf '{"ccq_cerebras_api_base": "http://127.0.0.1:%s/v1", "ccq_proxy_port": %s}\n' \
  "$upstream_port" "$proxy_port" >"$settings"
provision_args="-e @$settings"
echo "== first converge"
make provision ARGS="$provision_args" 2>&1 | tee "$work/converge.log"
echo "== second converge (must change nothing)"
make provision ARGS="$provision_args" 2>&1 | tee "$work/idempotence.log"
if ! grep -Eq '^localhost +: ok=[0-9]+ +changed=0 +unreachable=0 +failed=0' "$work/idempotence.log"; then
  echo "converge_and_verify: the second run changed something (see $work/idempotence.log)" >&2
  exit 1
fi
if grep -Fq "$CEREBRAS_API_KEY" "$work/converge.log" "$work/idempotence.log"; then
  echo "converge_and_verify: the Cerebras key appeared in the play's output" >&2
  exit 1
fi

echo "== verify"
CCQ_VERIFY_SETTINGS="$settings" CCQ_VERIFY_UPSTREAM_LOG="$work/requests.jsonl" \
  .venv/bin/pytest -v -p no:cacheprovider --hosts=local:// tests/converged_host
