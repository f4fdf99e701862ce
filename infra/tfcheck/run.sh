#!/usr/bin/env bash
# Offline `terraform validate` + `terraform plan` of the Terraform under terraform/, against the google
# and google-beta 6.50.0 provider schemas (see infra/tfcheck/README.md).
#
#   infra/tfcheck/run.sh                 the self-tests (deliberate mistakes validate must report), then
#                                        every example with its terraform.tfvars.example and every case
#                                        under infra/tfcheck/cases/
#   infra/tfcheck/run.sh DIR VARFILE...  plan DIR (e.g. terraform/examples/organization or
#                                        terraform/modules/gke-iam-remediator) with each VARFILE; both
#                                        relative to the current directory
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
for c in terraform python3 npm openssl; do
  command -v "$c" >/dev/null || { echo "tfcheck needs $c"; exit 1; }
done

# --- pinned inputs ---------------------------------------------------------------------------------------
tf_version=1.2.0 # PyPI `tf`: Terraform plugin protocol in Python
provider_version=6.50.0
declare -A npm_pkg=(
  [google]="@cdktf/provider-google@16.12.1"
  [google-beta]="@cdktf/provider-google-beta@16.12.1"
)
declare -A npm_integrity=(
  [google]="sha512-KqNA/5RiFT07r0PSZ6/07cJ2zESUgbj1JchVj21iBFBZVUbD+578xA/k8eq/r0cbyEgLmg9eYWeVslaYah4DCQ=="
  [google-beta]="sha512-ip0dXu0ZrsyMgcoGNfkJCYG8PFjNtfb2wkz4Sw7IU09rQMK/A6++SwkmFHl8wJ8KlwMvd2w4tNXfErIbWWWqag=="
)

# --- the Python side: the `tf` package in a venv ---------------------------------------------------------
if [ ! -x "$tool/venv/bin/python" ] || ! "$tool/venv/bin/python" -c "import tf.runner" 2>/dev/null; then
  python3 -m venv "$tool/venv"
  "$tool/venv/bin/pip" install -q "tf==$tf_version"
fi
py=$tool/venv/bin/python

# --- the provider packages (npm tarballs, integrity-checked) ----------------------------------------------
mkdir -p "$tool/npm"
for p in google google-beta; do
  tgz=$tool/npm/$p.tgz
  want=${npm_integrity[$p]}
  if [ ! -f "$tgz" ] || [ "sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)" != "$want" ]; then
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent "${npm_pkg[$p]}" >/dev/null)
    mv "$tmp"/*.tgz "$tgz"
    rm -rf "$tmp"
    got="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)"
    [ "$got" = "$want" ] || { echo "tfcheck: ${npm_pkg[$p]} integrity mismatch ($got)"; exit 1; }
  fi
done

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
for p in google google-beta; do
  key=$(cat "$tool/types.json" "$here/extract_schema.py" <(echo "${npm_integrity[$p]}") | sha256sum | cut -c1-16)
  schema=$tool/schema/$p-$key.json
  if [ ! -s "$schema" ]; then
    "$py" "$here/extract_schema.py" "$tool/npm/$p.tgz" "$tool/types.json" "$schema.tmp"
    mv "$schema.tmp" "$schema"
  fi
  schema_of[$p]=$schema
  got=$("$py" -c 'import json,sys; s=json.load(open(sys.argv[1])); print(s["provider_name"], s["provider_version"])' "$schema")
  [ "$got" = "$p $provider_version" ] || { echo "tfcheck: $schema is $got, expected $p $provider_version"; exit 1; }

  # The stand-in provider, laid out as a filesystem mirror (unpacked layout).
  dir=$tool/mirror/registry.terraform.io/hashicorp/$p/$provider_version/linux_amd64
  mkdir -p "$dir"
  exe=$dir/terraform-provider-${p}_v$provider_version
  printf '#!/bin/sh\nexec "%s" "%s" "%s" "%s" "$@"\n' "$py" "$here/provider.py" "$schema" "$here/fixtures.json" > "$exe.tmp"
  chmod +x "$exe.tmp"
  if ! cmp -s "$exe.tmp" "$exe"; then mv "$exe.tmp" "$exe"; else rm "$exe.tmp"; fi
done

# Terraform may install google and google-beta from the mirror only, and nothing from anywhere else.
cat > "$tool/terraformrc" <<EOF
provider_installation {
  filesystem_mirror {
    path    = "$tool/mirror"
    include = ["registry.terraform.io/hashicorp/google", "registry.terraform.io/hashicorp/google-beta"]
  }
}
EOF
export TF_CLI_CONFIG_FILE=$tool/terraformrc
export TF_IN_AUTOMATION=1 TF_INPUT=0 CHECKPOINT_DISABLE=1
unset TF_LOG

# --- the two stand-in providers as long-lived servers ------------------------------------------------------
# `terraform init` installs them from the mirror (checking the configurations' version constraints and
# writing the lock file); every validate and plan then reattaches to these two processes instead of starting
# each provider three times per command.
provider_pids=()
stop_providers() { for pid in "${provider_pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap stop_providers EXIT
reattach_files=()
for p in google google-beta; do
  out=$tool/reattach-$p.out
  : > "$out"
  "$py" -u "$here/provider.py" "${schema_of[$p]}" "$here/fixtures.json" "registry.terraform.io/hashicorp/$p" > "$out" 2>&1 &
  provider_pids+=($!)
  reattach_files+=("$out")
done
for out in "${reattach_files[@]}"; do
  for _ in $(seq 1 100); do grep -q "TF_REATTACH_PROVIDERS=" "$out" && break; sleep 0.1; done
  grep -q "TF_REATTACH_PROVIDERS=" "$out" || { echo "tfcheck: a stand-in provider did not start:"; cat "$out"; exit 1; }
done
reattach=$("$py" -c '
import json, re, sys
merged = {}
for path in sys.argv[1:]:
    merged.update(json.loads(re.search(r"TF_REATTACH_PROVIDERS=.(\{.*\}).", open(path).read()).group(1)))
print(json.dumps(merged))
' "${reattach_files[@]}")

# --- a fresh copy of terraform/ to work in (no .terraform or lock files land in the repository) ---------
work=$tool/work
rm -rf "$work" "$tool/logs"
mkdir -p "$work" "$tool/logs"
cp -r "$repo/terraform" "$work/terraform"
cp -r "$here/selftest" "$work/selftest"

jobs=${TFCHECK_JOBS:-$(nproc)}
declare -A initialised=()
failures=0
planned=()
plan_pids=()

tf_dir() { # DIR (repository-relative): its copy, initialised and validated once
  local rel=$1 d=$work/$1
  if [ -z "${initialised[$rel]:-}" ]; then
    local log=$tool/logs/$(echo "$rel" | tr '/' '_').init.log
    if (cd "$d" && terraform init -backend=false -input=false -no-color > "$log" 2>&1 &&
      TF_REATTACH_PROVIDERS=$reattach terraform validate -no-color >> "$log" 2>&1); then
      echo "ok    validate $rel"
      initialised[$rel]=ok
    else
      echo "FAIL  validate $rel"
      sed 's/^/      /' "$log"
      failures=$((failures + 1))
      initialised[$rel]=failed
    fi
  fi
  [ "${initialised[$rel]}" = ok ]
}

plan() { # DIR VARFILE RESULT: a var file whose first lines say `# expect-error: TEXT` must be refused with TEXT
  local rel=$1 varfile=$2 result=$3 expect log rc=0 summary name=${2#"$repo"/}
  expect=$(sed -n 's/^# expect-error: //p' "$varfile" | head -1)
  log=$tool/logs/$(echo "$rel" | tr '/' '_').$(basename "$varfile").log
  (cd "$work/$rel" && TF_REATTACH_PROVIDERS=$reattach terraform plan -input=false -lock=false -no-color -var-file="$varfile") > "$log" 2>&1 || rc=$?
  summary=$(grep -E '^(Plan:|No changes)' "$log" | head -1 || true)
  if [ -z "$expect" ] && [ $rc -eq 0 ]; then
    echo "ok    plan $rel < $name: $summary" > "$result"
  # Terraform wraps long messages: compare with whitespace squeezed.
  elif [ -n "$expect" ] && [ $rc -ne 0 ] && tr -s ' \n' ' ' < "$log" | grep -qF -- "$expect"; then
    echo "ok    plan $rel < $name: refused as expected ($expect)" > "$result"
  else
    { if [ -z "$expect" ]; then echo "FAIL  plan $rel < $name"; else echo "FAIL  plan $rel < $name: expected an error containing: $expect (exit $rc)"; fi
      sed 's/^/      /' "$log"; } > "$result"
  fi
}

selftest() { # DIR under selftest/: validate must fail with every `# expect-error:` line of its main.tf
  local d=$work/selftest/$1 log=$tool/logs/selftest_$1.log missing=""
  (cd "$d" && terraform init -backend=false -input=false -no-color > "$log" 2>&1 &&
    TF_REATTACH_PROVIDERS=$reattach terraform validate -no-color >> "$log" 2>&1) && missing="(validate passed)"
  while IFS= read -r want; do
    tr -s ' \n' ' ' < "$log" | grep -qF -- "$want" || missing="$missing [$want]"
  done < <(sed -n 's/^# expect-error: //p' "$d/main.tf")
  if [ -z "$missing" ]; then
    echo "ok    selftest $1: every deliberate mistake reported"
  else
    echo "FAIL  selftest $1: not reported: $missing"
    sed 's/^/      /' "$log"
    failures=$((failures + 1))
  fi
}

running() { # plans still running
  local n=0 pid
  for pid in "${plan_pids[@]}"; do kill -0 "$pid" 2>/dev/null && n=$((n + 1)); done
  echo $n
}

queue() { # DIR VARFILE: plan in the background, at most $jobs at a time
  tf_dir "$1" || return 0
  while [ "$(running)" -ge "$jobs" ]; do sleep 0.2; done
  local result=$tool/logs/result.${#planned[@]}
  planned+=("$result")
  plan "$1" "$2" "$result" &
  plan_pids+=($!)
}

if [ $# -gt 0 ]; then
  # DIR and VARFILEs are relative to where run.sh was called from (or absolute).
  abs=$(cd "$caller" && realpath "$1")
  rel=${abs#"$repo"/}
  shift
  [ -d "$work/$rel" ] && [ "${rel#terraform/}" != "$rel" ] || { echo "tfcheck: $abs is not a directory under $repo/terraform"; exit 2; }
  [ $# -gt 0 ] || { tf_dir "$rel" || true; }
  for v in "$@"; do
    f=$(cd "$caller" && realpath "$v")
    [ -f "$f" ] || { echo "tfcheck: no var file $v"; exit 2; }
    queue "$rel" "$f"
  done
else
  for t in "$here"/selftest/*/; do selftest "$(basename "$t")"; done
  for ex in "$repo"/terraform/examples/*/; do
    rel=terraform/examples/$(basename "$ex")
    queue "$rel" "${ex%/}/terraform.tfvars.example"
    for v in "$here"/cases/"$(basename "$ex")"/*.tfvars; do [ -e "$v" ] && queue "$rel" "$v"; done
  done
  for v in "$here"/cases/module/*.tfvars; do [ -e "$v" ] && queue terraform/modules/gke-iam-remediator "$v"; done
fi
for pid in "${plan_pids[@]}"; do wait "$pid" || true; done
for r in "${planned[@]}"; do
  cat "$r"
  grep -q '^FAIL' "$r" && failures=$((failures + 1))
done

echo "tfcheck: ${#planned[@]} plans, $failures failed, $(($(date +%s) - start)) s (logs: ${tool#"$repo"/}/logs)"
[ $failures -eq 0 ] && [ ${#planned[@]} -gt 0 ]
