"""docs/cost-model.md from the rates one benchmark run measured (5 ms emulated latency).

Per million events, for each cloud's deployment as infra/ defines it: invocations (one slice
per invocation, chained), GB-seconds, checkpoint-store operations, and their list price; and
how long a 100M / 1B event backfill takes at each measured rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

PRICES_AS_OF = "list prices as published in 2025 (not re-checked live from this machine)"
SLICE_EVENTS = 20_000  # BudgetConfig.max_events default
START_SECONDS = 2.0  # assumed per invocation: imports, connections, lease (not in the rate)
# Checkpoint store operations per slice, as handlers/aws/checkpoint_store.py does them: reads
# for acquire, load, commit and release (core/stores/base.py reads the job record before each
# conditional write), writes for acquire, commit, record_slice = counter + record, release; the
# Firestore and Azure Table stores keep the same records, so the same counts are assumed there.
STORE_READS_PER_SLICE = 4
STORE_WRITES_PER_SLICE = 5


@dataclass(frozen=True)
class Cloud:
    name: str
    deployment: str
    memory_gb: float
    vcpu: float
    timeout_seconds: float
    per_invocation: float  # USD
    per_gb_second: float  # USD
    per_vcpu_second: float  # USD, where billed apart from memory
    store: str
    per_store_read: float  # USD
    per_store_write: float  # USD
    source: str


CLOUDS = (
    Cloud(
        "AWS Lambda + DynamoDB",
        "1024 MB (infra/aws default, ~0.58 vCPU), 900 s timeout, us-east-1 x86",
        1.0,
        0.58,
        900,
        0.20 / 1e6,
        0.0000166667,
        0.0,
        "DynamoDB on-demand",
        0.125 / 1e6,  # per read request unit (strongly consistent, < 4 KB)
        0.625 / 1e6,  # per write request unit (< 1 KB)
        "aws.amazon.com/lambda/pricing; aws.amazon.com/dynamodb/pricing/on-demand "
        "(after the 1 Nov 2024 on-demand price cut)",
    ),
    Cloud(
        "Cloud Functions gen2 + Firestore",
        "1 GiB / 1 vCPU (infra/gcp default), 540 s timeout, us-central1, tier 1",
        1.0,
        1.0,
        540,
        0.40 / 1e6,
        0.0000025,
        0.000024,
        "Firestore (regional)",
        0.03 / 1e5,
        0.09 / 1e5,
        "cloud.google.com/run/pricing (gen2 functions are billed as Cloud Run); "
        "cloud.google.com/firestore/pricing",
    ),
    Cloud(
        "Azure Functions EP1 + Table Storage",
        "Elastic Premium EP1: 1 vCPU, 3.5 GB, billed per instance-second, East US",
        3.5,
        1.0,
        600,
        0.0,
        0.0123 / 3600,
        0.173 / 3600,
        "Table Storage (LRS)",
        0.00036 / 1e4,
        0.00036 / 1e4,
        "azure.microsoft.com/pricing/details/functions (Premium plan: vCPU-hour and "
        "GB-hour); azure.microsoft.com/pricing/details/storage/tables",
    ),
)


@dataclass(frozen=True)
class Measured:
    strategy: str
    rate: float  # events/s at 5 ms on the benchmark machine
    cpu_per_million: float  # CPU seconds per million events of the replicator process
    relay: bool  # our relay (slices, checkpoint store) rather than a baseline


def cloud_rate(m: Measured, cloud: Cloud) -> float:
    """The measured rate, capped by the function's CPU share: the benchmark machine gave the
    replicator up to a full core; a 1024 MB Lambda has ~0.58 of one."""
    if m.cpu_per_million <= 0:
        return m.rate
    return min(m.rate, cloud.vcpu * 1e6 / m.cpu_per_million)


def per_million(m: Measured, cloud: Cloud) -> dict[str, float]:
    rate = cloud_rate(m, cloud)
    per_slice = min(SLICE_EVENTS, rate * (cloud.timeout_seconds - 10))
    invocations = 1e6 / per_slice if m.relay else 0.0  # a baseline is a long-lived service
    seconds = 1e6 / rate + invocations * START_SECONDS
    gb_seconds = seconds * cloud.memory_gb
    reads = invocations * STORE_READS_PER_SLICE
    writes = invocations * STORE_WRITES_PER_SLICE
    usd = (
        invocations * cloud.per_invocation
        + gb_seconds * cloud.per_gb_second
        + seconds * cloud.vcpu * cloud.per_vcpu_second
        + reads * cloud.per_store_read
        + writes * cloud.per_store_write
    )
    return {
        "rate": rate,
        "invocations": invocations,
        "gb_seconds": gb_seconds,
        "reads": reads,
        "writes": writes,
        "usd": usd,
    }


HOURS_PER_MONTH = 730


@dataclass(frozen=True)
class Fixed:
    """A cost that runs whether or not a slice runs: per hour, or per GB it carries."""

    cloud: str
    topology: str  # "peered", "public" or "both"
    item: str
    per_hour: float
    per_gb: float = 0.0
    note: str = ""

    @property
    def monthly(self) -> float:
        return self.per_hour * HOURS_PER_MONTH


# List prices as published in 2025 (PRICES_AS_OF), us-east-1 / us-central1 / East US, for what
# each template deploys. "public" is the topology without peering: egress through a static IP
# that the cluster's allowlist names (NAT gateway / Cloud NAT / NAT gateway).
FIXED = [
    Fixed(
        "AWS",
        "both",
        "2 interface endpoints (SQS, Secrets Manager) x 2 AZs",
        4 * 0.01,
        0.01,
        "aws.amazon.com/privatelink/pricing; + 2 x 2 AZs with CreateLogsEndpoint=true",
    ),
    Fixed("AWS", "both", "DynamoDB gateway endpoint", 0.0, 0.0, "free"),
    Fixed(
        "AWS",
        "public",
        "NAT gateway (one, in NatSubnetId)",
        0.045,
        0.045,
        "aws.amazon.com/vpc/pricing; carries only EventStoreDB traffic",
    ),
    Fixed(
        "AWS",
        "public",
        "Elastic IP (public IPv4 address)",
        0.005,
        0.0,
        "aws.amazon.com/vpc/pricing, public IPv4",
    ),
    Fixed(
        "Google Cloud",
        "both",
        "Serverless VPC Access connector: 2 e2-micro instances (min)",
        2 * 0.0084,
        0.0,
        "cloud.google.com/vpc/pricing#serverless-vpc-pricing (billed as VMs)",
    ),
    Fixed(
        "Google Cloud",
        "both",
        "Cloud Scheduler job",
        0.10 / HOURS_PER_MONTH,
        0.0,
        "3 jobs per billing account are free",
    ),
    Fixed(
        "Google Cloud",
        "public",
        "Cloud NAT gateway (2 connector VMs; 3 at most)",
        2 * 0.0014,
        0.045,
        "cloud.google.com/nat/pricing; Google APIs bypass it (Private Google Access)",
    ),
    Fixed(
        "Google Cloud",
        "public",
        "static external IP address",
        0.005,
        0.0,
        "cloud.google.com/vpc/network-pricing#ipaddress",
    ),
    Fixed(
        "Azure",
        "both",
        "Elastic Premium EP1: one always-ready instance (1 vCPU, 3.5 GB)",
        3600 * (0.000048 + 3.5 * 0.00000342),
        0.0,
        "azure.microsoft.com/pricing/details/functions; the plan bills at least one "
        "instance at all times; a pre-warmed instance may add one more while it scales",
    ),
    Fixed(
        "Azure",
        "both",
        "5 private endpoints (blob, queue, table, file, vault)",
        5 * 0.01,
        0.01,
        "azure.microsoft.com/pricing/details/private-link",
    ),
    Fixed(
        "Azure",
        "both",
        "5 private DNS zones",
        5 * 0.50 / HOURS_PER_MONTH,
        0.0,
        "azure.microsoft.com/pricing/details/dns",
    ),
    Fixed(
        "Azure",
        "public",
        "NAT gateway (Standard) on the function's subnet",
        0.045,
        0.045,
        "azure.microsoft.com/pricing/details/azure-nat-gateway; storage and Key Vault stay on "
        "their private endpoints",
    ),
    Fixed(
        "Azure",
        "public",
        "static public IP (Standard)",
        0.005,
        0.0,
        "azure.microsoft.com/pricing/details/ip-addresses",
    ),
]


def fixed_section() -> list[str]:
    """The monthly costs that do not depend on events, per cloud and topology."""
    out = [
        "## Fixed monthly costs",
        "",
        f"What a deployment costs before it copies an event, {HOURS_PER_MONTH} hours a month, "
        f"list prices ({PRICES_AS_OF}). They are larger than the per-event costs below for any "
        "migration under about a billion events. Each template deploys one of two topologies, "
        "chosen by one setting (AWS `NetworkMode`, Google Cloud and Azure `network_mode`): "
        "*peered* (VPC/VNet peering with Event Store Cloud, the default) or *public* (a public "
        "cluster reached through a NAT whose static egress IP its allowlist names). *both* "
        "rows are in either. Data processed by endpoints and NAT is extra, per GB: the events "
        "copied cross it once (and the source's reads, when the source is reached the same "
        "way).",
        "",
        "| cloud | topology | item | USD / month | + USD / GB | source |",
        "|---|---|---|---:|---:|---|",
    ]
    for f in FIXED:
        out.append(
            f"| {f.cloud} | {f.topology} | {f.item} | {f.monthly:,.2f} | "
            + (f"{f.per_gb:.3f}" if f.per_gb else "—")
            + f" | {f.note} |"
        )
    out += ["", "| cloud | peered, USD / month | public, USD / month |", "|---|---:|---:|"]
    for cloud in dict.fromkeys(f.cloud for f in FIXED):
        rows = [f for f in FIXED if f.cloud == cloud]
        peered = sum(f.monthly for f in rows if f.topology in ("peered", "both"))
        public = sum(f.monthly for f in rows if f.topology in ("public", "both"))
        out.append(f"| {cloud} | {peered:,.2f} | {public:,.2f} |")
    out += [
        "",
        "In the public topology the templates keep the AWS interface endpoints, the Google "
        "Cloud connector and the Azure private endpoints, so calls to the clouds' own services "
        "never cross the NAT: it carries the EventStoreDB traffic (on Azure also the "
        "function's telemetry to Azure Monitor and Entra ID sign-ins). One NAT gateway (AWS: "
        "in one Availability Zone, shared by the function's subnets) gives one address to "
        "allowlist; a NAT gateway per zone would double its row and add an address.",
        "",
    ]
    return out


def render(measured: list[Measured], run_note: str, machine: str = "") -> str:
    out = [
        "# Cost model",
        "",
        f"Generated by `bench/replication_bench.py` on {datetime.now(UTC):%Y-%m-%d} from the "
        "rates that run measured at **5 ms emulated latency per target call, random "
        f"interleaving** ({run_note}). Re-run `make bench` to regenerate; do not edit by hand.",
        "",
    ]
    if machine:
        out += [f"Machine: {machine}.", ""]
    out += [
        "## Assumptions",
        "",
        f"- Prices: {PRICES_AS_OF}; on-demand list prices, no free tier, no savings plans.",
    ]
    for c in CLOUDS:
        out.append(
            f"  - {c.name}: {c.deployment}. Invocation ${c.per_invocation * 1e6:.2f}/M, "
            f"${c.per_gb_second:.8f}/GB-s"
            + (f", ${c.per_vcpu_second:.6f}/vCPU-s" if c.per_vcpu_second else "")
            + f"; {c.store}: read ${c.per_store_read * 1e6:.3f}/M, "
            f"write ${c.per_store_write * 1e6:.3f}/M. Source: {c.source}."
        )
    out += [
        f"- One slice per invocation (handlers chain the next one), at most {SLICE_EVENTS:,} "
        "events (the default budget) or the function's timeout less 10 s; "
        f"{START_SECONDS:g} s of start-up per invocation added to the busy time.",
        f"- Checkpoint store: {STORE_READS_PER_SLICE} reads and {STORE_WRITES_PER_SLICE} "
        "writes per slice (the job record read before each conditional write and by the "
        "checkpoint load; writes for lease acquire, commit, slice record with its counter, "
        "release), as the DynamoDB store does them; the same counts assumed for Firestore "
        "documents and Azure Table transactions. Chain messages (one per slice) are left out: "
        "a few cents per million slices.",
        "- Rate in the cloud = the measured rate, capped by the function's CPU share using the "
        "measured CPU seconds per million events (the benchmark machine let the replicator use "
        "a whole core). Network latency to real servers is what the 5 ms stands for.",
        "- Baselines run as a long-lived process (the Replicator is a service): their rows show "
        "compute only, as if hosted the same way, for comparison.",
        "",
    ]
    out += fixed_section()
    for cloud in CLOUDS:
        out += [f"## {cloud.name}", ""]
        out += [
            "| strategy | events/s | invocations / M | GB-s / M | store reads / M "
            "| store writes / M | USD / M events |"
        ]
        out += ["|---|---:|---:|---:|---:|---:|---:|"]
        for m in measured:
            f = per_million(m, cloud)
            counts = [
                f"{f[k]:,.0f}" if m.relay else "—" for k in ("invocations", "reads", "writes")
            ]
            out.append(
                f"| {m.strategy} | {f['rate']:,.0f} | {counts[0]} | {f['gb_seconds']:,.0f} "
                f"| {counts[1]} | {counts[2]} | {f['usd']:.3f} |"
            )
        out.append("")
    out += [
        "## Backfill time at 5 ms",
        "",
        "One job copies `$all` with one writer process at a time (the lease), so a backfill "
        "takes events ÷ rate, whatever the cloud (benchmark-machine rates; the cloud-capped "
        "rates above can be lower).",
        "",
        "| strategy | events/s | 100M events, hours | 1B events, hours |",
        "|---|---:|---:|---:|",
    ]
    for m in measured:
        out.append(
            f"| {m.strategy} | {m.rate:,.0f} | {1e8 / m.rate / 3600:,.1f} "
            f"| {1e9 / m.rate / 3600:,.0f} |"
        )
    return "\n".join(out) + "\n"
