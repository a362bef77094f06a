#!/usr/bin/env bash
# Offline checks of terraform/, buildspec.yml and .github/workflows/.
#
#   bash tests/infra/check.sh
#
# Needs terraform >= 1.6 on PATH (providers are never downloaded: every
# terraform command here runs on configurations that declare no provider) and
# python3. Python tools are installed, pinned by tests/infra/requirements.txt,
# into ${ECRBUILD_RIG_DIR:-/var/lib/ecrbuild-rig}/infra-venv and reused while
# their versions match. The asl-validator npm package, pinned by
# tests/infra/asl/package-lock.json, is installed with `npm ci` into
# ${ECRBUILD_RIG_DIR:-/var/lib/ecrbuild-rig}/asl-validator (Node.js and npm
# come from Debian's packages when missing) and reused while the lockfile
# matches. Prints PASS/FAIL per check and, last, one line
# "N passed, M failed"; exits 1 if any check failed.

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$ROOT/tests/infra"
RIG_DIR="${ECRBUILD_RIG_DIR:-/var/lib/ecrbuild-rig}"
VENV="$RIG_DIR/infra-venv"
VPY="$VENV/bin/python"
ASL_DIR="$RIG_DIR/asl-validator"
ASL="$ASL_DIR/node_modules/.bin/asl-validator"
PY="${PYTHON:-python3}"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ecrbuild-infra.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# Terraform: no user CLI config, no update checks, no prompts, no stray
# TF_VAR_*/TF_CLI_ARGS* from the caller, and .terraform dirs kept out of the repo.
: >"$WORK/terraformrc"
export TF_CLI_CONFIG_FILE="$WORK/terraformrc" CHECKPOINT_DISABLE=1 TF_IN_AUTOMATION=1 TF_INPUT=0
while read -r name; do unset "$name"; done < <(compgen -e | grep -E '^(TF_VAR_|TF_CLI_ARGS|TF_DATA_DIR$|TF_WORKSPACE$)')
if [ -x /usr/local/bin/terraform ]; then TERRAFORM=/usr/local/bin/terraform; else TERRAFORM=terraform; fi
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PYTHONDONTWRITEBYTECODE=1

passed=0
failed=0
failed_names=()
n=0

# run_check NAME COMMAND...: runs COMMAND from the repository root; its output
# is shown only when it fails.
run_check() {
  local name=$1
  shift
  n=$((n + 1))
  local log="$WORK/check-$n.log" start=$SECONDS
  if (cd "$ROOT" && "$@") >"$log" 2>&1; then
    passed=$((passed + 1))
    printf 'PASS  %s (%ss)\n' "$name" "$((SECONDS - start))"
    return 0
  fi
  failed=$((failed + 1))
  failed_names+=("$name")
  printf 'FAIL  %s (%ss)\n' "$name" "$((SECONDS - start))"
  sed -e 's/^/      | /' "$log" | tail -n 150
  return 1
}

# ------------------------------------------------------------------ venv

apt_install() {
  local sudo=()
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "need root or sudo to apt-get install $*"; return 1; }
    sudo=(sudo -n)
  fi
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

# True when the venv exists and holds exactly the pinned versions.
venv_is_current() {
  [ -x "$VPY" ] || return 1
  "$VPY" - "$HERE/requirements.txt" <<'PYEOF'
import re, sys
from importlib import metadata
bad = []
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    name, want = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", line).groups()
    try:
        have = metadata.version(name)
    except metadata.PackageNotFoundError:
        have = None
    if have != want:
        bad.append(f"{name}: have {have}, want {want}")
print("\n".join(bad))
sys.exit(1 if bad else 0)
PYEOF
}

ensure_venv() {
  mkdir -p "$RIG_DIR" || return 1
  # One installer at a time, even with parallel runs.
  exec 9>"$RIG_DIR/infra-venv.lock"
  flock -w 900 9 || { echo "timed out waiting for $RIG_DIR/infra-venv.lock"; return 1; }
  if venv_is_current; then
    echo "reusing $VENV"
    return 0
  fi
  echo "creating $VENV with $("$PY" --version 2>&1)"
  rm -rf "$VENV"
  if ! "$PY" -m venv "$VENV"; then
    # Debian ships venv without ensurepip unless python3-venv is installed.
    rm -rf "$VENV"
    apt_install python3-venv || return 1
    "$PY" -m venv "$VENV" || return 1
  fi
  "$VENV/bin/pip" install --quiet -r "$HERE/requirements.txt" || return 1
  venv_is_current
}

# ------------------------------------------------------------------ asl-validator

asl_is_current() {
  [ -x "$ASL" ] && cmp -s "$HERE/asl/package-lock.json" "$ASL_DIR/package-lock.json" &&
    [ "$("$ASL" --version 2>/dev/null)" = "$(sed -n 's/.*"asl-validator": *"\([^"]*\)".*/\1/p' "$HERE/asl/package.json")" ]
}

ensure_asl_validator() {
  mkdir -p "$ASL_DIR" || return 1
  exec 8>"$RIG_DIR/asl-validator.lock"
  flock -w 900 8 || { echo "timed out waiting for $RIG_DIR/asl-validator.lock"; return 1; }
  if asl_is_current; then
    echo "reusing $ASL_DIR (asl-validator $("$ASL" --version))"
    return 0
  fi
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    apt_install nodejs npm || return 1
  fi
  echo "installing asl-validator into $ASL_DIR with node $(node --version), npm $(npm --version)"
  rm -rf "$ASL_DIR/node_modules" "$ASL_DIR/package-lock.json"
  cp "$HERE/asl/package.json" "$HERE/asl/package-lock.json" "$ASL_DIR/" || return 1
  (cd "$ASL_DIR" && npm_config_cache="$ASL_DIR/.npm-cache" npm ci --no-audit --no-fund --ignore-scripts --loglevel=error) || return 1
  asl_is_current
}

# ------------------------------------------------------------------ checks

tf_policies() { TF_DATA_DIR="$WORK/tf-policies" "$TERRAFORM" -chdir=terraform/modules/policies "$@"; }
tf_render() { TF_DATA_DIR="$WORK/tf-render" "$TERRAFORM" -chdir=tests/infra/render "$@"; }

check_fmt() {
  "$TERRAFORM" fmt -check -recursive -diff terraform &&
    "$TERRAFORM" fmt -check -recursive -diff tests/infra/render
}

# Renders every document through the policies module into $WORK/documents.json
# (the exact JSON strings the module outputs, keyed by output name).
render_documents() {
  tf_render init -backend=false -input=false -no-color >/dev/null &&
    tf_render plan -input=false -no-color -out="$WORK/render.tfplan" >/dev/null &&
    tf_render show -json "$WORK/render.tfplan" >"$WORK/render.json" &&
    "$PY" - "$WORK/render.json" "$WORK/documents.json" <<'PYEOF'
import json, sys
plan = json.load(open(sys.argv[1]))
docs = plan["planned_values"]["outputs"]["documents"]["value"]
for name, text in docs.items():
    json.loads(text)  # each must be valid JSON
json.dump(docs, open(sys.argv[2], "w"), indent=1)
print("\n".join(sorted(docs)))
PYEOF
}

need_documents() { [ -s "$WORK/documents.json" ] || { echo "documents were not rendered (see that check)"; return 1; }; }
need_venv() { [ "$venv_ok" = 1 ] || { echo "python tools unavailable (see the venv check)"; return 1; }; }
need_asl() { [ "$asl_ok" = 1 ] || { echo "asl-validator unavailable (see its install check)"; return 1; }; }

# The export state machine's definition, as rendered, must pass asl-validator;
# two broken copies (a Catch to a missing state, a Fail with both Cause and
# CausePath) must not, so a validator that accepts anything fails this check.
check_state_machine() {
  need_documents && need_asl || return 1
  "$PY" - "$WORK/documents.json" "$WORK" <<'PYEOF' || return 1
import copy, json, sys
docs = json.load(open(sys.argv[1]))
definition = json.loads(docs["state_machine_definition"])
json.dump(definition, open(f"{sys.argv[2]}/state-machine.json", "w"), indent=1)
bad = copy.deepcopy(definition)
bad["States"]["ExportImage"]["Catch"][0]["Next"] = "NoSuchState"
json.dump(bad, open(f"{sys.argv[2]}/state-machine-bad-next.json", "w"))
bad = copy.deepcopy(definition)
bad["States"]["ExportFailed"]["Cause"] = "both"
json.dump(bad, open(f"{sys.argv[2]}/state-machine-bad-fail.json", "w"))
PYEOF
  "$ASL" --json-path "$WORK/state-machine.json" || return 1
  local bad
  for bad in bad-next bad-fail; do
    if "$ASL" --json-path "$WORK/state-machine-$bad.json" >"$WORK/asl-$bad.log" 2>&1; then
      echo "control: asl-validator accepted the broken definition state-machine-$bad.json"
      return 1
    fi
    echo "control: refused state-machine-$bad.json: $(tr '\n' ' ' <"$WORK/asl-$bad.log")"
  done
}

# check_checkov [VAR_FILE]: the default variables, or VAR_FILE's.
check_checkov() {
  need_venv || return 1
  local rc=0 args=()
  [ $# -eq 0 ] || args=(--var-file "$1")
  "$VENV/bin/checkov" -d terraform --config-file terraform/.checkov.yaml "${args[@]}" -o json >"$WORK/checkov.json" 2>"$WORK/checkov.err" || rc=$?
  "$VPY" - "$WORK/checkov.json" "$rc" <<'PYEOF' || { cat "$WORK/checkov.err"; return 1; }
import json, sys
data = json.load(open(sys.argv[1]))
reports = data if isinstance(data, list) else [data]
ok = int(sys.argv[2]) == 0
for r in reports:
    s = r["summary"]
    print(f"{r.get('check_type')}: {s}")
    for c in r["results"]["failed_checks"]:
        print(f"  FAILED {c['check_id']} {c['resource']} {c['file_path']}:{c['file_line_range']} {c['check_name']}")
    ok = ok and s["failed"] == 0 and s["parsing_errors"] == 0 and s["passed"] > 0 and s["resource_count"] >= 10
print(f"checkov exit {sys.argv[2]}")
sys.exit(0 if ok else 1)
PYEOF
}

check_files() { need_venv && "$VPY" "$HERE/check_files.py" "$1" .; }
check_policy_evaluation() { need_documents && "$PY" "$HERE/test_policy_evaluation.py" "$WORK/documents.json"; }
check_parliament() { need_venv && need_documents && "$VPY" "$HERE/run_parliament.py" "$WORK/documents.json" "$1"; }

check_workflow_schema() {
  need_venv || return 1
  local files=(.github/workflows/*.yml)
  [ -e "${files[0]}" ] || { echo "no workflow found"; return 1; }
  "$VENV/bin/check-jsonschema" --builtin-schema vendor.github-workflows "${files[@]}"
}

# ------------------------------------------------------------------ run

echo "ecrbuild infra checks ($ROOT)"
venv_ok=0
run_check "python tools venv ($VENV)" ensure_venv && venv_ok=1
asl_ok=0
run_check "asl-validator ($ASL_DIR)" ensure_asl_validator && asl_ok=1
run_check "terraform fmt -check -recursive" check_fmt
run_check "policies module: terraform init -backend=false" tf_policies init -backend=false -input=false -no-color
run_check "policies module: terraform validate" tf_policies validate -no-color
run_check "policies module: terraform test" tf_policies test -no-color
run_check "root config: documents from module.policies, tags, pinned versions" check_files terraform-root
run_check "render documents through the policies module" render_documents
run_check "policy evaluation: trust and permission decisions" check_policy_evaluation
run_check "export state machine: asl-validator (and two broken controls refused)" check_state_machine
run_check "checkov: every skip has a written reason" check_files checkov-skips
run_check "checkov terraform/: 0 failed" check_checkov
run_check "checkov terraform/ with every optional feature on: 0 failed" check_checkov tests/infra/checkov-all-features.tfvars
for doc in codebuild_permissions_policy codebuild_wait_scan_policy github_permissions_policy \
  codebuild_batch_permissions_policy github_permissions_policy_batch \
  export_permissions_policy export_permissions_policy_kms states_permissions_policy; do
  run_check "parliament: $doc" check_parliament "$doc"
done
run_check "workflow: GitHub workflow JSON schema" check_workflow_schema
run_check "workflow: push to main, OIDC role, start-build only" check_files workflow
run_check "release workflow: static x86_64 and aarch64 binaries, SHA256SUMS, one writing job" check_files release
run_check "buildspec: ecrbuild is the only pusher, no post_build" check_files buildspec
run_check "batch buildspecs: multi-arch graph and per-service list, ecrbuild the only pusher" check_files batch-buildspecs
run_check "export buildspec: ecrbuild export, prebuilt binary verified, no Docker" check_files export-buildspec

if [ "$failed" -gt 0 ]; then
  echo "failed: $(printf '%s; ' "${failed_names[@]}")"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
