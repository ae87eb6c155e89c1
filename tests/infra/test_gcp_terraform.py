"""Offline checks of infra/gcp, the Terraform (google provider) deployment.

The google provider cannot be downloaded here, so `terraform init/validate` is impossible. What
runs instead: `terraform fmt -check`; structural tests on the configuration parsed by python-hcl2;
the variable validations evaluated by terraform itself (a plan of variables.tf alone needs no
provider); the functions' environment checked against JobConfig, the handler and the Firestore
store; and checkov, with zero failed checks other than ones suppressed in the code with a reason.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import pytest
from hcl2 import SerializationOptions

from tests.infra.checkov import run_checkov

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra" / "gcp"
HANDLER = ROOT / "handlers" / "gcp" / "main.py"
OPTIONS = SerializationOptions(strip_string_quotes=True, explicit_blocks=False)

RELAY_SA = "${google_service_account.relay.member}"
TRIGGER_SA = "${google_service_account.trigger.member}"
BUILD_SA = "${google_service_account.build.member}"
TOPIC_ID = "${google_pubsub_topic.slices.id}"
PROJECT = "${var.project}"


# --- the parsed configuration ----------------------------------------------------------------


class Config:
    """All *.tf files of one folder, parsed and merged."""

    def __init__(self, folder: Path) -> None:
        self.texts = {p.name: p.read_text() for p in sorted(folder.glob("*.tf"))}
        assert self.texts, f"no .tf files in {folder}"
        self.resources: dict[str, dict[str, dict[str, Any]]] = {}
        self.variables: dict[str, dict[str, Any]] = {}
        self.outputs: dict[str, dict[str, Any]] = {}
        self.locals: dict[str, Any] = {}
        self.terraform: list[dict[str, Any]] = []
        for text in self.texts.values():
            doc = hcl2.loads(text, serialization_options=OPTIONS)
            for block in doc.get("resource", []):
                for rtype, named in block.items():
                    for rname, body in named.items():
                        assert rname not in self.resources.get(rtype, {}), f"{rtype}.{rname} twice"
                        self.resources.setdefault(rtype, {})[rname] = body
            for block in doc.get("variable", []):
                self.variables.update(block)
            for block in doc.get("output", []):
                self.outputs.update(block)
            for block in doc.get("locals", []):
                self.locals.update({k: v for k, v in block.items() if k != "__comments__"})
            self.terraform += doc.get("terraform", [])

    def of(self, rtype: str) -> dict[str, dict[str, Any]]:
        return self.resources.get(rtype, {})

    def iam_grants(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(type, name, body) of every IAM member resource."""
        return [
            (rtype, rname, body)
            for rtype, named in self.resources.items()
            if rtype.endswith("_iam_member")
            for rname, body in named.items()
        ]


def one(blocks: Any) -> dict[str, Any]:
    assert isinstance(blocks, list) and len(blocks) == 1, f"expected one block, got {blocks!r}"
    return blocks[0]


def strings(value: Any) -> list[str]:
    """Every string inside a parsed value, comments excluded."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() if k != "__comments__" for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


@pytest.fixture(scope="module")
def tf() -> Config:
    return Config(INFRA)


def functions(tf: Config) -> dict[str, dict[str, Any]]:
    found = tf.of("google_cloudfunctions2_function")
    assert set(found) == {"event", "http"}, f"functions: {sorted(found)}"
    return found


# --- terraform itself ---------------------------------------------------------------------------


def terraform(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("terraform")
    if binary is None:
        pytest.fail("terraform is not on PATH: install Terraform >= 1.9 (infra/gcp needs it)")
    env = {**os.environ, "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1"}
    env["TF_CLI_CONFIG_FILE"] = os.devnull  # no provider is needed, so no mirror configuration
    return subprocess.run(
        [binary, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_terraform_fmt_check() -> None:
    proc = terraform("fmt", "-check", "-recursive", "-diff", "-no-color", str(INFRA), cwd=ROOT)
    assert proc.returncode == 0, f"run `terraform fmt -recursive infra/gcp`:\n{proc.stdout}"


def test_google_provider_and_terraform_versions_are_pinned(tf: Config) -> None:
    block = one(tf.terraform)
    google = one(block["required_providers"])["google"]
    assert google["source"] == "hashicorp/google"
    assert re.fullmatch(r"~>\s*\d+\.\d+(\.\d+)?|.*<\s*\d+.*", google["version"]), (
        f"google provider version {google['version']!r} has no upper bound"
    )
    # Variable validations that refer to other variables need Terraform 1.9.
    assert re.search(r">=\s*1\.(9|[1-9]\d)", block["required_version"]), block["required_version"]


# --- network: inside the peered VPC, private egress, internal ingress -----------------------


def test_functions_reach_the_peered_vpc_through_the_connector_with_private_ranges_egress(
    tf: Config,
) -> None:
    subnet = tf.of("google_compute_subnetwork")["connector"]
    assert subnet["network"] == "${var.network}"
    assert subnet["ip_cidr_range"] == "${var.connector_cidr}"
    assert subnet["region"] == "${var.region}"
    connector = tf.of("google_vpc_access_connector")["relay"]
    assert one(connector["subnet"])["name"] == "${google_compute_subnetwork.connector.name}"
    assert connector["region"] == "${var.region}"
    assert "ip_cidr_range" not in connector and "network" not in connector
    for name, function in functions(tf).items():
        service = one(function["service_config"])
        assert service["vpc_connector"] == "${google_vpc_access_connector.relay.id}", name
        # peered: private ranges only; public: everything, so the NAT's address is the source
        assert service["vpc_connector_egress_settings"] == (
            '${local.public ? "ALL_TRAFFIC" : "PRIVATE_RANGES_ONLY"}'
        ), name
        assert "direct_vpc_network_interface" not in service, name
        assert function["location"] == "${var.region}", name


def test_connector_range_must_lie_inside_the_peering_range(tf: Config) -> None:
    conditions = [v["condition"] for v in tf.variables["connector_cidr"]["validation"]]
    containment = [c for c in conditions if "var.peering_cidr" in c]
    assert containment, "no validation of connector_cidr refers to peering_cidr"
    assert any("cidrhost(" in c for c in containment), containment


def test_network_mode_is_one_variable_peered_by_default(tf: Config) -> None:
    mode = tf.variables["network_mode"]
    assert mode["default"] == "peered"
    assert '["peered", "public"]' in one(mode["validation"])["condition"]
    assert tf.locals["public"] == '${var.network_mode == "public"}'
    # the NAT pieces exist in the public topology only
    public = {
        (rtype, rname)
        for rtype, named in tf.resources.items()
        for rname, body in named.items()
        if body.get("count") == "${local.public ? 1 : 0}"
    }
    assert public == {
        ("google_compute_address", "egress"),
        ("google_compute_router", "egress"),
        ("google_compute_router_nat", "egress"),
    }


def test_public_topology_leaves_through_cloud_nat_with_a_reserved_static_address(
    tf: Config,
) -> None:
    address = tf.of("google_compute_address")["egress"]
    assert address["address_type"] == "EXTERNAL" and address["region"] == "${var.region}"
    router = tf.of("google_compute_router")["egress"]
    assert router["network"] == "${var.network}" and router["region"] == "${var.region}"
    nat = tf.of("google_compute_router_nat")["egress"]
    assert nat["router"] == "${google_compute_router.egress[0].name}"
    # only the reserved address (never an automatic one, which could change) ...
    assert nat["nat_ip_allocate_option"] == "MANUAL_ONLY"
    assert nat["nat_ips"] == ["${google_compute_address.egress[0].self_link}"]
    # ... for the connector's subnet only (nothing else in the VPC changes)
    assert nat["source_subnetwork_ip_ranges_to_nat"] == "LIST_OF_SUBNETWORKS"
    subnetwork = one(nat["subnetwork"])
    assert subnetwork["name"] == "${google_compute_subnetwork.connector.id}"
    assert subnetwork["source_ip_ranges_to_nat"] == ["ALL_IP_RANGES"]
    # Google APIs stay off the NAT: Private Google Access on the connector's subnet
    assert tf.of("google_compute_subnetwork")["connector"]["private_ip_google_access"] is True
    output = tf.outputs["egress_ip"]
    assert output["value"] == "${local.public ? google_compute_address.egress[0].address : null}"
    assert "allowlist" in output["description"]
    assert tf.locals["egress_ip"] == (
        '${local.public ? google_compute_address.egress[0].address : ""}'
    )
    environment = tf.locals["relay_environment"]
    assert environment["ESDB_RELAY_PREFLIGHT__EGRESS_IPS"] == "${local.egress_ip}"
    assert environment["ESDB_RELAY_PREFLIGHT__NETWORK_MODE"] == "${var.network_mode}"


def test_functions_accept_internal_traffic_only(tf: Config) -> None:
    for name, function in functions(tf).items():
        assert one(function["service_config"])["ingress_settings"] == "ALLOW_INTERNAL_ONLY", name


def test_no_public_or_domain_wide_principal_anywhere(tf: Config) -> None:
    for rtype, named in tf.resources.items():
        for rname, body in named.items():
            for s in strings(body):
                assert not re.search(r"allUsers|allAuthenticatedUsers|domain:", s), (
                    f"{rtype}.{rname}: {s}"
                )
    for rtype in tf.resources:
        assert not rtype.endswith(("_iam_binding", "_iam_policy")), (
            f"{rtype}: use additive *_iam_member grants, never authoritative bindings or policies"
        )


def test_only_the_trigger_and_the_operators_may_invoke(tf: Config) -> None:
    invokers = {
        (rtype, rname): body
        for rtype, rname, body in tf.iam_grants()
        if body["role"] in ("roles/run.invoker", "roles/cloudfunctions.invoker")
    }
    assert set(invokers) == {
        ("google_cloud_run_v2_service_iam_member", "trigger_invokes_event"),
        ("google_cloud_run_v2_service_iam_member", "operators_invoke_http"),
    }
    trigger = invokers[("google_cloud_run_v2_service_iam_member", "trigger_invokes_event")]
    assert trigger["member"] == TRIGGER_SA
    assert trigger["name"] == "${google_cloudfunctions2_function.event.name}"
    ops = invokers[("google_cloud_run_v2_service_iam_member", "operators_invoke_http")]
    assert ops["for_each"] == "${toset(var.operators)}" and ops["member"] == "${each.value}"
    assert ops["name"] == "${google_cloudfunctions2_function.http.name}"
    assert tf.variables["operators"]["default"] == []


# --- triggers: schedule, Pub/Sub, chaining ------------------------------------------------------


def handler_entry_points() -> set[str]:
    tree = ast.parse(HANDLER.read_text())
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.decorator_list}


def test_schedule_publishes_an_empty_request_to_the_job_topic(tf: Config) -> None:
    jobs = tf.of("google_cloud_scheduler_job")
    assert list(jobs) == ["tick"]
    job = jobs["tick"]
    assert job["schedule"] == "${var.schedule}"
    target = one(job["pubsub_target"])
    assert target["topic_name"] == TOPIC_ID
    assert target["data"] == '${base64encode("{}")}'
    assert "http_target" not in job


def test_event_function_is_pushed_the_job_topic_retried_and_dead_lettered(tf: Config) -> None:
    """The job's own push subscription (Terraform manages it, unlike an Eventarc trigger's):
    retries with backoff, then the dead-letter topic, with the Pub/Sub service agent's two
    roles that dead-lettering needs."""
    event, http = functions(tf)["event"], functions(tf)["http"]
    assert "event_trigger" not in event and "event_trigger" not in http
    push = tf.of("google_pubsub_subscription")["push"]
    assert push["topic"] == TOPIC_ID
    url = "${google_cloudfunctions2_function.event.service_config[0].uri}"
    config = one(push["push_config"])
    assert config["push_endpoint"] == url
    token = one(config["oidc_token"])
    assert token["service_account_email"] == "${google_service_account.trigger.email}"
    assert token["audience"] == url
    dead = one(push["dead_letter_policy"])
    assert dead["dead_letter_topic"] == "${google_pubsub_topic.dead_letter.id}"
    assert dead["max_delivery_attempts"] == "${var.max_delivery_attempts}"
    assert one(push["retry_policy"])["minimum_backoff"] == "10s"
    # a delivery may take as long as the function's longest timeout (540 s)
    assert push["ack_deadline_seconds"] >= 540
    publisher = tf.of("google_pubsub_topic_iam_member")["pubsub_dead_letters"]
    assert (publisher["topic"], publisher["role"]) == (
        "${google_pubsub_topic.dead_letter.name}",
        "roles/pubsub.publisher",
    )
    subscriber = tf.of("google_pubsub_subscription_iam_member")["pubsub_dead_letters"]
    assert subscriber["subscription"] == "${var.name}-slices-push"
    assert push["name"] == "${var.name}-slices-push"
    assert subscriber["role"] == "roles/pubsub.subscriber"
    for grant in (publisher, subscriber):
        assert grant["member"] == "${local.pubsub_service_agent}"
    assert "attach_dead_letter_topic" not in tf.outputs  # no manual step any more
    # The chain publishes to the very topic that is pushed to the function.
    assert tf.locals["relay_environment"]["ESDB_RELAY_CHAIN_TOPIC"] == TOPIC_ID
    entry = {n: one(f["build_config"])["entry_point"] for n, f in functions(tf).items()}
    assert entry == {"event": "on_event", "http": "on_http"}
    assert set(entry.values()) <= handler_entry_points()


def test_dead_letter_topic_is_kept(tf: Config) -> None:
    topics = tf.of("google_pubsub_topic")
    assert set(topics) == {"slices", "dead_letter"}
    sub = tf.of("google_pubsub_subscription")["dead_letter"]
    assert sub["topic"] == "${google_pubsub_topic.dead_letter.id}"
    assert "push_config" not in sub
    assert "gcp-sa-pubsub.iam.gserviceaccount.com" in tf.locals["pubsub_service_agent"]


def test_the_build_waits_for_its_roles_to_propagate(tf: Config) -> None:
    """Google's example for a custom build service account: the roles, then a 60 s wait."""
    wait = tf.of("time_sleep")["build_identity_propagation"]
    assert wait["create_duration"] == "60s"
    waited = set(wait["depends_on"])
    assert {
        "${google_project_iam_member.build_sources}",
        "${google_artifact_registry_repository_iam_member.build_pushes_image}",
        "${google_project_iam_member.build_log_writer}",
    } <= waited
    for name, function in functions(tf).items():
        assert "${time_sleep.build_identity_propagation}" in function["depends_on"], name
    versions = one(tf.terraform)["required_providers"]
    providers = versions[0] if isinstance(versions, list) else versions
    assert providers["time"]["source"] == "hashicorp/time"


def test_alert_policies_match_the_aws_alarms(tf: Config) -> None:
    """Lag, failed slices, no slice for N minutes, stalled, dead-lettered events, dead letters:
    one policy each, each on a metric that exists, notifying var.notification_channels (the
    relay's figures, their dashboard and an applied filter: test_gcp_monitoring.py)."""
    policies = tf.of("google_monitoring_alert_policy")
    assert set(policies) == {
        "lag",
        "failed_slices",
        "no_slice",
        "dead_letters",
        "stalled",
        "dead_lettered",
    }
    metrics = tf.of("google_logging_metric")
    for name, policy in policies.items():
        assert policy["notification_channels"] == "${var.notification_channels}", name
        condition = one(policy["conditions"])
        body = one(condition.get("condition_threshold") or condition["condition_absent"])
        if name == "dead_letters":
            assert "num_undelivered_messages" in body["filter"]
            assert "${google_pubsub_subscription.dead_letter.name}" in body["filter"]
        else:
            used = re.findall(
                r"\$\{google_logging_metric\.(\w+)(?:\[\"(\w+)\"\])?\.name\}", body["filter"]
            )
            assert len(used) == 1 and used[0][0] in metrics, (name, body["filter"])
    assert "condition_absent" in one(policies["no_slice"]["conditions"])
    # the severity core/logs.py writes for Cloud Logging
    assert "severity>=ERROR" in metrics["error_lines"]["filter"]
    assert "jsonPayload.slice.status:*" in metrics["slices"]["filter"]


# --- secrets ------------------------------------------------------------------------------------


def test_connection_strings_reach_the_functions_only_as_secret_environment_variables(
    tf: Config,
) -> None:
    assert not ({"ESDB_RELAY_SOURCE", "ESDB_RELAY_TARGET"} & set(tf.locals["relay_environment"]))
    assert tf.locals["environment"] == "${merge(var.job_settings, local.relay_environment)}"
    secrets = tf.of("google_secret_manager_secret")
    assert set(secrets) == {"source", "target"}
    for name, function in functions(tf).items():
        service = one(function["service_config"])
        assert service["environment_variables"] == "${local.environment}", name
        assert "environment_variables" not in one(function["build_config"]), name
        by_key = {s["key"]: s for s in service["secret_environment_variables"]}
        assert set(by_key) == {"ESDB_RELAY_SOURCE", "ESDB_RELAY_TARGET"}, name
        for key, which in (("ESDB_RELAY_SOURCE", "source"), ("ESDB_RELAY_TARGET", "target")):
            ref = by_key[key]
            assert ref["secret"] == f"${{google_secret_manager_secret.{which}.secret_id}}"
            assert ref["project_id"] == PROJECT
    # The values are added by the operator, never through Terraform (and so never in its state).
    assert not tf.of("google_secret_manager_secret_version")
    for rtype, named in tf.resources.items():
        for rname, body in named.items():
            assert "secret_data" not in json.dumps(body), f"{rtype}.{rname}"
    for file, text in tf.texts.items():
        literal = re.search(r"\b(esdb|kurrentdb)(\+discover)?://", text)
        assert literal is None, f"{file} holds a connection string: {literal}"


# --- identities -----------------------------------------------------------------------------


def grants_to(tf: Config, member: str) -> set[tuple[str, str, str]]:
    scopes = ("secret_id", "topic", "name", "bucket", "repository", "service_account_id", "project")
    found = set()
    for rtype, _, body in tf.iam_grants():
        if body["member"] == member:
            scope = next(body[k] for k in scopes if k in body)
            found.add((rtype, scope, body["role"]))
    return found


def test_functions_run_as_the_dedicated_service_account(tf: Config) -> None:
    account = tf.of("google_service_account")["relay"]
    assert account["account_id"] == "${var.name}-fn"
    for name, function in functions(tf).items():
        service = one(function["service_config"])
        assert service["service_account_email"] == "${google_service_account.relay.email}", name
        build = one(function["build_config"])
        assert build["service_account"] == "${google_service_account.build.id}", name
    # Nothing else runs as, or is granted to, the functions' identity by other means.
    for rtype, named in tf.resources.items():
        for rname, body in named.items():
            if rtype.startswith("google_cloudfunctions2"):
                continue
            text = json.dumps(body)
            if "google_service_account.relay." in text:
                assert rtype.endswith("_iam_member"), f"{rtype}.{rname}"


def test_function_identity_has_exactly_the_least_privilege_roles(tf: Config) -> None:
    assert grants_to(tf, RELAY_SA) == {
        ("google_project_iam_member", PROJECT, "roles/datastore.user"),
        (
            "google_secret_manager_secret_iam_member",
            "${google_secret_manager_secret.source.secret_id}",
            "roles/secretmanager.secretAccessor",
        ),
        (
            "google_secret_manager_secret_iam_member",
            "${google_secret_manager_secret.target.secret_id}",
            "roles/secretmanager.secretAccessor",
        ),
        (
            "google_pubsub_topic_iam_member",
            "${google_pubsub_topic.slices.name}",
            "roles/pubsub.publisher",
        ),
        ("google_project_iam_member", PROJECT, "roles/logging.logWriter"),
        ("google_project_iam_member", PROJECT, "roles/monitoring.metricWriter"),
    }
    datastore = tf.of("google_project_iam_member")["relay_datastore_user"]
    expression = one(datastore["condition"])["expression"]
    assert expression == 'resource.name == "projects/${var.project}/databases/${local.database_id}"'


def test_trigger_and_build_identities_have_exactly_their_roles(tf: Config) -> None:
    assert grants_to(tf, TRIGGER_SA) == {
        (
            "google_cloud_run_v2_service_iam_member",
            "${google_cloudfunctions2_function.event.name}",
            "roles/run.invoker",
        )
    }
    assert grants_to(tf, BUILD_SA) == {
        ("google_project_iam_member", PROJECT, "roles/storage.objectAdmin"),
        (
            "google_artifact_registry_repository_iam_member",
            "${google_artifact_registry_repository.functions.name}",
            "roles/artifactregistry.writer",
        ),
        ("google_project_iam_member", PROJECT, "roles/logging.logWriter"),
    }
    # object admin on the two function source buckets only: Cloud Functions' and ours
    sources = tf.of("google_project_iam_member")["build_sources"]
    expression = one(sources["condition"])["expression"]
    assert "projects/_/buckets/${local.gcf_sources_bucket}" in expression
    assert "projects/_/buckets/${google_storage_bucket.source.name}" in expression
    assert tf.locals["gcf_sources_bucket"] == (
        "gcf-v2-sources-${data.google_project.this.number}-${var.region}"
    )


def test_no_broad_roles(tf: Config) -> None:
    for rtype, rname, body in tf.iam_grants():
        role = body["role"]
        assert role not in ("roles/owner", "roles/editor", "roles/viewer"), f"{rtype}.{rname}"
        if role == "roles/storage.objectAdmin":  # the build's, on two buckets (checked above)
            assert "condition" in body, f"{rtype}.{rname}: object admin everywhere"
            continue
        assert not role.endswith(("Admin", ".admin")), f"{rtype}.{rname}: {role}"
        if rtype == "google_project_iam_member":
            assert role not in (
                "roles/iam.serviceAccountUser",
                "roles/iam.serviceAccountTokenCreator",
            ), f"{rtype}.{rname}: impersonation at project level"


# --- checkpoint store -------------------------------------------------------------------------


def test_firestore_native_database_with_a_ttl_policy_on_the_store_history_field(
    tf: Config,
) -> None:
    from handlers.gcp import checkpoint_store

    database = tf.of("google_firestore_database")["checkpoints"]
    assert database["type"] == "FIRESTORE_NATIVE"
    assert database["name"] == "${local.database_id}"
    field = tf.of("google_firestore_field")["slices_expire_at"]
    assert field["database"] == "${google_firestore_database.checkpoints.name}"
    # The store writes `expire_at` on the records of its history subcollection.
    assert field["collection"] == checkpoint_store.SLICES
    assert field["field"] == "expire_at"
    assert re.search(r"""["']expire_at["']""", Path(checkpoint_store.__file__).read_text())
    assert one(field["ttl_config"]) == {}
    # Index exemptions only where no query reads: history() orders slices by `seq`.
    fields = tf.of("google_firestore_field").values()
    exempt = {(f["collection"], f["field"]) for f in fields if f.get("index_config") == [{}]}
    assert exempt == {
        ("slices", "expire_at"),
        ("slices", "record"),
        ("${var.checkpoint_collection}", "checkpoint"),
    }
    assert all(f["field"] != "seq" for f in fields)


# --- the functions' environment against the code that reads it --------------------------------


SAMPLE = {
    "var.project": "my-project",
    "var.name": "orders-relay",
    "var.job_id": "orders-migration",
    "var.mode": "partitioned",
    "var.partitions": "4",
    "var.shards": "3",
    "var.slice_max_events": "5000",
    "var.schedule_seconds": "600",
    "var.timeout_seconds": "540",
    "var.checkpoint_collection": "esdb-relay-checkpoints",
    "var.connector_cidr": "10.10.255.240/28",
    "var.peering_cidr": "10.10.0.0/16",
    "var.network_mode": "peered",
    "local.public": "false",  # var.network_mode == "public"
    "local.egress_ip": "",
    "google_pubsub_topic.slices.id": "projects/my-project/topics/orders-relay-slices",
}


def evaluate(tf: Config, value: str, sample: dict[str, str] = SAMPLE) -> str:
    """The few expression forms the environment uses (references, tostring, and `C ? A : B`
    with references or ""), with sample values; anything else fails."""

    def term(expr: str) -> str:
        expr = expr.strip()
        if expr == '""':
            return ""
        inner = re.fullmatch(r"tostring\((.+)\)", expr)
        expr = inner.group(1) if inner else expr
        if expr in sample:
            return sample[expr]
        if expr.startswith("local."):
            return evaluate(tf, tf.locals[expr.removeprefix("local.")], sample)
        raise AssertionError(f"the test cannot evaluate ${{{expr}}}: add it to the sample")

    def one_ref(m: re.Match[str]) -> str:
        conditional = re.fullmatch(r"(.+?)\?(.+?):(.+)", m.group(1))
        if conditional:
            condition, yes, no = conditional.groups()
            return term(yes) if term(condition) == "true" else term(no)
        return term(m.group(1))

    return re.sub(r"\$\{([^{}]+)\}", one_ref, value)


def test_environment_is_a_valid_job_for_the_handler_and_store(
    tf: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.config import JobConfig
    from handlers.gcp.checkpoint_store import parse_firestore_url

    environment = {k: evaluate(tf, v) for k, v in tf.locals["relay_environment"].items()}
    for key in [k for k in os.environ if k.startswith("ESDB_RELAY_")]:
        monkeypatch.delenv(key)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    # What Secret Manager injects at run time.
    monkeypatch.setenv("ESDB_RELAY_SOURCE", "esdb://source.internal:2113?tls=false")
    monkeypatch.setenv("ESDB_RELAY_TARGET", "esdb+discover://admin:pw@cluster.esc:2113")
    job = JobConfig.load()
    assert (job.job_id, job.mode, job.partitions) == ("orders-migration", "partitioned", 4)
    assert job.budget.max_events == 5000
    assert job.schedule_seconds == 600
    collection, options = parse_firestore_url(job.checkpoint_store)
    assert collection == "esdb-relay-checkpoints"
    assert options == {"project": "my-project", "database": "orders-relay-checkpoints"}
    # The handler reads the chain topic and the time-out under these names.
    handler = HANDLER.read_text()
    for key in ("ESDB_RELAY_CHAIN_TOPIC", "ESDB_RELAY_FUNCTION_TIMEOUT"):
        assert f'"{key}"' in handler and key in environment
    assert environment["GOOGLE_CLOUD_PROJECT"] == "my-project"
    # The time-out the handler budgets with is the functions' time-out.
    assert tf.locals["relay_environment"]["ESDB_RELAY_FUNCTION_TIMEOUT"] == (
        "${tostring(var.timeout_seconds)}"
    )
    for function in functions(tf).values():
        assert one(function["service_config"])["timeout_seconds"] == "${var.timeout_seconds}"


def test_job_settings_cannot_override_what_the_module_sets(tf: Config) -> None:
    conditions = " ".join(v["condition"] for v in tf.variables["job_settings"]["validation"])
    reserved = set(re.findall(r'"(ESDB_RELAY_[A-Z_]+)"', conditions))
    module_set = set(tf.locals["relay_environment"]) - {"GOOGLE_CLOUD_PROJECT"}
    assert reserved == module_set | {"ESDB_RELAY_SOURCE", "ESDB_RELAY_TARGET"}


# --- variable validations ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "variable",
    [
        "project",
        "region",
        "name",
        "network_mode",
        "network",
        "peering_cidr",
        "connector_cidr",
        "esc_cidr",
        "job_id",
        "schedule",
        "mode",
        "partitions",
        "shards",
        "slice_max_events",
        "job_settings",
        "source_zip",
        "timeout_seconds",
        "runtime",
        "memory",
        "cpu",
        "operators",
    ],
)
def test_variable_has_a_validation(tf: Config, variable: str) -> None:
    validations = tf.variables[variable].get("validation", [])
    assert validations, f"variable {variable} has no validation block"
    for v in validations:
        assert f"var.{variable}" in v["condition"] and v["error_message"].strip()


BASE = {
    "project": "my-project",
    "region": "europe-west1",
    "network": "vpc-esc",
    "peering_cidr": "10.10.0.0/16",
    "connector_cidr": "10.10.255.240/28",
    "job_id": "orders-migration",
    "source_zip": "relay.zip",
}

CASES: list[tuple[str, dict[str, Any], str | None]] = [
    ("defaults", {}, None),
    (
        "all set",
        {
            "name": "orders-relay",
            "esc_cidr": "172.16.0.0/16",
            "mode": "partitioned",
            "partitions": 6,
            "schedule": "0 */2 * * MON-FRI",
            "slice_max_events": 50000,
            "operators": [
                "group:migration@example.com",
                "serviceAccount:ci@p.iam.gserviceaccount.com",
            ],
            "job_settings": {"ESDB_RELAY_FILTERS__INCLUDE_STREAMS": '["^order-"]'},
        },
        None,
    ),
    (
        "connector is the last /28 of a /24",
        {"peering_cidr": "10.10.0.0/24", "connector_cidr": "10.10.0.240/28"},
        None,
    ),
    ("eight shards", {"shards": 8}, None),
    ("too many shards", {"shards": 65}, "shards"),
    ("half a shard", {"shards": 1.5}, "shards"),
    ("connector outside the peering", {"connector_cidr": "10.11.0.0/28"}, "connector_cidr"),
    (
        "connector just past a /24",
        {"peering_cidr": "10.10.0.0/24", "connector_cidr": "10.10.1.0/28"},
        "connector_cidr",
    ),
    ("connector larger than /28", {"connector_cidr": "10.10.0.0/27"}, "connector_cidr"),
    ("connector not a network address", {"connector_cidr": "10.10.0.5/28"}, "connector_cidr"),
    ("connector not a CIDR", {"connector_cidr": "10.10.0.0"}, "connector_cidr"),
    ("peering not a CIDR", {"peering_cidr": "10.10.0.0"}, "peering_cidr"),
    ("peering host bits set", {"peering_cidr": "10.10.3.0/16"}, "peering_cidr"),
    ("esc network overlaps the peering", {"esc_cidr": "10.10.128.0/20"}, "esc_cidr"),
    ("esc network contains the peering", {"esc_cidr": "10.0.0.0/8"}, "esc_cidr"),
    ("schedule in words", {"schedule": "every 5 minutes"}, "schedule"),
    ("schedule with seconds", {"schedule": "0 */5 * * * *"}, "schedule"),
    ("unknown mode", {"mode": "parallel"}, "mode"),
    ("partitions in ordered mode", {"partitions": 4}, "partitions"),
    ("zero events per slice", {"slice_max_events": 0}, "slice_max_events"),
    ("fractional events per slice", {"slice_max_events": 1.5}, "slice_max_events"),
    ("public invoker", {"operators": ["allUsers"]}, "operators"),
    ("any Google account", {"operators": ["allAuthenticatedUsers"]}, "operators"),
    ("a whole domain", {"operators": ["domain:example.com"]}, "operators"),
    ("source in plain env", {"job_settings": {"ESDB_RELAY_SOURCE": "x"}}, "job_settings"),
    (
        "connection string in a setting",
        {"job_settings": {"ESDB_RELAY_TRANSFORM": "esdb://admin:pw@db:2113"}},
        "job_settings",
    ),
    ("setting the module owns", {"job_settings": {"ESDB_RELAY_JOB_ID": "other"}}, "job_settings"),
    ("not a relay setting", {"job_settings": {"PATH": "/tmp"}}, "job_settings"),
    ("zip that is not a zip", {"source_zip": "relay.tar.gz"}, "source_zip"),
    ("zip that does not exist", {"source_zip": "missing.zip"}, "source_zip"),
    ("time-out above the event limit", {"timeout_seconds": 600}, "timeout_seconds"),
    ("8Gi on one vCPU", {"memory": "8Gi"}, "cpu"),
    ("4 vCPUs with 1Gi", {"cpu": "4"}, "cpu"),
    ("4 vCPUs with 2Gi", {"cpu": "4", "memory": "2Gi"}, None),
    ("invalid job id", {"job_id": "orders migration"}, "job_id"),
    ("uppercase name", {"name": "Orders"}, "name"),
    ("name too long for the connector", {"name": "a-very-long-relay-name"}, "name"),
    ("project id too short", {"project": "abc"}, "project"),
    # the public topology: no peering range; the connector may be anywhere in the VPC
    (
        "public, no peering",
        {"network_mode": "public", "peering_cidr": None, "connector_cidr": "10.99.0.0/28"},
        None,
    ),
    ("public with a peering range", {"network_mode": "public"}, "peering_cidr"),
    ("peered without a peering range", {"peering_cidr": None}, "peering_cidr"),
    (
        "public with an esc range",
        {"network_mode": "public", "peering_cidr": None, "esc_cidr": "172.16.0.0/16"},
        "esc_cidr",
    ),
    ("unknown network mode", {"network_mode": "nat"}, "network_mode"),
]


@pytest.fixture(scope="module")
def variables_only(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """variables.tf alone: terraform plans it (and so evaluates every validation) with no
    provider to download."""
    folder = tmp_path_factory.mktemp("gcp-variables")
    shutil.copy(INFRA / "variables.tf", folder / "variables.tf")
    (folder / "relay.zip").write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip
    return folder


def rejected_variables(output: str) -> set[str]:
    """The variables whose validation rules failed ("checked by the validation rule at
    variables.tf:LINE,...": the variable block that holds LINE)."""
    starts = [
        (number, m.group(1))
        for number, line in enumerate((INFRA / "variables.tf").read_text().splitlines(), 1)
        if (m := re.match(r'variable "(\w+)"', line))
    ]
    lines = [int(n) for n in re.findall(r"validation rule at variables\.tf:(\d+),", output)]
    return {next(name for start, name in reversed(starts) if start <= n) for n in lines}


@pytest.mark.parametrize(("case", "values", "rejected"), CASES, ids=[c[0] for c in CASES])
def test_variable_validation(
    variables_only: Path, case: str, values: dict[str, Any], rejected: str | None
) -> None:
    var_file = variables_only / "case.tfvars.json"
    merged = {k: v for k, v in {**BASE, **values}.items() if v is not None}  # None: unset
    var_file.write_text(json.dumps(merged))
    proc = terraform(
        "plan", "-input=false", "-no-color", "-lock=false", "-refresh=false",
        f"-var-file={var_file.name}", cwd=variables_only,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    if rejected is None:
        assert proc.returncode == 0, f"{case}: refused:\n{output}"
    else:
        assert proc.returncode != 0, f"{case}: accepted"
        assert rejected_variables(output) == {rejected}, f"{case}:\n{output}"


def test_example_tfvars_passes_the_validations(variables_only: Path) -> None:
    example = variables_only / "example.tfvars"
    shutil.copy(INFRA / "example.tfvars", example)
    proc = terraform(
        "plan", "-input=false", "-no-color", "-lock=false", "-refresh=false",
        f"-var-file={example.name}", "-var=source_zip=relay.zip", cwd=variables_only,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- checkov ------------------------------------------------------------------------------------


def test_checkov_passes_with_only_reasoned_suppressions(tf: Config) -> None:
    report = run_checkov(INFRA, "terraform")
    assert not report.failed, "checkov failed:\n" + "\n".join(
        f"{c.check_id} {c.resource} ({c.file})" for c in report.failed
    )
    # Every suppression is in the code with a written reason, and checkov honoured each one.
    in_code = {
        (m.group(1), m.group(2).strip())
        for text in tf.texts.values()
        for m in re.finditer(r"#\s*checkov:skip=(CKV2?_[A-Z]+_\d+):?(.*)", text)
    }
    for check_id, reason in in_code:
        assert len(reason) >= 20, f"{check_id}: suppressed without a real reason: {reason!r}"
    assert {c.check_id for c in report.skipped} == {c for c, _ in in_code}
    for c in report.skipped:
        assert c.reason and len(c.reason) >= 20, f"{c.check_id} {c.resource}: no reason"
    # checkov did look at the functions (ingress check).
    ingress = {c.resource for c in report.passed if c.check_id == "CKV_GCP_124"}
    assert ingress == {f"google_cloudfunctions2_function.{n}" for n in ("event", "http")}


def test_shards_deploy_a_chain_each_from_one_setting(tf: Config) -> None:
    """`shards` (ESDB_RELAY_SHARDS) deploys K chains: the event function may run an instance
    per shard's chain and one for the tick (one for a job of one chain)."""
    variable = tf.variables["shards"]
    assert variable["default"] == 1
    assert "global order is NOT kept across shards" in variable["description"]
    assert tf.locals["relay_environment"]["ESDB_RELAY_SHARDS"] == "${tostring(var.shards)}"
    event = one(functions(tf)["event"]["service_config"])
    assert event["max_instance_count"] == "${var.shards == 1 ? 1 : var.shards + 1}"
    http = one(functions(tf)["http"]["service_config"])
    assert http["max_instance_count"] == 1  # manual invokes: one at a time
