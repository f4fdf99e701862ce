#!/usr/bin/env python3
"""Extract Terraform provider schemas from a cdktf or cdktn prebuilt provider package (npm tarball).

A cdktf prebuilt provider (e.g. @cdktf/provider-google@16.12.1, generated from google 6.50.0) ships, for
every resource and data source, a JavaScript file whose inline source map carries the generated
TypeScript. That TypeScript was generated from the provider's own schema and keeps all of it that a
type check needs:

- every attribute as `// NAME - computed: C, optional: O, required: R` followed by its member;
- the HCL shape of every configurable attribute in `synthesizeHclAttributes` / `xToHclTerraform`
  (`isBlock`, `type` simple/list/set/map/struct, `storageClassType` string/number/boolean/stringList/...);
- nested blocks as `new XOutputReference(this, "name")` (at most one) or `new XList(this, "name", wrapsSet)`;
- the documentation of each argument, whose `Possible values: [...]` lists the provider's enum values.

This script reads those files straight from the tarball (no extraction to disk) for the types a
configuration uses, and writes a JSON schema that `provider.py` serves to Terraform. It fails loudly on
any shape it does not understand, so a schema is never guessed.

CDK Terrain (cdktn), cdktf's continuation, generates the same code with the `cdktn` library in place of
`cdktf` (e.g. cdktn-provider-google 20.3.1, from google 7.46.1, whose PyPI wheel carries the npm tarball
as `_jsii/*.jsii.tgz`); its `cdktn.` references are read as `cdktf.` ones.

Usage: extract_schema.py PACKAGE.tgz TYPES.json OUT.json
  TYPES.json: {"resources": [...], "data_sources": [...]} (types missing from the package are skipped:
  Terraform then reports them as unsupported by that provider).
"""

import base64
import json
import re
import sys
import tarfile

META_RE = re.compile(r"// (\w+) - computed: (true|false), optional: (true|false), required: (true|false)\n")
HCL_ENTRY_RE = re.compile(
    r"(\w+): \{\s*value: [^\n]*\n\s*isBlock: (true|false),\s*type: \"(\w+)\",\s*storageClassType: \"(\w+)\",\s*\}"
)
NEW_RE = re.compile(r"private _\w+ = new ([\w.]+)\(this, \"(\w+)\"(?:, (true|false))?\)")
GETTER_RE = re.compile(r"public get \w+\(\)[^{]*\{\s*return ([^;]+);")
POSSIBLE_RE = re.compile(r"Possible values: (\[[^\]]*\])")

SIMPLE = {"string": "string", "number": "number", "boolean": "bool"}
ELEMENT = {"stringList": "string", "numberList": "number", "booleanList": "bool"}
MAPS = {"stringMap": "string", "numberMap": "number", "booleanMap": "bool"}
COMPUTED_MAPS = {"cdktf.StringMap": "string", "cdktf.NumberMap": "number", "cdktf.BooleanMap": "bool"}
COMPUTED_MAP_LISTS = {"cdktf.StringMapList": "string", "cdktf.NumberMapList": "number", "cdktf.BooleanMapList": "bool"}


class Unsupported(Exception):
    pass


def typescript_of(js: str, where: str) -> str:
    m = re.search(r"sourceMappingURL=data:application/json;base64,([A-Za-z0-9+/=]+)", js)
    if not m:
        raise Unsupported(f"{where}: no inline source map")
    sources = json.loads(base64.b64decode(m.group(1)))["sourcesContent"]
    if len(sources) != 1:
        raise Unsupported(f"{where}: expected one source, found {len(sources)}")
    return re.sub(r"\bcdktn\.", "cdktf.", sources[0])


def top_level_chunks(ts: str, keyword: str) -> dict[str, str]:
    """`export <keyword> NAME ...` -> its text up to the next top-level export."""
    out = {}
    starts = [m for m in re.finditer(r"^export (class|function|interface) (\w+)", ts, re.M)]
    for i, m in enumerate(starts):
        if m.group(1) != keyword:
            continue
        end = starts[i + 1].start() if i + 1 < len(starts) else len(ts)
        out[m.group(2)] = ts[m.start() : end]
    return out


def hcl_entries(text: str) -> dict[str, tuple[bool, str, str]]:
    return {m.group(1): (m.group(2) == "true", m.group(3), m.group(4)) for m in HCL_ENTRY_RE.finditer(text)}


def enums_of(interface_text: str) -> dict[str, list[str]]:
    """Argument name -> the provider's enum values, from the argument docs of one interface."""
    out = {}
    for doc in re.finditer(r"/\*\*(.*?)\*/\s*readonly \w+\??:", interface_text, re.S):
        body = doc.group(1)
        name = re.search(r"\{@link https://registry\.terraform\.io/\S+#(\w+) ", body)
        values = POSSIBLE_RE.search(body.replace("\n  *", " "))
        if name and values:
            try:
                out[name.group(1)] = json.loads(values.group(1))
            except json.JSONDecodeError:
                pass
    return out


class Module:
    """One generated TypeScript file: its classes, HCL synthesis functions and interfaces."""

    def __init__(self, ts: str, where: str):
        self.where = where
        self.classes = top_level_chunks(ts, "class")
        self.functions = top_level_chunks(ts, "function")
        self.interfaces = top_level_chunks(ts, "interface")

    def struct_hcl(self, struct: str) -> dict:
        fn = struct[0].lower() + struct[1:] + "ToHclTerraform"
        if fn not in self.functions:
            raise Unsupported(f"{self.where}: no {fn}")
        return hcl_entries(self.functions[fn])

    def members(self, class_name: str):
        text = self.classes.get(class_name)
        if text is None:
            raise Unsupported(f"{self.where}: no class {class_name}")
        metas = list(META_RE.finditer(text))
        for i, m in enumerate(metas):
            end = metas[i + 1].start() if i + 1 < len(metas) else len(text)
            yield m.group(1), m.group(2) == "true", m.group(3) == "true", m.group(4) == "true", text[m.end() : end]

    def block(self, class_name: str, hcl: dict, interface: str | None) -> dict:
        attributes, block_types = {}, {}
        enums = enums_of(self.interfaces.get(interface, "")) if interface else {}
        for name, computed, optional, required, chunk in self.members(class_name):
            new = NEW_RE.search(chunk)
            entry = hcl.get(name)
            if entry is not None and entry[0]:
                # A nested block.
                _, hcl_type, storage = entry
                if not new:
                    # The provider's own blocks are plain interfaces (no output reference classes).
                    if not storage.endswith("List"):
                        raise Unsupported(f"{self.where}: block {class_name}.{name} without a member object")
                    struct = storage[: -len("List")]
                    block_types[name] = {
                        "nesting": "set" if hcl_type == "set" else "list",
                        "min_items": 1 if required else 0,
                        "max_items": 0,
                        "block": self.plain_block(struct),
                    }
                    continue
                member_class, _, wraps_set = new.groups()
                if member_class.endswith("OutputReference"):
                    struct = member_class[: -len("OutputReference")]
                    nesting = "single" if hcl_type == "struct" else "list"
                    # Terraform wants no item counts on a single block (e.g. timeouts).
                    max_items = 0 if nesting == "single" else 1
                elif member_class.endswith("List"):
                    struct = member_class[: -len("List")]
                    nesting = "set" if hcl_type == "set" or wraps_set == "true" else "list"
                    max_items = 0
                else:
                    raise Unsupported(f"{self.where}: block {class_name}.{name} of class {member_class}")
                inner = self.block(struct + "OutputReference", self.struct_hcl(struct), struct)
                block_types[name] = {
                    "nesting": nesting,
                    "min_items": 1 if required and nesting != "single" else 0,
                    "max_items": max_items,
                    "block": inner,
                }
                continue
            if entry is not None:
                cty = self.configurable_type(class_name, name, entry)
            elif computed and not optional and not required:
                cty = self.computed_type(class_name, name, chunk, new)
            else:
                raise Unsupported(f"{self.where}: {class_name}.{name} is configurable but not synthesized")
            attr = {"type": cty, "required": required, "optional": optional, "computed": computed}
            if name in enums:
                attr["enum"] = enums[name]
            attributes[name] = attr
        return {"attributes": attributes, "block_types": block_types}

    def plain_block(self, struct: str) -> dict:
        """A block known only by its interface and HCL synthesis function (provider configuration)."""
        text = self.interfaces.get(struct)
        if text is None:
            raise Unsupported(f"{self.where}: no interface {struct}")
        optional = {m.group(1): m.group(2) == "?" for m in re.finditer(r"readonly (\w+)(\??):", text)}
        enums = enums_of(text)
        attributes, block_types = {}, {}
        for name, entry in self.struct_hcl(struct).items():
            camel = re.sub(r"_(\w)", lambda m: m.group(1).upper(), name)
            required = optional.get(camel) is False
            if entry[0]:
                if not entry[2].endswith("List"):
                    raise Unsupported(f"{self.where}: block {struct}.{name}: {entry[2]}")
                block_types[name] = {
                    "nesting": "set" if entry[1] == "set" else "list",
                    "min_items": 1 if required else 0,
                    "max_items": 0,
                    "block": self.plain_block(entry[2][: -len("List")]),
                }
                continue
            attr = {"type": self.configurable_type(struct, name, entry), "required": required, "optional": not required, "computed": False}
            if name in enums:
                attr["enum"] = enums[name]
            attributes[name] = attr
        return {"attributes": attributes, "block_types": block_types}

    def configurable_type(self, class_name, name, entry):
        _, hcl_type, storage = entry
        if hcl_type == "simple" and storage in SIMPLE:
            return SIMPLE[storage]
        if hcl_type in ("list", "set") and storage in ELEMENT:
            return [hcl_type, ELEMENT[storage]]
        if hcl_type == "map" and storage in MAPS:
            return ["map", MAPS[storage]]
        raise Unsupported(f"{self.where}: {class_name}.{name}: HCL type {hcl_type}/{storage}")

    def computed_type(self, class_name, name, chunk, new):
        if new:
            member_class, _, wraps_set = new.groups()
            if member_class in COMPUTED_MAPS:
                return ["map", COMPUTED_MAPS[member_class]]
            if member_class in COMPUTED_MAP_LISTS:
                return ["set" if wraps_set == "true" else "list", ["map", COMPUTED_MAP_LISTS[member_class]]]
            if member_class.endswith("List") or member_class.endswith("OutputReference"):
                struct = member_class[: -len("List")] if member_class.endswith("List") else member_class[: -len("OutputReference")]
                inner = self.block(struct + "OutputReference", {}, None)
                if inner["block_types"]:
                    raise Unsupported(f"{self.where}: computed {class_name}.{name} with nested blocks")
                obj = ["object", {k: a["type"] for k, a in inner["attributes"].items()}]
                return ["set" if wraps_set == "true" else "list", obj]
            raise Unsupported(f"{self.where}: computed {class_name}.{name} of class {member_class}")
        getter = GETTER_RE.search(chunk)
        if not getter:
            raise Unsupported(f"{self.where}: computed {class_name}.{name} without a getter")
        expr = getter.group(1)
        table = [
            ("cdktf.Token.asNumberList(cdktf.Fn.tolist(this.getNumberListAttribute(", ["set", "number"]),
            ("cdktf.Fn.tolist(this.getListAttribute(", ["set", "string"]),
            ("this.getStringAttribute(", "string"),
            ("this.getNumberAttribute(", "number"),
            ("this.getBooleanAttribute(", "bool"),
            ("this.getListAttribute(", ["list", "string"]),
            ("this.getNumberListAttribute(", ["list", "number"]),
            ("this.getStringMapAttribute(", ["map", "string"]),
            ("this.getNumberMapAttribute(", ["map", "number"]),
            ("this.getBooleanMapAttribute(", ["map", "bool"]),
        ]
        for prefix, cty in table:
            if expr.startswith(prefix):
                return cty
        raise Unsupported(f"{self.where}: computed {class_name}.{name}: getter {expr}")


def schema_of(ts: str, where: str, base: str) -> tuple[str, dict]:
    mod = Module(ts, where)
    mains = [n for n, t in mod.classes.items() if re.search(rf"extends cdktf\.{base} \{{", t)]
    if len(mains) != 1:
        raise Unsupported(f"{where}: expected one {base} class, found {mains}")
    main = mains[0]
    text = mod.classes[main]
    tf_type = re.search(r"tfResourceType = \"([\w-]+)\"", text)
    hcl_fn = re.search(r"protected synthesizeHclAttributes\(\)(.*)", text, re.S)
    if not tf_type or not hcl_fn:
        raise Unsupported(f"{where}: {main} has no tfResourceType or synthesizeHclAttributes")
    return tf_type.group(1), mod.block(main, hcl_entries(hcl_fn.group(1)), main + "Config")


def lib_dirs(tf_type: str, data: bool) -> list[str]:
    """cdktf's directory for a type: google_cloud_run_v2_service -> cloud-run-v2-service (google-beta
    spells some google-cloud-run-v2-service), data google_project -> data-google-project. The file's own
    tfResourceType is checked by the caller."""
    full = tf_type.replace("_", "-")
    if data:
        return ["data-" + full]
    return [full.split("-", 1)[1], full]


def main():
    package, types_path, out_path = sys.argv[1:4]
    wanted = json.load(open(types_path))
    with tarfile.open(package, "r:gz") as tar:
        names = set(tar.getnames())
        pkg = json.load(tar.extractfile("package/package.json"))

        def read(path):
            return tar.extractfile(path).read().decode()

        provider_ts = typescript_of(read("package/lib/provider/index.js"), "provider")
        provider_name = re.search(r"terraformProviderSource: '(?:[\w.-]+/)*([\w-]+)'", provider_ts)
        version = re.search(r"providerVersion: '([\d.]+)'", provider_ts)
        if not provider_name or not version:
            raise Unsupported("provider: no terraformProviderSource or providerVersion")
        provider_name = provider_name.group(1)
        _, provider_block = schema_of(provider_ts, "provider", "TerraformProvider")

        out = {
            "package": f"{pkg['name']}@{pkg['version']}",
            "provider_name": provider_name,
            "provider_version": version.group(1),
            "provider": provider_block,
            "resources": {},
            "data_sources": {},
        }
        for kind, data, base in (("resources", False, "TerraformResource"), ("data_sources", True, "TerraformDataSource")):
            for tf_type in sorted(set(wanted.get(kind, []))):
                paths = [f"package/lib/{d}/index.js" for d in lib_dirs(tf_type, data)]
                paths = [p for p in paths if p in names]
                if not paths:
                    continue
                path = paths[0]
                # Large types keep their nested structs in index-structs/*.js beside index.js.
                folder = path[: -len("index.js")]
                parts = [path] + sorted(n for n in names if n.startswith(folder + "index-structs/") and n.endswith(".js"))
                ts = "\n".join(typescript_of(read(part), part) for part in parts)
                got, block = schema_of(ts, path, base)
                if got != tf_type:
                    raise Unsupported(f"{path}: is {got}, expected {tf_type}")
                out[kind][tf_type] = block
    with open(out_path, "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    try:
        main()
    except Unsupported as e:
        sys.exit(f"extract_schema: unsupported shape: {e}")
