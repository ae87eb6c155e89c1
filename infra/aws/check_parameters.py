"""Check the parameters of an esdb-relay AWS deployment before `sam deploy`.

CloudFormation checks each parameter against the template on its own (AllowedPattern,
AllowedValues, MinValue/MaxValue), and the template's Rules compare parameters for equality.
It cannot compute whether one CIDR lies inside another, and its Rules cannot read a subnet's
CIDR. This script does what CloudFormation cannot, from the same samconfig.toml that
`sam deploy` reads:

- every parameter against the template's constraints, and the template's Rules;
- NetworkMode=peered: each function subnet (SubnetCidrs) lies inside the peered range
  (PeeringRemoteCidr): an Event Store Cloud peering link routes exactly one range back to your
  VPC, so a function in a subnet outside it can send to the cluster but never gets an answer;
  the peered range and the Event Store Cloud network do not overlap;
- NetworkMode=public: a NAT subnet that is not a function subnet, and one to three route tables
  (the stack adds one 0.0.0.0/0 route to each);
- port ranges are ranges.

With --aws it also asks EC2 (read-only calls) whether SubnetIds really have those CIDRs and lie
in VpcId, one per Availability Zone; whether RouteTableIds are their route tables; whether the
VPC has the DNS settings that private-DNS interface endpoints need; whether DynamoDbPrefixListId
is DynamoDB's; and per topology: peered, whether the route tables send PeeringCidr to a peering
connection; public, whether NatSubnetId is a public subnet of the VPC (a 0.0.0.0/0 route to an
internet gateway) and the function's route tables have no 0.0.0.0/0 route yet.

    python infra/aws/check_parameters.py infra/aws/samconfig.toml [--config-env default] [--aws]

Exit status 0 when all is well, 1 with one line per problem, 2 when the files cannot be read.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import shlex
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

TEMPLATE = Path(__file__).with_name("template.yaml")

# Values of AWS-specific parameter types, which CloudFormation checks against the account.
_AWS_TYPE_PATTERNS = {
    "AWS::EC2::VPC::Id": r"vpc-[0-9a-f]{8,17}",
    "AWS::EC2::Subnet::Id": r"subnet-[0-9a-f]{8,17}",
    "AWS::EC2::SecurityGroup::Id": r"sg-[0-9a-f]{8,17}",
}


class _TemplateLoader(yaml.SafeLoader):
    """A YAML loader that reads CloudFormation's short tags (!Ref, !Sub, ...) as plain data."""


def _tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {"Ref" if suffix == "Ref" else f"Fn::{suffix}": value}


_TemplateLoader.add_multi_constructor("!", _tagged)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_TemplateLoader)  # a SafeLoader


def parse_overrides(value: str | list[str]) -> dict[str, str]:
    """`Key=Value Key2="a b"` (one string) or `["Key=Value", 'Key2="a b"']`, as samconfig.toml
    and `sam deploy --parameter-overrides` take them. As for SAM, a value with a space must be
    quoted, in the list form too."""
    items = [
        token
        for item in ([value] if isinstance(value, str) else value)
        for token in shlex.split(item)
    ]
    params: dict[str, str] = {}
    for item in items:
        key, sep, val = item.partition("=")
        if not sep or not key:
            raise ValueError(f"parameter override {item!r} is not Key=Value")
        params[key] = val
    return params


def read_samconfig(path: Path, config_env: str = "default") -> dict[str, str]:
    """The parameter overrides of `[<config_env>.deploy.parameters]` in a samconfig.toml."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    section = data.get(config_env, {}).get("deploy", {}).get("parameters", {})
    return parse_overrides(section.get("parameter_overrides", []))


# --- checks ---------------------------------------------------------------------------------


def check(template: Mapping[str, Any], params: Mapping[str, str]) -> list[str]:
    """Every problem with a parameter set, one line each; an empty list when it is deployable
    as far as can be told without asking AWS."""
    declared: Mapping[str, Any] = template.get("Parameters", {})
    problems = [
        f"{name}: not a parameter of the template" for name in params if name not in declared
    ]
    values: dict[str, str] = {}
    for name, spec in declared.items():
        if name in params:
            value = params[name]
        elif "Default" in spec:
            value = str(spec["Default"])
        else:
            problems.append(f"{name}: required (no default); {spec.get('Description', '')}".strip())
            continue
        values[name] = value
        problems += _check_one(name, spec, value)
    if problems:
        return problems  # the cross checks below assume well-formed values
    return _check_rules(values)


def _check_one(name: str, spec: Mapping[str, Any], value: str) -> list[str]:
    kind = str(spec.get("Type", "String"))
    hint = spec.get("ConstraintDescription", "")
    if kind == "Number":
        try:
            number = float(value)
        except ValueError:
            return [f"{name}: {value!r} is not a number"]
        if "MinValue" in spec and number < float(spec["MinValue"]):
            return [f"{name}: {value} is below the minimum {spec['MinValue']}"]
        if "MaxValue" in spec and number > float(spec["MaxValue"]):
            return [f"{name}: {value} is above the maximum {spec['MaxValue']}"]
        allowed = [float(v) for v in spec.get("AllowedValues", [])]
        if allowed and number not in allowed:
            return [f"{name}: {value} is not one of {spec['AllowedValues']}"]
        return []
    is_list = kind == "CommaDelimitedList" or kind.startswith("List<")
    items = value.split(",") if is_list else [value]
    element_type = kind[5:-1] if kind.startswith("List<") else kind
    problems = []
    for item in items:
        item = item.strip() if is_list else item
        if element_type in _AWS_TYPE_PATTERNS and not re.fullmatch(
            _AWS_TYPE_PATTERNS[element_type], item
        ):
            problems.append(f"{name}: {item!r} is not a {element_type}")
        elif "AllowedPattern" in spec and not re.fullmatch(spec["AllowedPattern"], item):
            problems.append(f"{name}: {item!r} does not match the template's pattern ({hint})")
        elif "AllowedValues" in spec and item not in [str(v) for v in spec["AllowedValues"]]:
            problems.append(f"{name}: {item!r} is not one of {spec['AllowedValues']}")
    return problems


def _network(value: str) -> ipaddress.IPv4Network | None:
    try:
        return ipaddress.IPv4Network(value)  # strict: host bits must be zero
    except ValueError:
        return None


def _ports(value: str) -> tuple[int, int]:
    low, _, high = value.partition("-")
    return int(low), int(high or low)


MAX_NAT_ROUTE_TABLES = 3  # NatRoute1..3 in the template


def _check_rules(v: Mapping[str, str]) -> list[str]:
    problems: list[str] = []
    nets: dict[str, ipaddress.IPv4Network] = {}
    public = v["NetworkMode"] == "public"
    tables = [r.strip() for r in v["RouteTableIds"].split(",")]
    if public:
        if not v["NatSubnetId"]:
            problems.append(
                "NetworkMode=public needs NatSubnetId (a public subnet of the VPC for the NAT "
                "gateway)"
            )
        if "" in tables:
            problems.append(
                "NetworkMode=public needs RouteTableIds (the route tables of SubnetIds): the "
                "stack routes their 0.0.0.0/0 to the NAT gateway"
            )
        elif len(tables) > MAX_NAT_ROUTE_TABLES:
            problems.append(
                f"RouteTableIds: {len(tables)} route tables; the template routes at most "
                f"{MAX_NAT_ROUTE_TABLES} to the NAT gateway (use subnets that share route tables)"
            )
        if v["NatSubnetId"] in [s.strip() for s in v["SubnetIds"].split(",")]:
            problems.append(
                f"NatSubnetId {v['NatSubnetId']} is one of SubnetIds: the NAT gateway needs a "
                "public subnet, the function private ones"
            )
    else:
        for name in ("PeeringCidr", "PeeringRemoteCidr"):
            if not v[name]:
                problems.append(
                    f"{name}: required with NetworkMode=peered (the peering's "
                    f"{'Local' if name == 'PeeringCidr' else 'Remote'} address in the Event Store "
                    "Cloud console)"
                )
        if problems:
            return problems
    for name in ("SourceCidr",) if public else ("PeeringCidr", "PeeringRemoteCidr", "SourceCidr"):
        net = _network(v[name])
        if net is None:
            problems.append(
                f"{name}: {v[name]} has host bits set (e.g. 10.1.0.0/16, not 10.1.2.3/16)"
            )
        else:
            nets[name] = net
    esc, peered = nets.get("PeeringCidr"), nets.get("PeeringRemoteCidr")
    if esc and peered and esc.overlaps(peered):
        problems.append(
            f"PeeringCidr {esc} (Event Store Cloud) overlaps PeeringRemoteCidr {peered} (your "
            "VPC): a peering cannot join overlapping ranges"
        )
    subnet_ids = [s.strip() for s in v["SubnetIds"].split(",")]
    subnet_cidrs = [c.strip() for c in v["SubnetCidrs"].split(",")]
    if len(subnet_ids) != len(subnet_cidrs):
        problems.append(
            f"SubnetCidrs has {len(subnet_cidrs)} entries for {len(subnet_ids)} SubnetIds: give "
            "each subnet's CIDR, in the same order"
        )
    if len(set(subnet_ids)) != len(subnet_ids):
        problems.append("SubnetIds: a subnet is named twice")
    for subnet_id, cidr in zip(subnet_ids, subnet_cidrs, strict=False):
        net = _network(cidr)
        if net is None:
            problems.append(f"SubnetCidrs: {cidr} ({subnet_id}) has host bits set")
        elif peered and not net.subnet_of(peered):
            problems.append(
                f"subnet {subnet_id} ({net}) is not inside the peered range PeeringRemoteCidr "
                f"{peered}: Event Store Cloud routes only that range back through the peering, "
                "so the function would get no answer. Pick a subnet inside it, or recreate the "
                "peering with a range that covers this subnet"
            )
        elif esc and net.overlaps(esc):
            problems.append(f"subnet {subnet_id} ({net}) overlaps PeeringCidr {esc}")
    for name in ("EsdbPortRange", "SourcePortRange"):
        low, high = _ports(v[name])
        if not 1 <= low <= high <= 65535:
            problems.append(f"{name}: {v[name]} is not a port or a FROM-TO range within 1-65535")
    # The template's Rules, so that a mistake shows before CloudFormation refuses the change set.
    if not public and v["PeeringCidr"] == v["PeeringRemoteCidr"]:
        problems.append("PeeringCidr and PeeringRemoteCidr are the same range")
    if v["Mode"] == "ordered" and float(v["Partitions"]) != 1:
        problems.append("Partitions > 1 needs Mode=partitioned")
    if v["CreateInterfaceEndpoints"] == "false" and not v["ExistingEndpointSecurityGroupId"]:
        problems.append(
            "CreateInterfaceEndpoints=false needs ExistingEndpointSecurityGroupId (the security "
            "group of the VPC's SQS and Secrets Manager endpoints)"
        )
    if v["CreateLogsEndpoint"] == "true" and v["CreateInterfaceEndpoints"] != "true":
        problems.append("CreateLogsEndpoint=true needs CreateInterfaceEndpoints=true")
    if v["CreateDynamoDbEndpoint"] == "true" and "" in [
        r.strip() for r in v["RouteTableIds"].split(",")
    ]:
        problems.append(
            "CreateDynamoDbEndpoint=true needs RouteTableIds (the subnets' route tables)"
        )
    return problems


def check_aws(params: Mapping[str, str], ec2: Any) -> list[str]:
    """What only the account knows, with read-only EC2 calls (describe_*)."""
    problems: list[str] = []
    vpc_id = params["VpcId"]
    subnet_ids = [s.strip() for s in params["SubnetIds"].split(",")]
    cidrs = [c.strip() for c in params.get("SubnetCidrs", "").split(",")]
    try:
        subnets = {s["SubnetId"]: s for s in ec2.describe_subnets(SubnetIds=subnet_ids)["Subnets"]}
    except Exception as exc:  # botocore ClientError: a subnet id that does not exist, ...
        return [f"SubnetIds: cannot describe them: {exc}"]
    zones: dict[str, str] = {}
    for index, subnet_id in enumerate(subnet_ids):
        subnet = subnets[subnet_id]
        real = subnet["CidrBlock"]
        given = cidrs[index] if index < len(cidrs) else None
        if given != real:
            problems.append(f"SubnetCidrs: {subnet_id} is {real}, not {given}")
        if subnet["VpcId"] != vpc_id:
            problems.append(f"SubnetIds: {subnet_id} is in {subnet['VpcId']}, not VpcId {vpc_id}")
        if subnet.get("MapPublicIpOnLaunch"):
            problems.append(f"SubnetIds: {subnet_id} assigns public IPs: use private subnets")
        zone = subnet["AvailabilityZone"]
        if zone in zones:
            problems.append(
                f"SubnetIds: {subnet_id} and {zones[zone]} are both in {zone}; an interface "
                "endpoint takes one subnet per Availability Zone"
            )
        zones[zone] = subnet_id
    if len(zones) < 2:
        problems.append("SubnetIds: use subnets in at least two Availability Zones")

    tables = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])
    by_subnet: dict[str, dict[str, Any]] = {}
    main_table = None
    for table in tables["RouteTables"]:
        for association in table.get("Associations", []):
            if association.get("Main"):
                main_table = table
            elif association.get("SubnetId"):
                by_subnet[association["SubnetId"]] = table
    public = params.get("NetworkMode", "peered") == "public"
    esc = None if public else ipaddress.IPv4Network(params["PeeringCidr"])
    wanted_tables = {r.strip() for r in params.get("RouteTableIds", "").split(",") if r.strip()}
    for subnet_id in subnet_ids:
        table = by_subnet.get(subnet_id, main_table)
        if table is None:
            problems.append(f"{subnet_id}: no route table found")
            continue
        if wanted_tables and table["RouteTableId"] not in wanted_tables:
            problems.append(
                f"RouteTableIds: {subnet_id} uses {table['RouteTableId']}, which is not listed "
                + (
                    "(the stack would not route it to the NAT gateway)"
                    if public
                    else "(the DynamoDB gateway endpoint would not serve it)"
                )
            )
        if esc is None:
            default = [r for r in table.get("Routes", []) if _is_default_route(r)]
            if default:
                problems.append(
                    f"{subnet_id}: its route table {table['RouteTableId']} already has a "
                    f"0.0.0.0/0 route ({_route_target(default[0])}); the stack's route to the "
                    "NAT gateway would fail. Use subnets whose route tables have none"
                )
            continue
        peering_routes = [
            route
            for route in table.get("Routes", [])
            if route.get("DestinationCidrBlock")
            and esc.subnet_of(ipaddress.IPv4Network(route["DestinationCidrBlock"]))
            and (route.get("VpcPeeringConnectionId") or route.get("TransitGatewayId"))
        ]
        if not peering_routes:
            problems.append(
                f"{subnet_id}: its route table {table['RouteTableId']} has no route for "
                f"PeeringCidr {esc} to a peering connection (accept the Event Store Cloud "
                "peering and add the route)"
            )

    if public:
        problems += _check_nat_subnet(params, ec2, vpc_id, by_subnet, main_table)

    if params.get("CreateInterfaceEndpoints", "true") == "true":
        for attribute, key in (
            ("enableDnsSupport", "EnableDnsSupport"),
            ("enableDnsHostnames", "EnableDnsHostnames"),
        ):
            answer = ec2.describe_vpc_attribute(VpcId=vpc_id, Attribute=attribute)
            if not answer[key]["Value"]:
                problems.append(
                    f"VpcId: {vpc_id} has {attribute} off; private DNS for the interface "
                    "endpoints needs it on"
                )
    prefix_list = params.get("DynamoDbPrefixListId")
    if prefix_list:
        lists = ec2.describe_managed_prefix_lists(PrefixListIds=[prefix_list])["PrefixLists"]
        if not lists or not lists[0].get("PrefixListName", "").endswith(".dynamodb"):
            problems.append(f"DynamoDbPrefixListId: {prefix_list} is not DynamoDB's prefix list")
    return problems


def _is_default_route(route: Mapping[str, Any]) -> bool:
    return route.get("DestinationCidrBlock") == "0.0.0.0/0" and route.get("State") != "blackhole"


def _route_target(route: Mapping[str, Any]) -> str:
    for key in ("GatewayId", "NatGatewayId", "TransitGatewayId", "VpcPeeringConnectionId"):
        if route.get(key):
            return str(route[key])
    return "another target"


def _check_nat_subnet(
    params: Mapping[str, str],
    ec2: Any,
    vpc_id: str,
    by_subnet: Mapping[str, Mapping[str, Any]],
    main_table: Mapping[str, Any] | None,
) -> list[str]:
    """NetworkMode=public: NatSubnetId is a subnet of the VPC that reaches the internet
    through an internet gateway (where a NAT gateway must sit)."""
    nat_subnet = params["NatSubnetId"]
    try:
        found = ec2.describe_subnets(SubnetIds=[nat_subnet])["Subnets"]
    except Exception as exc:  # botocore ClientError: no such subnet
        return [f"NatSubnetId: cannot describe {nat_subnet}: {exc}"]
    problems = []
    if found[0]["VpcId"] != vpc_id:
        problems.append(f"NatSubnetId: {nat_subnet} is in {found[0]['VpcId']}, not VpcId {vpc_id}")
    table = by_subnet.get(nat_subnet, main_table)
    internet = [
        r
        for r in (table or {}).get("Routes", [])
        if _is_default_route(r) and str(r.get("GatewayId", "")).startswith("igw-")
    ]
    if not internet:
        problems.append(
            f"NatSubnetId: {nat_subnet} is not a public subnet (its route table has no "
            "0.0.0.0/0 route to an internet gateway): a NAT gateway there cannot reach the "
            "cluster"
        )
    return problems


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("samconfig", type=Path, help="the samconfig.toml sam deploy reads")
    parser.add_argument("--config-env", default="default", help="its environment (default)")
    parser.add_argument("--template", type=Path, default=TEMPLATE)
    parser.add_argument(
        "--aws", action="store_true", help="also check the subnets and routes in the account"
    )
    parser.add_argument("--region", help="AWS region for --aws (default: samconfig's region)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = arguments().parse_args(argv)
    try:
        template = load_template(args.template)
        params = read_samconfig(args.samconfig, args.config_env)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        print(f"cannot read the parameters: {exc}", file=sys.stderr)
        return 2
    problems = check(template, params)
    if not problems and args.aws:
        import boto3  # the aws extra; only for --aws

        config = tomllib.loads(args.samconfig.read_text(encoding="utf-8"))
        region = args.region or config.get(args.config_env, {}).get("deploy", {}).get(
            "parameters", {}
        ).get("region")
        problems = check_aws(params, boto3.client("ec2", region_name=region))
    for problem in problems:
        print(problem)
    if not problems:
        print(f"{args.samconfig}: parameters OK{' (checked in AWS)' if args.aws else ''}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
