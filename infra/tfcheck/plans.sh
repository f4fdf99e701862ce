#!/usr/bin/env bash
# Real `terraform show -json` plans for `check-plan`'s tests, made offline with the stand-in provider of
# run.sh (google 6.50.0 schemas, see README.md), from the configurations under tests/fixtures/plans/tf/.
#
#   infra/tfcheck/plans.sh              every case: writes tests/fixtures/plans/CASE.json
#   infra/tfcheck/plans.sh CASE...      those cases
#
# A case is a directory tests/fixtures/plans/tf/CASE/ with `after.tf` (the configuration planned) and,
# for a plan that changes or deletes resources, `before.tf` (what is already applied); any other files
# and directories (modules) are copied beside both; tests/fixtures/plans/tf/providers.tf is prepended.
# `before.tf` is planned first and its plan turned into a state "as if applied" (plan_state.py); `after.tf`
# is then planned against that state, and `terraform show -json` of that plan is the fixture, as
# Terraform wrote it. Uses the venv and npm packages run.sh installs (installing them the same way if
# missing); everything else under target/tfcheck/plans.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
tool=$repo/target/tfcheck
here=$repo/infra/tfcheck
cases_dir=$repo/tests/fixtures/plans/tf
out_dir=$repo/tests/fixtures/plans
work=$tool/plans
for c in terraform python3 npm openssl; do
  command -v "$c" >/dev/null || { echo "plans.sh needs $c"; exit 1; }
done

# --- the same pinned inputs as run.sh ---------------------------------------------------------------------
tf_version=1.2.0
provider_version=6.50.0
pkg="@cdktf/provider-google@16.12.1"
integrity="sha512-KqNA/5RiFT07r0PSZ6/07cJ2zESUgbj1JchVj21iBFBZVUbD+578xA/k8eq/r0cbyEgLmg9eYWeVslaYah4DCQ=="
mkdir -p "$tool/npm" "$work"
if [ ! -x "$tool/venv/bin/python" ] || ! "$tool/venv/bin/python" -c "import tf.runner" 2>/dev/null; then
  python3 -m venv "$tool/venv"
  "$tool/venv/bin/pip" install -q "tf==$tf_version"
fi
py=$tool/venv/bin/python
tgz=$tool/npm/google.tgz
if [ ! -f "$tgz" ] || [ "sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)" != "$integrity" ]; then
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "$pkg" >/dev/null)
  mv "$tmp"/*.tgz "$tgz"
  rm -rf "$tmp"
  [ "sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)" = "$integrity" ] || { echo "plans.sh: $pkg integrity mismatch"; exit 1; }
fi

# --- the schema of every type the cases use ----------------------------------------------------------------
"$py" - "$cases_dir" > "$work/types.json" <<'EOF'
import json, pathlib, re, sys
kinds = {"resource": set(), "data": set()}
for f in sorted(pathlib.Path(sys.argv[1]).rglob("*.tf")):
    for m in re.finditer(r'^\s*(resource|data)\s+"(\w+)"', f.read_text(), re.M):
        kinds[m.group(1)].add(m.group(2))
print(json.dumps({"resources": sorted(kinds["resource"]), "data_sources": sorted(kinds["data"])}))
EOF
key=$(cat "$work/types.json" "$here/extract_schema.py" <(echo "$integrity") | sha256sum | cut -c1-16)
schema=$work/google-$key.json
if [ ! -s "$schema" ]; then
  "$py" "$here/extract_schema.py" "$tgz" "$work/types.json" "$schema.tmp"
  mv "$schema.tmp" "$schema"
fi

# --- the stand-in as a filesystem mirror: Terraform installs it, and nothing else from anywhere -----------
dir=$work/mirror/registry.terraform.io/hashicorp/google/$provider_version/linux_amd64
mkdir -p "$dir"
printf '#!/bin/sh\nexec "%s" "%s" "%s" "%s" "$@"\n' "$py" "$here/provider.py" "$schema" "$here/fixtures.json" \
  > "$dir/terraform-provider-google_v$provider_version"
chmod +x "$dir/terraform-provider-google_v$provider_version"
cat > "$work/terraformrc" <<EOF
provider_installation {
  filesystem_mirror {
    path    = "$work/mirror"
    include = ["registry.terraform.io/hashicorp/google"]
  }
}
EOF
export TF_CLI_CONFIG_FILE=$work/terraformrc TF_IN_AUTOMATION=1 TF_INPUT=0 CHECKPOINT_DISABLE=1
unset TF_LOG

stage() { # CASE SIDE: a fresh directory with providers.tf, SIDE.tf as main.tf and the case's other files
  local case=$1 side=$2 d=$work/cases/$1/$2 f
  rm -rf "$d" && mkdir -p "$d"
  cp "$cases_dir/providers.tf" "$d/providers.tf"
  cp "$cases_dir/$case/$side.tf" "$d/main.tf"
  for f in "$cases_dir/$case"/*; do
    case "$(basename "$f")" in before.tf | after.tf) ;; *) cp -r "$f" "$d/" ;; esac
  done
  echo "$d"
}

tf_plan() { # DIR: init, plan -out, show -json > DIR/plan.json
  local d=$1
  (cd "$d" && terraform init -backend=false -input=false -no-color > init.log 2>&1 &&
    terraform plan -input=false -lock=false -no-color -out=plan.bin > plan.log 2>&1 &&
    terraform show -json plan.bin > plan.json) || { echo "FAIL  $d"; cat "$d"/*.log | sed 's/^/      /'; return 1; }
}

if [ $# -gt 0 ]; then cases=("$@"); else
  cases=()
  for d in "$cases_dir"/*/; do cases+=("$(basename "$d")"); done
fi
failures=0
for case in "${cases[@]}"; do
  [ -f "$cases_dir/$case/after.tf" ] || { echo "plans.sh: no $cases_dir/$case/after.tf"; exit 2; }
  after=$(stage "$case" after)
  if [ -f "$cases_dir/$case/before.tf" ]; then
    before=$(stage "$case" before)
    tf_plan "$before" || { failures=$((failures + 1)); continue; }
    "$py" "$here/plan_state.py" "$schema" "$before/plan.json" > "$after/terraform.tfstate"
  fi
  if tf_plan "$after"; then
    cp "$after/plan.json" "$out_dir/$case.json"
    echo "ok    $case: $(grep -E '^(Plan:|No changes)' "$after/plan.log" | head -1)"
  else
    failures=$((failures + 1))
  fi
done
echo "plans.sh: ${#cases[@]} case(s), $failures failed (work: ${work#"$repo"/})"
[ $failures -eq 0 ]
