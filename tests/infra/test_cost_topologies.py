"""The cost model's fixed monthly costs (bench/cost_model.py, docs/cost-model.md) against what
each template deploys in each topology: a billed piece that only the public topology creates
(the NAT and its static address) is a "public" row, one that both create is a "both" row, and
the generated doc carries the rows as the generator writes them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hcl2
import pytest
from cfnlint.decode import cfn_yaml
from hcl2 import SerializationOptions

from bench import cost_model

ROOT = Path(__file__).resolve().parents[2]
OPTIONS = SerializationOptions(strip_string_quotes=True, explicit_blocks=False)
PUBLIC_ONLY = "${local.public ? 1 : 0}"

# Billed pieces: (cloud in the cost model, resource type, words of its cost row).
PIECES = [
    ("AWS", "AWS::EC2::NatGateway", "NAT gateway"),
    ("AWS", "AWS::EC2::EIP", "Elastic IP"),
    ("AWS", "AWS::EC2::VPCEndpoint", "interface endpoints"),
    ("Google Cloud", "google_compute_router_nat", "Cloud NAT"),
    ("Google Cloud", "google_compute_address", "static external IP"),
    ("Google Cloud", "google_vpc_access_connector", "Serverless VPC Access connector"),
    ("Azure", "azurerm_nat_gateway", "NAT gateway"),
    ("Azure", "azurerm_public_ip", "static public IP"),
    ("Azure", "azurerm_private_endpoint", "private endpoints"),
    ("Azure", "azurerm_service_plan", "Elastic Premium EP1"),
]


def terraform_resources(folder: str) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for path in (ROOT / "infra" / folder).glob("*.tf"):
        for block in hcl2.loads(path.read_text(), serialization_options=OPTIONS).get(
            "resource", []
        ):
            for rtype, named in block.items():
                found.setdefault(rtype, []).extend(named.values())
    return found


def topology(cloud: str, rtype: str) -> str:
    """'public' if the template creates this type only in the public topology, 'both' if
    in either (conditions on other inputs, such as CreateInterfaceEndpoints, do not count)."""
    if cloud == "AWS":
        template = cfn_yaml.load(str(ROOT / "infra" / "aws" / "template.yaml"))
        found = [r for r in template["Resources"].values() if r["Type"] == rtype]
        assert found, rtype
        public = {"PublicNetwork", "PublicRoute2", "PublicRoute3"}
        return "public" if all(r.get("Condition") in public for r in found) else "both"
    folder = {"Google Cloud": "gcp", "Azure": "azure"}[cloud]
    found = terraform_resources(folder).get(rtype, [])
    assert found, rtype
    return "public" if all(r.get("count") == PUBLIC_ONLY for r in found) else "both"


@pytest.mark.parametrize(("cloud", "rtype", "item"), PIECES)
def test_each_billed_piece_has_a_cost_row_of_its_topology(cloud: str, rtype: str, item: str):
    rows = [f for f in cost_model.FIXED if f.cloud == cloud and item in f.item]
    assert len(rows) == 1, f"{cloud}: no single cost row for {item} ({rtype})"
    assert rows[0].topology == topology(cloud, rtype), (
        f"{cloud} {item}: the template creates it in {topology(cloud, rtype)}, the cost model "
        f"says {rows[0].topology}"
    )
    assert rows[0].monthly > 0


def test_every_cloud_has_both_topologies_and_the_doc_has_the_generated_rows():
    for cloud in ("AWS", "Google Cloud", "Azure"):
        kinds = {f.topology for f in cost_model.FIXED if f.cloud == cloud}
        assert "public" in kinds and kinds & {"peered", "both"}, cloud
    doc = (ROOT / "docs" / "cost-model.md").read_text()
    assert "\n".join(cost_model.fixed_section()) in doc
    totals = {
        line.split("|")[1].strip(): line for line in doc.splitlines() if line.startswith("| ")
    }
    for cloud in ("AWS", "Google Cloud", "Azure"):
        public = sum(
            f.monthly for f in cost_model.FIXED if f.cloud == cloud and f.topology != "peered"
        )
        assert f"{public:,.2f} |" in totals[cloud], totals[cloud]
