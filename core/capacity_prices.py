"""What each cloud's deployment costs and how a slice uses it: the one copy of the prices.

The capacity model (core/capacity.py, `esdb-relay plan`) and the benchmark's cost model
(bench/cost_model.py, docs/cost-model.md) both price a copy with these: the deployment infra/
makes on each cloud (memory, vCPU, time-out), its list prices, the slices one invocation runs
and the checkpoint-store operations each slice makes.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

PRICES_AS_OF = "list prices as published in 2025 (not re-checked live from this machine)"
SLICE_EVENTS = 20_000  # BudgetConfig.max_events default
START_SECONDS = 2.0  # assumed per invocation: imports, connections, lease (not in the rate)
TIMEOUT_MARGIN_SECONDS = 10.0  # a slice stops this long before the function's time-out
# Checkpoint store operations per slice, as handlers/aws/checkpoint_store.py does them: reads
# for acquire, load, commit and release (core/stores/base.py reads the job record before each
# conditional write), writes for acquire, commit, record_slice = counter + record, release; the
# Firestore and Azure Table stores keep the same records, so the same counts are assumed there.
STORE_READS_PER_SLICE = 4
STORE_WRITES_PER_SLICE = 5
HOURS_PER_MONTH = 730


class Cloud(BaseModel):
    """One cloud's function as infra/ deploys it by default, with its list prices."""

    model_config = ConfigDict(frozen=True)

    key: str  # "aws", "gcp", "azure"
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
    max_parallel: int  # chains (shards) that may run at once, by default
    max_parallel_basis: str

    def process_rate(self, rate: float, cpu_per_million: float) -> float:
        """A measured per-process rate (events/s), capped by this function's CPU share: the
        benchmark machine gave the replicator up to a full core; a 1024 MB Lambda has ~0.58
        of one."""
        if cpu_per_million <= 0:
            return rate
        return min(rate, self.vcpu * 1e6 / cpu_per_million)

    def events_per_slice(self, rate: float) -> float:
        """Events one invocation copies at `rate` events/s: the budget's maximum, or what the
        time-out lets it do."""
        return max(1.0, min(SLICE_EVENTS, rate * (self.timeout_seconds - TIMEOUT_MARGIN_SECONDS)))


class Usage(BaseModel):
    """What a copy bills on one cloud: the counts and their price."""

    invocations: float
    billed_seconds: float  # function (instance) seconds, summed over the chains
    gb_seconds: float
    vcpu_seconds: float
    store_reads: float
    store_writes: float
    usd: float


def slice_seconds(cloud: Cloud, rate: float) -> float:
    """Seconds one chain needs per event at `rate` events/s, its invocations' start-up
    included: the inverse of the rate a chain keeps up over many slices."""
    return 1 / rate + START_SECONDS / cloud.events_per_slice(rate)


def bill(cloud: Cloud, invocations: float, billed_seconds: float) -> Usage:
    """The price of `invocations` that ran `billed_seconds` in all. A function is billed for
    its whole duration, waiting on a server included: K chains slowed by a bound elsewhere
    bill K times the copy's hours."""
    reads = invocations * STORE_READS_PER_SLICE
    writes = invocations * STORE_WRITES_PER_SLICE
    gb_seconds = billed_seconds * cloud.memory_gb
    vcpu_seconds = billed_seconds * cloud.vcpu
    usd = (
        invocations * cloud.per_invocation
        + gb_seconds * cloud.per_gb_second
        + vcpu_seconds * cloud.per_vcpu_second
        + reads * cloud.per_store_read
        + writes * cloud.per_store_write
    )
    return Usage(
        invocations=invocations,
        billed_seconds=billed_seconds,
        gb_seconds=gb_seconds,
        vcpu_seconds=vcpu_seconds,
        store_reads=reads,
        store_writes=writes,
        usd=usd,
    )


CLOUDS: tuple[Cloud, ...] = (
    Cloud(
        key="aws",
        name="AWS Lambda + DynamoDB",
        deployment="1024 MB (infra/aws default, ~0.58 vCPU), 900 s timeout, us-east-1 x86",
        memory_gb=1.0,
        vcpu=0.58,
        timeout_seconds=900,
        per_invocation=0.20 / 1e6,
        per_gb_second=0.0000166667,
        per_vcpu_second=0.0,
        store="DynamoDB on-demand",
        per_store_read=0.125 / 1e6,  # per read request unit (strongly consistent, < 4 KB)
        per_store_write=0.625 / 1e6,  # per write request unit (< 1 KB)
        source="aws.amazon.com/lambda/pricing; aws.amazon.com/dynamodb/pricing/on-demand "
        "(after the 1 Nov 2024 on-demand price cut)",
        max_parallel=1000,
        max_parallel_basis="Lambda's default concurrent executions per account and region "
        "(1,000; new accounts may start lower)",
    ),
    Cloud(
        key="gcp",
        name="Cloud Functions gen2 + Firestore",
        deployment="1 GiB / 1 vCPU (infra/gcp default), 540 s timeout, us-central1, tier 1",
        memory_gb=1.0,
        vcpu=1.0,
        timeout_seconds=540,
        per_invocation=0.40 / 1e6,
        per_gb_second=0.0000025,
        per_vcpu_second=0.000024,
        store="Firestore (regional)",
        per_store_read=0.03 / 1e5,
        per_store_write=0.09 / 1e5,
        source="cloud.google.com/run/pricing (gen2 functions are billed as Cloud Run); "
        "cloud.google.com/firestore/pricing",
        max_parallel=100,
        max_parallel_basis="a gen2 function's default maximum of 100 instances",
    ),
    Cloud(
        key="azure",
        name="Azure Functions EP1 + Table Storage",
        deployment="Elastic Premium EP1: 1 vCPU, 3.5 GB, billed per instance-second, East US",
        memory_gb=3.5,
        vcpu=1.0,
        timeout_seconds=600,
        per_invocation=0.0,
        per_gb_second=0.0123 / 3600,
        per_vcpu_second=0.173 / 3600,
        store="Table Storage (LRS)",
        per_store_read=0.00036 / 1e4,
        per_store_write=0.00036 / 1e4,
        source="azure.microsoft.com/pricing/details/functions (Premium plan: vCPU-hour and "
        "GB-hour); azure.microsoft.com/pricing/details/storage/tables",
        max_parallel=20,
        max_parallel_basis="infra/azure's maximum_instances (1-20), one instance per chain",
    ),
)


class Fixed(BaseModel):
    """A cost that runs whether or not a slice runs: per hour, or per GB it carries."""

    model_config = ConfigDict(frozen=True)

    cloud: str
    topology: str  # "peered", "public" or "both"
    item: str
    per_hour: float
    per_gb: float = 0.0
    note: str = ""
    compute: bool = False  # an instance that also runs slices: billed as compute while copying

    @property
    def monthly(self) -> float:
        return self.per_hour * HOURS_PER_MONTH


# List prices as published in 2025 (PRICES_AS_OF), us-east-1 / us-central1 / East US, for what
# each template deploys. "public" is the topology without peering: egress through a static IP
# that the cluster's allowlist names (NAT gateway / Cloud NAT / NAT gateway).
FIXED: tuple[Fixed, ...] = (
    Fixed(
        cloud="AWS",
        topology="both",
        item="2 interface endpoints (SQS, Secrets Manager) x 2 AZs",
        per_hour=4 * 0.01,
        per_gb=0.01,
        note="aws.amazon.com/privatelink/pricing; + 2 x 2 AZs with CreateLogsEndpoint=true",
    ),
    Fixed(
        cloud="AWS", topology="both", item="DynamoDB gateway endpoint", per_hour=0.0, note="free"
    ),
    Fixed(
        cloud="AWS",
        topology="public",
        item="NAT gateway (one, in NatSubnetId)",
        per_hour=0.045,
        per_gb=0.045,
        note="aws.amazon.com/vpc/pricing; carries only EventStoreDB traffic",
    ),
    Fixed(
        cloud="AWS",
        topology="public",
        item="Elastic IP (public IPv4 address)",
        per_hour=0.005,
        note="aws.amazon.com/vpc/pricing, public IPv4",
    ),
    Fixed(
        cloud="Google Cloud",
        topology="both",
        item="Serverless VPC Access connector: 2 e2-micro instances (min)",
        per_hour=2 * 0.0084,
        note="cloud.google.com/vpc/pricing#serverless-vpc-pricing (billed as VMs)",
    ),
    Fixed(
        cloud="Google Cloud",
        topology="both",
        item="Cloud Scheduler job",
        per_hour=0.10 / HOURS_PER_MONTH,
        note="3 jobs per billing account are free",
    ),
    Fixed(
        cloud="Google Cloud",
        topology="public",
        item="Cloud NAT gateway (2 connector VMs; 3 at most)",
        per_hour=2 * 0.0014,
        per_gb=0.045,
        note="cloud.google.com/nat/pricing; Google APIs bypass it (Private Google Access)",
    ),
    Fixed(
        cloud="Google Cloud",
        topology="public",
        item="static external IP address",
        per_hour=0.005,
        note="cloud.google.com/vpc/network-pricing#ipaddress",
    ),
    Fixed(
        cloud="Azure",
        topology="both",
        item="Elastic Premium EP1: one always-ready instance (1 vCPU, 3.5 GB)",
        per_hour=3600 * (0.000048 + 3.5 * 0.00000342),
        note="azure.microsoft.com/pricing/details/functions; the plan bills at least one "
        "instance at all times; a pre-warmed instance may add one more while it scales",
        compute=True,
    ),
    Fixed(
        cloud="Azure",
        topology="both",
        item="5 private endpoints (blob, queue, table, file, vault)",
        per_hour=5 * 0.01,
        per_gb=0.01,
        note="azure.microsoft.com/pricing/details/private-link",
    ),
    Fixed(
        cloud="Azure",
        topology="both",
        item="5 private DNS zones",
        per_hour=5 * 0.50 / HOURS_PER_MONTH,
        note="azure.microsoft.com/pricing/details/dns",
    ),
    Fixed(
        cloud="Azure",
        topology="public",
        item="NAT gateway (Standard) on the function's subnet",
        per_hour=0.045,
        per_gb=0.045,
        note="azure.microsoft.com/pricing/details/azure-nat-gateway; storage and Key Vault stay "
        "on their private endpoints",
    ),
    Fixed(
        cloud="Azure",
        topology="public",
        item="static public IP (Standard)",
        per_hour=0.005,
        note="azure.microsoft.com/pricing/details/ip-addresses",
    ),
)

FIXED_CLOUD = {"aws": "AWS", "gcp": "Google Cloud", "azure": "Azure"}


def fixed_per_hour(cloud: Cloud, topology: str = "peered", *, while_copying: bool = True) -> float:
    """The deployment's fixed cost per hour on `cloud` in `topology`. While copying, an
    always-ready instance runs slices and is billed as the copy's compute, so it is left out
    here (counted once)."""
    name = FIXED_CLOUD[cloud.key]
    return sum(
        f.per_hour
        for f in FIXED
        if f.cloud == name
        and f.topology in (topology, "both")
        and not (while_copying and f.compute)
    )
