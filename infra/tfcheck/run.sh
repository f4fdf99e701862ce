#!/usr/bin/env bash
# Offline `terraform validate` + `terraform plan` of the Terraform under terraform/, against the schemas
# of every provider version set below: google and google-beta 6.50.0 and 7.46.1, each with time 0.13.1
# (see infra/tfcheck/README.md). Every self-test, example and case runs once per set.
#
#   infra/tfcheck/run.sh                 the self-tests (deliberate mistakes validate must report), then
#                                        every example with its terraform.tfvars.example and every case
#                                        under infra/tfcheck/cases/, then the README-table check
#                                        (readme_tables.py)
#   infra/tfcheck/run.sh DIR VARFILE...  plan DIR (e.g. terraform/examples/organization or
#                                        terraform/modules/gke-iam-remediator) with each VARFILE; both
#                                        relative to the current directory
#
#   TFCHECK_SETS="7.46.1"                only these google versions (default: all of `sets` below)
#   TFCHECK_JOBS=N                       plans run at once (default: nproc)
#
# Everything it installs comes from the package registries (npm, PyPI) and is cached under target/tfcheck.
set -euo pipefail
caller=$PWD
cd "$(dirname "$0")/../.."
repo=$PWD
tool=$repo/target/tfcheck
here=$repo/infra/tfcheck
mkdir -p "$tool"
start=$(date +%s)
for c in terraform python3 npm openssl sha256sum; do
  command -v "$c" >/dev/null || { echo "tfcheck needs $c"; exit 1; }
done

# --- pinned inputs ---------------------------------------------------------------------------------------
tf_version=1.2.0 # PyPI `tf`: Terraform plugin protocol in Python
# The google / google-beta versions checked, each with the same time provider. A set passes only if
# `terraform init` accepts it under every configuration's version constraints.
sets=(6.50.0 7.46.1)
time_version=0.13.1
# PROVIDER@VERSION -> where its schema comes from: `npm PACKAGE INTEGRITY` (the npm tarball, its sha512
# integrity) or `pypi REQUIREMENT SHA256` (a wheel whose `_jsii/*.jsii.tgz` is the npm tarball; the sha256
# of the wheel). cdktf stopped at google 6.50.0 (@cdktf/provider-google 16.12.1 is its last release);
# its continuation CDK Terrain (cdktn) publishes google 7.x bindings on PyPI only (not on npm).
declare -A source_of=(
  [google@6.50.0]="npm @cdktf/provider-google@16.12.1 sha512-KqNA/5RiFT07r0PSZ6/07cJ2zESUgbj1JchVj21iBFBZVUbD+578xA/k8eq/r0cbyEgLmg9eYWeVslaYah4DCQ=="
  [google-beta@6.50.0]="npm @cdktf/provider-google-beta@16.12.1 sha512-ip0dXu0ZrsyMgcoGNfkJCYG8PFjNtfb2wkz4Sw7IU09rQMK/A6++SwkmFHl8wJ8KlwMvd2w4tNXfErIbWWWqag=="
  [google@7.46.1]="pypi cdktn-provider-google==20.3.1 562d1a5f4d9850be9f43f53b9c1cbb1899f0ce7c8daaf1e7b51181287e82a380"
  [google-beta@7.46.1]="pypi cdktn-provider-google-beta==20.3.1 3ed56bf0f493c431f447b37e4e0e4267896cef014b69c1ee599854ddd6a4df3e"
  [time@0.13.1]="npm @cdktf/provider-time@11.0.1 sha512-FI0xFIcfF7U0t+pk7NNNJujiCxIOw6wL0I61/LEgPC59WWcGVrRPdj5F7YvEEpgcWkse6YrYc9soumsTQa5WYg=="
)
if [ -n "${TFCHECK_SETS:-}" ]; then
  read -r -a sets <<< "$TFCHECK_SETS"
  for v in "${sets[@]}"; do
    [ -n "${source_of[google@$v]:-}" ] || { echo "tfcheck: no provider set $v (known: 6.50.0 7.46.1)"; exit 2; }
  done
fi
providers_of() { echo "google@$1 google-beta@$1 time@$time_version"; } # SET -> PROVIDER@VERSION...

# --- the Python side: the `tf` package in a venv ---------------------------------------------------------
if [ ! -x "$tool/venv/bin/python" ] || ! "$tool/venv/bin/python" -c "import tf.runner" 2>/dev/null; then
  python3 -m venv "$tool/venv"
  "$tool/venv/bin/pip" install -q "tf==$tf_version"
fi
py=$tool/venv/bin/python

# --- the provider packages, integrity-checked --------------------------------------------------------------
# Each becomes target/tfcheck/packages/PROVIDER-VERSION.tgz, with a stamp naming its source and sha256, so
# a cached tarball is used only if it is the one that was checked.
mkdir -p "$tool/packages"
fetch() { # PROVIDER@VERSION
  local key=$1 kind spec want tgz tmp got
  read -r kind spec want <<< "${source_of[$key]}"
  tgz=$tool/packages/${key/@/-}.tgz
  if [ -f "$tgz" ] && [ "$(cat "$tgz.stamp" 2>/dev/null)" = "${source_of[$key]} $(sha256sum < "$tgz" | cut -c1-64)" ]; then
    return
  fi
  tmp=$(mktemp -d)
  if [ "$kind" = npm ]; then
    (cd "$tmp" && npm pack --silent "$spec" >/dev/null)
    got="sha512-$(openssl dgst -sha512 -binary "$tmp"/*.tgz | base64 -w0)"
    [ "$got" = "$want" ] || { echo "tfcheck: $spec integrity mismatch ($got)"; rm -rf "$tmp"; exit 1; }
    mv "$tmp"/*.tgz "$tgz"
  else
    "$tool/venv/bin/pip" download -q --no-deps --only-binary=:all: -d "$tmp" "$spec" >/dev/null
    got=$(sha256sum "$tmp"/*.whl | cut -c1-64)
    [ "$got" = "$want" ] || { echo "tfcheck: $spec wheel sha256 mismatch ($got)"; rm -rf "$tmp"; exit 1; }
    "$py" - "$tmp"/*.whl "$tgz" <<'EOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as whl:
    inner = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    if len(inner) != 1:
        sys.exit(f"tfcheck: {sys.argv[1]}: expected one _jsii/*.jsii.tgz, found {inner}")
    with whl.open(inner[0]) as src, open(sys.argv[2], "wb") as dst:
        shutil.copyfileobj(src, dst)
EOF
  fi
  rm -rf "$tmp"
  echo "${source_of[$key]} $(sha256sum < "$tgz" | cut -c1-64)" > "$tgz.stamp"
}
for v in "${sets[@]}"; do for key in $(providers_of "$v"); do fetch "$key"; done; done

# --- schemas of the types the configuration uses (cached by content) -------------------------------------
"$py" - "$repo/terraform" "$here/selftest" > "$tool/types.json" <<'EOF'
import json, pathlib, re, sys
kinds = {"resource": set(), "data": set()}
for f in sorted(f for d in sys.argv[1:] for f in pathlib.Path(d).rglob("*.tf")):
    if ".terraform" in f.parts:
        continue
    for m in re.finditer(r'^\s*(resource|data)\s+"(\w+)"', f.read_text(), re.M):
        kinds[m.group(1)].add(m.group(2))
print(json.dumps({"resources": sorted(kinds["resource"]), "data_sources": sorted(kinds["data"])}))
EOF
mkdir -p "$tool/schema"
declare -A schema_of=()
for v in "${sets[@]}"; do
  for key in $(providers_of "$v"); do
    [ -z "${schema_of[$key]:-}" ] || continue
    p=${key%@*} pv=${key#*@}
    tgz=$tool/packages/${key/@/-}.tgz
    hash=$(cat "$tool/types.json" "$here/extract_schema.py" "$tgz.stamp" | sha256sum | cut -c1-16)
    schema=$tool/schema/$p-$pv-$hash.json
    if [ ! -s "$schema" ]; then
      "$py" "$here/extract_schema.py" "$tgz" "$tool/types.json" "$schema.tmp"
      mv "$schema.tmp" "$schema"
    fi
    got=$("$py" -c 'import json,sys; s=json.load(open(sys.argv[1])); print(s["provider_name"], s["provider_version"])' "$schema")
    [ "$got" = "$p $pv" ] || { echo "tfcheck: $schema is $got, expected $p $pv"; exit 1; }
    schema_of[$key]=$schema
  done

  # The stand-ins, laid out as one filesystem mirror per set (unpacked layout), and a CLI configuration
  # whose only installation method is that mirror: nothing can be fetched from anywhere.
  mirror=$tool/mirror/$v
  rm -rf "$mirror"
  for key in $(providers_of "$v"); do
    p=${key%@*} pv=${key#*@}
    dir=$mirror/registry.terraform.io/hashicorp/$p/$pv/linux_amd64
    mkdir -p "$dir"
    printf '#!/bin/sh\nexec "%s" "%s" "%s" "%s" "$@"\n' "$py" "$here/provider.py" "${schema_of[$key]}" "$here/fixtures.json" > "$dir/terraform-provider-${p}_v$pv"
    chmod +x "$dir/terraform-provider-${p}_v$pv"
  done
  cat > "$tool/terraformrc-$v" <<EOF
provider_installation {
  filesystem_mirror {
    path    = "$mirror"
    include = ["registry.terraform.io/hashicorp/google", "registry.terraform.io/hashicorp/google-beta", "registry.terraform.io/hashicorp/time"]
  }
}
EOF
done
export TF_IN_AUTOMATION=1 TF_INPUT=0 CHECKPOINT_DISABLE=1
unset TF_LOG TF_CLI_CONFIG_FILE

# --- the stand-in providers as long-lived servers ----------------------------------------------------------
# `terraform init` installs them from the set's mirror (checking the configurations' version constraints
# and writing the lock file); every validate and plan then reattaches to these processes instead of
# starting each provider three times per command.
provider_pids=()
stop_providers() { for pid in "${provider_pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap stop_providers EXIT
declare -A reattach_of=()
for v in "${sets[@]}"; do
  reattach_files=()
  for key in $(providers_of "$v"); do
    p=${key%@*}
    out=$tool/reattach-$v-$p.out
    : > "$out"
    "$py" -u "$here/provider.py" "${schema_of[$key]}" "$here/fixtures.json" "registry.terraform.io/hashicorp/$p" > "$out" 2>&1 &
    provider_pids+=($!)
    reattach_files+=("$out")
  done
  for out in "${reattach_files[@]}"; do
    for _ in $(seq 1 100); do grep -q "TF_REATTACH_PROVIDERS=" "$out" && break; sleep 0.1; done
    grep -q "TF_REATTACH_PROVIDERS=" "$out" || { echo "tfcheck: a stand-in provider did not start:"; cat "$out"; exit 1; }
  done
  reattach_of[$v]=$("$py" -c '
import json, re, sys
merged = {}
for path in sys.argv[1:]:
    merged.update(json.loads(re.search(r"TF_REATTACH_PROVIDERS=.(\{.*\}).", open(path).read()).group(1)))
print(json.dumps(merged))
' "${reattach_files[@]}")
done

# --- a fresh copy of terraform/ per set to work in (no .terraform or lock files land in the repository) --
work=$tool/work
rm -rf "$work" "$tool/logs"
for v in "${sets[@]}"; do
  mkdir -p "$work/$v" "$tool/logs/$v"
  cp -r "$repo/terraform" "$work/$v/terraform"
  cp -r "$here/selftest" "$work/$v/selftest"
done

jobs=${TFCHECK_JOBS:-$(nproc)}
declare -A initialised=()
failures=0
planned=()
plan_pids=()

tfv() { # SET ARGS...: terraform with the set's CLI configuration; but for init, reattached to its stand-ins
  local v=$1
  shift
  if [ "$1" = init ]; then
    # init installs from the mirror (a reattached provider would be neither resolved nor checked).
    TF_CLI_CONFIG_FILE=$tool/terraformrc-$v terraform "$@"
  else
    TF_CLI_CONFIG_FILE=$tool/terraformrc-$v TF_REATTACH_PROVIDERS=${reattach_of[$v]} terraform "$@"
  fi
}

tf_dir() { # SET DIR (repository-relative): its copy, initialised and validated once
  local v=$1 rel=$2 d=$work/$1/$2
  if [ -z "${initialised[$v/$rel]:-}" ]; then
    local log=$tool/logs/$v/$(echo "$rel" | tr '/' '_').init.log
    if (cd "$d" && tfv "$v" init -backend=false -input=false -no-color > "$log" 2>&1 &&
      tfv "$v" validate -no-color >> "$log" 2>&1); then
      echo "ok    $v validate $rel"
      initialised[$v/$rel]=ok
    else
      echo "FAIL  $v validate $rel"
      sed 's/^/      /' "$log"
      failures=$((failures + 1))
      initialised[$v/$rel]=failed
    fi
  fi
  [ "${initialised[$v/$rel]}" = ok ]
}

plan() { # SET DIR VARFILE RESULT: a var file whose first lines say `# expect-error: TEXT` must be refused with
  # TEXT; one with `# expect-policy: TEXT` lines must render a policy file containing each TEXT
  local v=$1 rel=$2 varfile=$3 result=$4 expect log rc=0 summary name=${3#"$repo"/}
  expect=$(sed -n 's/^# expect-error: //p' "$varfile" | head -1)
  log=$tool/logs/$v/$(echo "$rel" | tr '/' '_').$(basename "$varfile").log
  planbin=$result.tfplan
  (cd "$work/$v/$rel" && tfv "$v" plan -input=false -lock=false -no-color -var-file="$varfile" -out="$planbin") > "$log" 2>&1 || rc=$?
  summary=$(grep -E '^(Plan:|No changes)' "$log" | head -1 || true)
  if [ -z "$expect" ] && [ $rc -eq 0 ]; then
    echo "ok    $v plan $rel < $name: $summary" > "$result"
    # The policy file the plan renders (the policy secret's data), for the remediator's own parser below.
    (cd "$work/$v/$rel" && tfv "$v" show -json "$planbin") | "$py" "$here/plan_policy.py" > "$result.policy.yaml" 2>> "$log" ||
      { echo "FAIL  $v plan $rel < $name: no policy file in the plan" > "$result"; sed 's/^/      /' "$log" >> "$result"; }
    echo "$v $name" > "$result.policy.name"
    # `# expect-policy: TEXT` lines: the rendered policy file (whitespace squeezed) must contain each TEXT.
    while IFS= read -r want; do
      tr -s ' \n' ' ' < "$result.policy.yaml" | grep -qF -- "$want" ||
        { echo "FAIL  $v plan $rel < $name: the policy file lacks: $want"; sed 's/^/      | /' "$result.policy.yaml"; } >> "$result"
    done < <(sed -n 's/^# expect-policy: //p' "$varfile")
  # Terraform wraps long messages: compare with whitespace squeezed.
  elif [ -n "$expect" ] && [ $rc -ne 0 ] && tr -s ' \n' ' ' < "$log" | grep -qF -- "$expect"; then
    echo "ok    $v plan $rel < $name: refused as expected ($expect)" > "$result"
  else
    { if [ -z "$expect" ]; then echo "FAIL  $v plan $rel < $name"; else echo "FAIL  $v plan $rel < $name: expected an error containing: $expect (exit $rc)"; fi
      sed 's/^/      /' "$log"; } > "$result"
  fi
}

selftest() { # SET DIR under selftest/: validate must fail with every `# expect-error:` line of its main.tf
  local v=$1 d=$work/$1/selftest/$2 log=$tool/logs/$1/selftest_$2.log missing=""
  (cd "$d" && tfv "$v" init -backend=false -input=false -no-color > "$log" 2>&1 &&
    tfv "$v" validate -no-color >> "$log" 2>&1) && missing="(validate passed)"
  # init must have installed this set's google provider, or the errors below prove nothing about it.
  grep -q "Installed hashicorp/google v$v" "$log" || missing="$missing [init did not install hashicorp/google v$v]"
  while IFS= read -r want; do
    tr -s ' \n' ' ' < "$log" | grep -qF -- "$want" || missing="$missing [$want]"
  done < <(sed -n 's/^# expect-error: //p' "$d/main.tf")
  if [ -z "$missing" ]; then
    echo "ok    $v selftest $2: every deliberate mistake reported"
  else
    echo "FAIL  $v selftest $2: not reported: $missing"
    sed 's/^/      /' "$log"
    failures=$((failures + 1))
  fi
}

running() { # plans still running
  local n=0 pid
  for pid in "${plan_pids[@]}"; do kill -0 "$pid" 2>/dev/null && n=$((n + 1)); done
  echo $n
}

queue() { # SET DIR VARFILE: plan in the background, at most $jobs at a time
  tf_dir "$1" "$2" || return 0
  while [ "$(running)" -ge "$jobs" ]; do sleep 0.2; done
  local result=$tool/logs/result.${#planned[@]}
  planned+=("$result")
  plan "$1" "$2" "$3" "$result" &
  plan_pids+=($!)
}

if [ $# -gt 0 ]; then
  # DIR and VARFILEs are relative to where run.sh was called from (or absolute).
  abs=$(cd "$caller" && realpath "$1")
  rel=${abs#"$repo"/}
  shift
  [ -d "$repo/$rel" ] && [ "${rel#terraform/}" != "$rel" ] || { echo "tfcheck: $abs is not a directory under $repo/terraform"; exit 2; }
  files=()
  for f in "$@"; do
    files+=("$(cd "$caller" && realpath "$f")")
    [ -f "${files[-1]}" ] || { echo "tfcheck: no var file $f"; exit 2; }
  done
  validate_only=$([ ${#files[@]} -eq 0 ] && echo 1 || true)
  for v in "${sets[@]}"; do
    [ -z "$validate_only" ] || { tf_dir "$v" "$rel" || true; }
    for f in "${files[@]}"; do queue "$v" "$rel" "$f"; done
  done
else
  for v in "${sets[@]}"; do
    for t in "$here"/selftest/*/; do selftest "$v" "$(basename "$t")"; done
    for ex in "$repo"/terraform/examples/*/; do
      rel=terraform/examples/$(basename "$ex")
      queue "$v" "$rel" "${ex%/}/terraform.tfvars.example"
      for f in "$here"/cases/"$(basename "$ex")"/*.tfvars; do [ -e "$f" ] && queue "$v" "$rel" "$f"; done
    done
    for f in "$here"/cases/module/*.tfvars; do [ -e "$f" ] && queue "$v" terraform/modules/gke-iam-remediator "$f"; done
  done
fi
for pid in "${plan_pids[@]}"; do wait "$pid" || true; done
for r in "${planned[@]}"; do
  cat "$r"
  grep -q '^FAIL' "$r" && failures=$((failures + 1))
done

# Every rendered policy file through the remediator's own policy loader: `scan --policy FILE` with nothing
# to scan reads and validates the file first (every key, the notifications' channels and routes), then
# stops at "nothing to scan"; anything else is the loader's error, naming the field.
binary=${TFCHECK_BINARY:-$repo/target/debug/gke-iam-remediator}
policies=0 refused=0
if [ -x "$binary" ]; then
  for f in "$tool"/logs/result.*.policy.yaml; do
    [ -e "$f" ] || continue
    policies=$((policies + 1))
    out=$("$binary" scan --policy "$f" 2>&1 || true)
    if ! grep -q "nothing to scan" <<< "$out"; then
      echo "FAIL  rendered policy file of $(cat "${f%.yaml}.name") refused by the remediator:"
      sed 's/^/      /' <<< "$out"
      sed 's/^/      | /' "$f"
      refused=$((refused + 1))
    fi
  done
  if [ $refused -eq 0 ]; then
    echo "ok    $policies rendered policy files accepted by ${binary#"$repo"/} scan --policy"
  else
    echo "FAIL  $refused of $policies rendered policy files refused by ${binary#"$repo"/} scan --policy"
    failures=$((failures + refused))
  fi
elif [ "${CI:-}" = true ]; then
  echo "FAIL  no $binary to check the rendered policy files with (CI builds it before this step)"
  failures=$((failures + 1))
else
  echo "skip  rendered policy files: no $binary (cargo build, or set TFCHECK_BINARY)"
fi

if [ $# -eq 0 ] || [ "${rel:-}" = terraform/modules/gke-iam-remediator ]; then
  # Every module input and output in the module README's tables, as declared (readme_tables.py).
  if "$py" "$here/readme_tables.py" terraform/modules/gke-iam-remediator > "$tool/logs/readme_tables.log" 2>&1; then
    echo "ok    module README: $(tail -1 "$tool/logs/readme_tables.log")"
  else
    echo "FAIL  module README tables (fix the README or run: python3 infra/tfcheck/readme_tables.py --write terraform/modules/gke-iam-remediator)"
    sed 's/^/      /' "$tool/logs/readme_tables.log"
    failures=$((failures + 1))
  fi
fi

echo "tfcheck: ${#planned[@]} plans against google ${sets[*]}, $failures failed, $(($(date +%s) - start)) s (logs: ${tool#"$repo"/}/logs)"
[ $failures -eq 0 ] && { [ ${#planned[@]} -gt 0 ] || [ -n "${validate_only:-}" ]; }
