#!/usr/bin/env python3
"""A schema-only stand-in for a Terraform provider, for offline `terraform validate` and `plan`.

It speaks Terraform's plugin protocol 6 through the `tf` package (PyPI: its go-plugin handshake, TLS and
gRPC server, generated tfplugin6 bindings and msgpack value codec) and serves a schema written by
extract_schema.py. Terraform itself then does the real work: type-checks every argument against the
schema, resolves references, enforces required arguments and block counts, evaluates variable
validations, preconditions and `check` blocks, and plans.

What the stand-in adds, like the real provider would:
- validation: an argument whose documented values are an enum (`Possible values: [...]`) must be one;
- plan: every computed attribute that the configuration leaves null becomes unknown ("known after
  apply"), at every nesting level;
- data sources: a read returns the configuration with computed attributes filled from FIXTURES (a JSON
  file `{"TYPE": {"ATTR": value}}`) or, without a fixture, a typed placeholder (`tfcheck-ATTR`, 0,
  false, empty collection), because Terraform requires a data source result to be wholly known;
- apply, import and state moves are refused: nothing here can reach Google Cloud.

Usage (as the provider executable, through a wrapper script): provider.py SCHEMA.json [FIXTURES.json]
"""

import json
import sys

from tf import runner as tf_runner
from tf import provider as tf_provider
from tf.gen import tfplugin_pb2 as pb
from tf.gen import tfplugin_pb2_grpc as rpc
from tf.types import Unknown
from tf.utils import read_dynamic_value, to_dynamic_value

NESTING = {
    "single": pb.Schema.NestedBlock.SINGLE,
    "list": pb.Schema.NestedBlock.LIST,
    "set": pb.Schema.NestedBlock.SET,
}


def block_pb(block: dict) -> pb.Schema.Block:
    return pb.Schema.Block(
        attributes=[
            pb.Schema.Attribute(
                name=name,
                type=json.dumps(a["type"]).encode(),
                required=a["required"],
                optional=a["optional"],
                computed=a["computed"],
                description="",
            )
            for name, a in sorted(block["attributes"].items())
        ],
        block_types=[
            pb.Schema.NestedBlock(
                type_name=name,
                block=block_pb(b["block"]),
                nesting=NESTING[b["nesting"]],
                min_items=b["min_items"],
                max_items=b["max_items"],
            )
            for name, b in sorted(block["block_types"].items())
        ],
    )


def schema_pb(block: dict) -> pb.Schema:
    return pb.Schema(version=0, block=block_pb(block))


def elements(value, nesting):
    """The objects of a nested block value (None for an absent single block)."""
    if value is None or value is Unknown:
        return []
    return [value] if nesting == "single" else list(value)


def error(summary, detail, path):
    steps = [pb.AttributePath.Step(attribute_name=p) if isinstance(p, str) else pb.AttributePath.Step(element_key_int=p) for p in path]
    return pb.Diagnostic(severity=pb.Diagnostic.ERROR, summary=summary, detail=detail, attribute=pb.AttributePath(steps=steps))


def enum_errors(block: dict, value, path: list) -> list:
    """Arguments whose provider-documented enum does not contain the configured value."""
    out = []
    if not isinstance(value, dict):
        return out
    for name, a in block["attributes"].items():
        v = value.get(name)
        allowed = a.get("enum")
        if allowed and isinstance(v, str) and v != "" and v not in allowed:
            out.append(error("Invalid value", f"{name} must be one of {allowed}, got {v!r}.", path + [name]))
    for name, b in block["block_types"].items():
        for i, el in enumerate(elements(value.get(name), b["nesting"])):
            sub = path + [name] if b["nesting"] == "single" else path + [name, i]
            out += enum_errors(b["block"], el, sub)
    return out


def plan_value(block: dict, value):
    """Proposed new object -> planned object: computed attributes left null become unknown."""
    if not isinstance(value, dict):
        return value
    out = dict(value)
    for name, a in block["attributes"].items():
        if a["computed"] and out.get(name) is None:
            out[name] = Unknown
    for name, b in block["block_types"].items():
        v = out.get(name)
        if v is None or v is Unknown:
            continue
        if b["nesting"] == "single":
            out[name] = plan_value(b["block"], v)
        else:
            out[name] = [plan_value(b["block"], el) for el in v]
    return out


def placeholder(name: str, cty):
    if cty == "string":
        return f"tfcheck-{name}"
    if cty == "number":
        return 0
    if cty == "bool":
        return False
    if isinstance(cty, list) and cty[0] in ("list", "set"):
        return []
    if isinstance(cty, list) and cty[0] == "map":
        return {}
    raise ValueError(f"no placeholder for {name}: {cty}")


def read_value(block: dict, value, fixture: dict):
    out = dict(value)
    for name, a in block["attributes"].items():
        if a["computed"] and out.get(name) is None:
            out[name] = fixture[name] if name in fixture else placeholder(name, a["type"])
    return out


class StandIn(rpc.ProviderServicer):
    def __init__(self, _app=None):
        self.schema = SCHEMA
        self.fixtures = FIXTURES

    def GetMetadata(self, request, context):
        return pb.GetMetadata.Response(
            server_capabilities=pb.ServerCapabilities(plan_destroy=True, get_provider_schema_optional=False),
            resources=[pb.GetMetadata.ResourceMetadata(type_name=t) for t in self.schema["resources"]],
            data_sources=[pb.GetMetadata.DataSourceMetadata(type_name=t) for t in self.schema["data_sources"]],
        )

    def GetProviderSchema(self, request, context):
        return pb.GetProviderSchema.Response(
            provider=schema_pb(self.schema["provider"]),
            provider_meta=schema_pb({"attributes": {}, "block_types": {}}),
            resource_schemas={t: schema_pb(b) for t, b in self.schema["resources"].items()},
            data_source_schemas={t: schema_pb(b) for t, b in self.schema["data_sources"].items()},
        )

    def ValidateProviderConfig(self, request, context):
        config = read_dynamic_value(request.config)
        return pb.ValidateProviderConfig.Response(diagnostics=enum_errors(self.schema["provider"], config, []))

    def ValidateResourceConfig(self, request, context):
        config = read_dynamic_value(request.config)
        block = self.schema["resources"][request.type_name]
        return pb.ValidateResourceConfig.Response(diagnostics=enum_errors(block, config, []))

    def ValidateDataResourceConfig(self, request, context):
        config = read_dynamic_value(request.config)
        block = self.schema["data_sources"][request.type_name]
        return pb.ValidateDataResourceConfig.Response(diagnostics=enum_errors(block, config, []))

    def ConfigureProvider(self, request, context):
        return pb.ConfigureProvider.Response()

    def UpgradeResourceState(self, request, context):
        state = json.loads(request.raw_state.json) if request.raw_state.json else None
        return pb.UpgradeResourceState.Response(upgraded_state=to_dynamic_value(state))

    def ReadResource(self, request, context):
        return pb.ReadResource.Response(new_state=request.current_state, private=request.private)

    def PlanResourceChange(self, request, context):
        block = self.schema["resources"][request.type_name]
        proposed = read_dynamic_value(request.proposed_new_state)
        return pb.PlanResourceChange.Response(planned_state=to_dynamic_value(plan_value(block, proposed)))

    def ApplyResourceChange(self, request, context):
        return pb.ApplyResourceChange.Response(
            diagnostics=[error("tfcheck stand-in provider", "apply is impossible offline: this provider only serves the schema", [])]
        )

    def ImportResourceState(self, request, context):
        return pb.ImportResourceState.Response(
            diagnostics=[error("tfcheck stand-in provider", "import is impossible offline", [])]
        )

    def ReadDataSource(self, request, context):
        block = self.schema["data_sources"][request.type_name]
        config = read_dynamic_value(request.config)
        state = read_value(block, config, self.fixtures.get(request.type_name, {}))
        return pb.ReadDataSource.Response(state=to_dynamic_value(state))

    def GetFunctions(self, request, context):
        return pb.GetFunctions.Response()

    def StopProvider(self, request, context):
        return pb.StopProvider.Response()


class Named:
    """What the tf runner needs of a provider to print its reattach configuration."""

    def __init__(self, source):
        self.source = source

    def full_name(self):
        return self.source


if __name__ == "__main__":
    SCHEMA = json.load(open(sys.argv[1]))
    FIXTURES = json.load(open(sys.argv[2]))
    # The tf runner builds its servicer from tf.provider.ProviderServicer: serve the stand-in instead.
    tf_provider.ProviderServicer = StandIn
    if len(sys.argv) > 3:
        # provider.py SCHEMA FIXTURES registry.terraform.io/hashicorp/NAME: one long-lived server that
        # every terraform command reattaches to (TF_REATTACH_PROVIDERS, printed on stdout), instead of
        # Terraform starting the provider three times per command.
        tf_runner.run_provider(provider=Named(sys.argv[3]), argv=[sys.argv[0], "--dev"])
    else:
        tf_runner.run_provider(provider=None, argv=[sys.argv[0]])
