"""`preflight`: real emulators and sockets, no mocks.

Each broken setup fails the check that names it, with a fix; passwords never reach the report
or the CLI output.
"""

from __future__ import annotations

import contextlib
import http.server
import ipaddress
import json
import socket
import threading
from collections.abc import Iterator

import pytest
import typer
from typer.testing import CliRunner

from core.config import JobConfig
from core.errors import ConfigError
from core.invocation import invoke, parse_request
from core.tools.preflight import (
    EndpointProbe,
    PreflightReport,
    network_checks,
    network_plan,
    preflight,
    public_checks,
    server_version,
)
from esdb_emulator import Emulator
from esdb_emulator.security import generate_self_signed
from handlers.cli.preflight_cmd import preflight as preflight_command
from tests.engine.helpers import make_job

SECRET = "s3cr3t-Pa55word"  # the emulators' admin password in these tests
WRONG = "wr0ng-Pa55word"
USERS = {"admin": SECRET}
STEPS = ("connection string", "DNS", "TCP", "TLS", "cluster", "credentials", "latency")


@pytest.fixture
def tls_pair() -> Iterator[tuple[Emulator, Emulator]]:
    with Emulator(tls=True, users=USERS) as source, Emulator(tls=True, users=USERS) as target:
        yield source, target


def uri(db: Emulator) -> str:
    return db.connection_string(password=SECRET) if db.auth.enabled else db.uri


def job_for(source: str, target: str) -> JobConfig:
    return JobConfig.load(
        payload={
            "job_id": "preflight-job",
            "source": source,
            "target": target,
            "checkpoint_store": "sqlite:///:memory:",
        }
    )


def run(source: str, target: str, **options: object) -> PreflightReport:
    options.setdefault("timeout", 3.0)
    report = preflight(job_for(source, target), **options)  # type: ignore[arg-type]
    dumped = report.model_dump_json()
    assert SECRET not in dumped and WRONG not in dumped, "a password reached the report"
    return report


def statuses(report: PreflightReport, side: str) -> dict[str, str]:
    return {
        c.name.removeprefix(f"{side}: "): c.status
        for c in report.checks
        if c.name.startswith(f"{side}: ")
    }


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- all green ----------------------------------------------------------------------------


def test_tls_endpoints_with_the_right_ca_and_credentials_pass(tls_pair):
    source, target = tls_pair
    report = run(uri(source), uri(target))
    assert report.ok and report.failures == 0 and report.warnings == 0
    for side in ("source", "target"):
        assert statuses(report, side) == dict.fromkeys(STEPS, "ok")
    tls = report.check("source: TLS")
    assert "certificate verified" in tls.detail and "CN=esdb-emulator" in tls.detail
    assert tls.figures["certificate_days_left"] > 20
    assert "not reported" in report.check("source: cluster").detail  # the server version
    assert "may append" in report.check("target: credentials").detail
    assert report.check("target: latency").figures["round_trip_ms"] > 0
    assert "***" in report.source and SECRET not in report.source


def test_discover_reads_gossip_and_checks_the_members(tls_pair):
    source, target = tls_pair
    report = run(
        source.connection_string(discover=True, password=SECRET),
        target.connection_string(discover=True, password=SECRET),
    )
    assert report.ok, report.summary()
    cluster = report.check("source: cluster")
    assert cluster.status == "ok"
    assert f"leader {source.target}" in cluster.detail
    assert f"the relay uses {source.target}" in cluster.detail


def test_plaintext_endpoints_pass_with_a_warning():
    with Emulator() as source, Emulator() as target:
        report = run(uri(source), uri(target))
    assert report.ok
    tls = report.check("source: TLS")
    assert tls.status == "warn" and "plaintext" in tls.detail and "Tls=false" in tls.fix


# --- the same database twice -----------------------------------------------------------


def test_a_target_that_is_the_source_fails(tls_pair):
    source, target = tls_pair
    port = source.port
    same = uri(source)
    as_localhost = same.replace("127.0.0.1", "localhost")
    assert as_localhost != same
    for target_uri in (
        same,
        as_localhost,
        source.connection_string(discover=True, password=SECRET),
    ):
        report = run(same, target_uri)
        check = report.check("source ≠ target")
        assert check.status == "fail", (target_uri.split("@")[-1], check)
        assert "the same database" in check.detail and f":{port}" in check.detail
        assert "Addresses tab" in check.fix
        assert not report.ok
    report = run(uri(source), uri(target))
    assert report.check("source ≠ target").status == "ok" and report.ok


def test_cli_exits_1_when_the_target_is_the_source(tls_pair, tmp_path):
    source, _ = tls_pair
    result = cli([], tmp_path, uri(source), uri(source).replace("127.0.0.1", "localhost"))
    assert result.exit_code == 1, result.output
    assert "check(s) failed: source ≠ target" in result.output


# --- unreachable endpoints ----------------------------------------------------------------


def test_a_closed_port_fails_tcp(tls_pair):
    _, target = tls_pair
    report = run(f"esdb://admin:{SECRET}@127.0.0.1:{closed_port()}?Tls=false", uri(target))
    assert not report.ok
    tcp = report.check("source: TCP")
    assert tcp.status == "fail" and "refused" in tcp.detail
    assert "port" in tcp.fix
    assert statuses(report, "source")["credentials"] == "skip"
    assert statuses(report, "target")["credentials"] == "ok"


def test_an_unresolvable_host_fails_dns(tls_pair):
    source, _ = tls_pair
    report = run(
        uri(source), f"esdb://admin:{SECRET}@nonexistent.invalid:2113?tlsCaFile={source.ca_file}"
    )
    dns = report.check("target: DNS")
    assert dns.status == "fail" and "nonexistent.invalid" in dns.detail
    assert "host name" in dns.fix
    assert report.summary().startswith("1 check(s) failed: target: DNS")


def test_a_port_that_never_answers_tls_fails_within_the_timeout(tls_pair):
    _, target = tls_pair
    with socket.socket() as silent:  # accepts TCP (the kernel's backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        report = run(
            f"esdb://admin:{SECRET}@127.0.0.1:{port}?tlsCaFile={target.ca_file}",
            uri(target),
            timeout=0.5,
        )
    assert report.check("source: TCP").status == "ok"
    tls = report.check("source: TLS")
    assert tls.status == "fail" and "within 0.5s" in tls.detail


# --- TLS mismatches -----------------------------------------------------------------------


def test_a_plaintext_client_against_a_tls_server_fails_tls(tls_pair):
    source, target = tls_pair
    report = run(f"esdb://admin:{SECRET}@{source.target}?Tls=false", uri(target))
    tls = report.check("source: TLS")
    assert tls.status == "fail" and "speaks TLS" in tls.detail
    assert "remove Tls=false" in tls.fix


def test_a_tls_client_against_a_plaintext_server_fails_tls(tls_pair):
    _, target = tls_pair
    with Emulator() as plain:
        report = run(
            f"esdb://admin:{SECRET}@{plain.target}?tlsCaFile={target.ca_file}", uri(target)
        )
    tls = report.check("source: TLS")
    assert tls.status == "fail" and "does not speak TLS" in tls.detail
    assert "Tls=false" in tls.fix


def test_the_wrong_ca_file_fails_tls(tls_pair):
    source, target = tls_pair
    wrong_ca = target.ca_file
    report = run(f"esdb://admin:{SECRET}@{source.target}?tlsCaFile={wrong_ca}", uri(target))
    tls = report.check("source: TLS")
    assert tls.status == "fail" and "certificate not accepted" in tls.detail
    assert "tlsCaFile" in tls.fix and "not the CA that signed" in tls.fix


def test_a_certificate_for_another_name_fails_tls():
    other = generate_self_signed(("db.example.com",))
    with Emulator(tls=True, users=USERS, certificate=other) as db:
        report = run(uri(db), uri(db))
    tls = report.check("source: TLS")
    assert tls.status == "fail" and "mismatch" in tls.detail.lower()
    assert "db.example.com" in tls.fix


def test_a_missing_ca_file_fails_the_connection_string(tls_pair):
    source, target = tls_pair
    report = run(f"esdb://admin:{SECRET}@{source.target}?tlsCaFile=/no/such/ca.pem", uri(target))
    check = report.check("source: connection string")
    assert check.status == "fail" and "/no/such/ca.pem does not exist" in check.detail
    assert "tlsCaFile" in check.fix
    assert statuses(report, "source")["DNS"] == "skip"


# --- credentials --------------------------------------------------------------------------


def test_a_wrong_password_fails_the_credentials_check(tls_pair):
    source, target = tls_pair
    report = run(source.connection_string(password=WRONG), uri(target))
    credentials = report.check("source: credentials")
    assert credentials.status == "fail" and "UNAUTHENTICATED" in credentials.detail
    assert "password" in credentials.fix
    assert report.check("source: TLS").status == "ok"  # the network part is fine
    assert report.check("source: latency").status == "skip"


def test_a_wrong_password_with_discovery_fails_the_credentials_check(tls_pair):
    source, target = tls_pair
    report = run(source.connection_string(discover=True, password=WRONG), uri(target))
    assert report.check("source: credentials").status == "fail"
    assert report.check("source: cluster").status == "skip"


def test_credentials_sent_without_tls_are_denied_as_anonymous():
    # A node with auth on, reached with Tls=false: esdbclient sends no credentials.
    with Emulator(users=USERS) as source, Emulator() as target:
        report = run(f"esdb://admin:{SECRET}@{source.target}?Tls=false", uri(target))
    credentials = report.check("source: credentials")
    assert credentials.status == "fail" and "PERMISSION_DENIED" in credentials.detail
    assert "no credentials without TLS" in credentials.detail


# --- latency ------------------------------------------------------------------------------


def test_latency_is_reported_and_rises_with_the_servers_latency(tls_pair):
    source, target = tls_pair
    source.faults.update(latency_ms=60)
    report = run(uri(source), uri(target))
    assert report.check("source: latency").figures["round_trip_ms"] >= 60
    assert report.check("target: latency").figures["round_trip_ms"] > 0


# --- the network --------------------------------------------------------------------------


def network(
    subnets: list[str],
    peering: str | None,
    cloud: str | None = None,
    direct: bool | None = None,
) -> dict[str, object]:
    checks = network_checks(network_plan(subnets, peering, cloud), cloud, direct)
    return {c.name: c for c in checks}


def test_a_subnet_outside_the_peering_range_is_flagged():
    checks = network(["10.1.0.0/24"], "10.0.0.0/16")
    check = checks["network: subnet 10.1.0.0/24"]
    assert check.status == "fail" and "single IP range" in check.detail
    assert "10.0.0.0/16" in check.fix and "10.0.0.0/15" in check.fix  # the range holding both


def test_a_subnet_inside_the_peering_range_passes():
    checks = network(["10.0.4.0/22"], "10.0.0.0/16")
    assert checks["network: subnet 10.0.4.0/22"].status == "ok"


def test_several_ranges_must_each_lie_inside_the_one_peering_range():
    inside = network(["10.0.0.0/20", "10.0.64.0/18"], "10.0.0.0/16", cloud="gcp")
    assert all(c.status == "ok" for c in inside.values())
    mixed = network(["10.0.0.0/20", "10.4.0.0/14"], "10.0.0.0/16", cloud="gcp")
    assert mixed["network: subnet 10.0.0.0/20"].status == "ok"
    pods = mixed["network: subnet 10.4.0.0/14"]
    assert pods.status == "fail" and "pod address range" in pods.fix
    ipv6 = network(["fd00::/64"], "10.0.0.0/16")
    assert ipv6["network: subnet fd00::/64"].status == "fail"


def test_overlapping_ranges_are_flagged():
    checks = network(["10.0.0.0/20", "10.0.8.0/24", "10.0.32.0/24"], "10.0.0.0/16")
    overlap = checks["network: overlap 10.0.0.0/20 / 10.0.8.0/24"]
    assert overlap.status == "warn" and overlap.fix
    assert not any("10.0.32.0/24" in name for name in checks if "overlap" in name)
    twice = network(["10.0.1.0/24", "10.0.1.0/24"], "10.0.0.0/16")
    assert "given twice" in twice["network: overlap 10.0.1.0/24 / 10.0.1.0/24"].detail


def test_half_given_network_settings_warn():
    assert network(["10.0.1.0/24"], None)["network: peering range"].status == "warn"
    assert network([], "10.0.0.0/16")["network: peering range"].status == "warn"
    assert network([], None) == {}


@pytest.mark.parametrize(
    ("subnets", "peering", "cloud", "says"),
    [
        (["10.0.0.0/33"], None, None, "not a valid CIDR"),
        (["10.0.0.5/24"], None, None, "did you mean 10.0.0.0/24"),
        ([], "ten-dot-zero", None, "peering range"),
        ([], None, "oracle", "aws, gcp or azure"),
    ],
)
def test_invalid_network_settings_are_config_errors(subnets, peering, cloud, says):
    with pytest.raises(ConfigError) as caught:
        network_plan(subnets, peering, cloud)
    assert says in str(caught.value)


def test_azure_functions_must_run_in_the_directly_peered_vnet():
    name = "network: Azure gateway transit"
    not_direct = network([], None, cloud="azure", direct=False)[name]
    assert not_direct.status == "fail" and "gateway transit" in not_direct.detail
    assert "VNet integration" in not_direct.fix
    assert network([], None, cloud="azure", direct=True)[name].status == "ok"
    assert network([], None, cloud="azure")[name].status == "warn"
    assert name not in network([], None, cloud="aws", direct=False)


def test_network_checks_join_the_endpoint_checks(tls_pair):
    source, target = tls_pair
    report = run(
        uri(source),
        uri(target),
        subnets=["10.0.1.0/24", "172.16.0.0/24"],
        peering_cidr="10.0.0.0/16",
        cloud="azure",
        vnet_is_peered_directly=False,
    )
    failed = {c.name for c in report.checks if c.status == "fail"}
    assert failed == {"network: subnet 172.16.0.0/24", "network: Azure gateway transit"}


# --- the CLI ------------------------------------------------------------------------------

runner = CliRunner()


def cli(args: list[str], tmp_path, source: str, target: str):
    config = tmp_path / "job.json"
    config.write_text(
        json.dumps(
            {
                "job_id": "cli-preflight",
                "source": source,
                "target": target,
                "checkpoint_store": f"sqlite:///{tmp_path}/cp.db",
            }
        )
    )
    app = typer.Typer()
    app.command()(preflight_command)
    result = runner.invoke(app, ["-c", str(config), "--timeout", "3", *args])
    assert SECRET not in result.output and WRONG not in result.output
    return result


def test_cli_exits_0_when_nothing_fails(tls_pair, tmp_path):
    source, target = tls_pair
    result = cli(["--subnet", "10.0.1.0/24", "--peering-cidr", "10.0.0.0/16"], tmp_path,
                 uri(source), uri(target))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "✓" in result.output and "all checks passed" in result.output


def test_cli_exits_1_and_shows_the_fix_when_a_check_fails(tls_pair, tmp_path):
    source, target = tls_pair
    result = cli(
        ["--subnet", "10.1.0.0/24", "--peering-cidr", "10.0.0.0/16"],
        tmp_path,
        source.connection_string(password=WRONG),
        uri(target),
    )
    assert result.exit_code == 1, result.output
    assert "✗" in result.output and "fix:" in result.output
    assert "source: credentials" in result.output


def test_cli_json_report(tls_pair, tmp_path):
    source, _target = tls_pair
    result = cli(
        ["--json", "--cloud", "azure", "--vnet-not-peered-directly"],
        tmp_path,
        uri(source),
        f"esdb://admin:{SECRET}@127.0.0.1:{closed_port()}?Tls=false",
    )
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    failed = {c["name"] for c in report["checks"] if c["status"] == "fail"}
    assert failed == {"target: TCP", "network: Azure gateway transit"}
    assert report["ok"] is False and report["failures"] == 2


@pytest.mark.parametrize(
    "args",
    [["--subnet", "10.0.0.0/33"], ["--peering-cidr", "nope"], ["--cloud", "oracle"]],
)
def test_cli_exits_2_on_configuration_errors(tls_pair, tmp_path, args):
    source, target = tls_pair
    assert cli(args, tmp_path, uri(source), uri(target)).exit_code == 2


def test_cli_exits_2_without_a_valid_job(tmp_path):
    app = typer.Typer()
    app.command()(preflight_command)
    result = runner.invoke(app, ["-c", str(tmp_path / "missing.toml")])
    assert result.exit_code == 2


# --- the handler action -------------------------------------------------------------------


def test_the_handler_action_returns_the_report(pair, tmp_path, monkeypatch):
    source, target = pair
    job = make_job(source, target, tmp_path)
    response = invoke(parse_request({"action": "preflight"}), job)
    assert response.status == "ok" and response.next_action == "stop"
    assert response.result is not None
    names = {c["name"] for c in response.result["checks"]}
    assert "source: credentials" in names and not any(n.startswith("network") for n in names)

    monkeypatch.setenv("ESDB_RELAY_PREFLIGHT__SUBNETS", '["10.0.1.0/24", "10.9.0.0/24"]')
    monkeypatch.setenv("ESDB_RELAY_PREFLIGHT__PEERING_CIDR", "10.0.0.0/16")
    monkeypatch.setenv("ESDB_RELAY_PREFLIGHT__CLOUD", "azure")
    monkeypatch.setenv("ESDB_RELAY_PREFLIGHT__VNET_PEERED_DIRECTLY", "true")
    response = invoke(parse_request({"action": "preflight"}), job)
    assert response.status == "failed" and response.next_action == "stop"
    assert response.error == "1 check(s) failed: network: subnet 10.9.0.0/24"
    checks = {c["name"]: c["status"] for c in response.result["checks"]}
    assert checks["network: Azure gateway transit"] == "ok"


def test_the_handler_action_reaches_no_endpoint_twice_when_one_is_down(tmp_path, monkeypatch):
    # A source that is down does not stop the report (the Relay would refuse to start).
    with Emulator() as target:
        job = JobConfig.load(
            payload={
                "job_id": "down",
                "source": f"esdb://127.0.0.1:{closed_port()}?Tls=false",
                "target": uri(target),
                "checkpoint_store": f"sqlite:///{tmp_path}/cp.db",
            }
        )
        monkeypatch.setenv("ESDB_RELAY_PREFLIGHT__SUBNETS", "10.0.1.0/24,10.0.2.0/24")
        response = invoke(parse_request({"action": "preflight"}), job)
    assert response.status == "failed" and "source: TCP" in (response.error or "")


def test_bad_preflight_env_is_a_config_error(pair, tmp_path, monkeypatch):
    source, target = pair
    job = make_job(source, target, tmp_path)
    monkeypatch.setenv("ESDB_RELAY_PREFLIGHT__CLOUD", "oracle")
    with pytest.raises(ConfigError, match="aws, gcp or azure"):
        invoke(parse_request({"action": "preflight"}), job)


# --- the checkpoint store -----------------------------------------------------------------


def test_the_checkpoint_store_is_read(tls_pair, tmp_path):
    source, target = tls_pair
    job = job_for(uri(source), uri(target)).model_copy(
        update={"checkpoint_store": f"sqlite:///{tmp_path}/cp.db"}
    )
    report = preflight(job, timeout=3.0)
    check = report.check("checkpoint store")
    assert check.status == "ok" and "no slice yet" in check.detail


def test_an_unreachable_checkpoint_store_fails(tls_pair):
    source, target = tls_pair
    job = JobConfig.load(
        payload={
            "job_id": "no-store",
            "source": uri(source),
            "target": uri(target),
            "checkpoint_store": "sqlite:////proc/no-such-dir/cp.db",
        }
    )
    check = preflight(job, timeout=3.0).check("checkpoint store")
    assert check.status == "fail" and "cannot be created" in check.detail
    assert "directory" in check.fix


def test_a_connection_leaving_from_outside_the_peering_range_warns():
    plan = network_plan(["10.0.1.0/24"], "10.0.0.0/16", None)
    checks = {c.name: c for c in network_checks(plan, None, None, ["192.168.5.5", "127.0.0.1"])}
    check = checks["network: this function's address"]
    assert check.status == "warn" and "192.168.5.5" in check.detail
    assert "127.0.0.1" not in check.detail
    inside = network_checks(plan, None, None, ["10.0.1.7"])
    assert not any(c.name == "network: this function's address" for c in inside)


def test_several_seed_hosts_one_down_warns_and_discovers_through_the_other(tls_pair):
    source, target = tls_pair
    seeds = f"{source.target},127.0.0.1:{closed_port()}"
    report = run(f"esdb://admin:{SECRET}@{seeds}?tlsCaFile={source.ca_file}", uri(target))
    tcp = report.check("source: TCP")
    assert tcp.status == "warn" and "refused" in tcp.detail and tcp.fix
    assert report.check("source: cluster").status == "ok"
    assert report.check("source: credentials").status == "ok"
    assert report.ok


def test_the_server_version_is_read_from_http_info_when_a_node_serves_it():
    class Info(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # an EventStoreDB node's /info, abridged
            body = b'{"esVersion": "23.10.1.0", "state": "leader"}'
            self.send_response(200 if self.path == "/info" else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Info)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        host, port = server.server_address[:2]
        assert server_version(str(host), int(port), False, None, 3.0) == "23.10.1.0"
    finally:
        server.shutdown()
        server.server_close()
    with Emulator() as db:  # the emulator speaks gRPC only: nothing to report
        assert server_version(db.host, db.port, False, None, 3.0) is None


# --- the public topology: a public cluster behind an IP allowlist, reached through a NAT -------
#
# The emulators listen on 127.0.0.1, which is not a public address, and no public address can
# be bound on this machine: the branches that need one (a target resolving to public addresses,
# a socket leaving from a public address) are tested through public_checks and the DNS step
# with IP literals, which resolve without any network.

EGRESS = "34.120.5.6"  # a public (global) address; never connected to


def public(report: PreflightReport) -> dict[str, object]:
    return {c.name: c for c in report.checks if c.name.startswith("network: ")}


def test_public_topology_against_a_reachable_target(pair):
    source, target = pair
    report = run(uri(source), uri(target), network_mode="public", egress_ips=[EGRESS])
    checks = public(report)
    assert checks["network: egress IPs"].status == "ok"
    assert EGRESS in checks["network: egress IPs"].detail
    assert "allowlist" in checks["network: egress IPs"].detail
    # 127.0.0.1 is what the emulator's name resolves to: not a public cluster
    target_address = checks["network: target address"]
    assert target_address.status == "fail" and "127.0.0.1" in target_address.detail
    assert "peered" in target_address.fix
    # the socket left from 127.0.0.1, a private address: the NAT's is not visible here
    outbound = checks["network: outbound address"]
    assert outbound.status == "unknown" and outbound.detail.startswith("cannot tell from here")
    assert "127.0.0.1" in outbound.detail and EGRESS in outbound.detail
    # the target accepted the connection: whatever the allowlist holds, it admits us
    allowlist = checks["network: allowlist"]
    assert allowlist.status == "ok" and target.target in allowlist.detail
    # no peering checks in the public topology, and the report fails on the target address only
    assert not any("subnet" in name or "peering" in name for name in checks)
    assert report.summary() == "1 check(s) failed: network: target address"


@contextlib.contextmanager
def dropping_port() -> Iterator[int]:
    """A port whose SYNs go unanswered, like a firewall that drops them: a listener with a
    backlog of 0 whose one queued connection is never accepted (Linux then drops new SYNs)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        queued = []
        try:
            for _ in range(2):
                s = socket.socket()
                s.settimeout(0.3)
                with contextlib.suppress(OSError):
                    s.connect(("127.0.0.1", port))
                queued.append(s)
            probe = socket.socket()
            probe.settimeout(0.3)
            with probe, pytest.raises(TimeoutError):  # the premise of the tests using it
                probe.connect(("127.0.0.1", port))
            yield port
        finally:
            for s in queued:
                s.close()


def test_public_topology_with_the_target_not_answering_fails_the_allowlist(pair):
    source, _ = pair
    with dropping_port() as port:
        report = run(
            uri(source),
            f"esdb://127.0.0.1:{port}?Tls=false",
            network_mode="public",
            egress_ips=[EGRESS],
            timeout=0.5,
        )
    checks = public(report)
    allowlist = checks["network: allowlist"]
    assert allowlist.status == "fail" and "allowlist does not name" in allowlist.detail
    assert EGRESS in allowlist.fix
    tcp = report.check("target: TCP")
    assert tcp.status == "fail" and "within 0.5s" in tcp.detail
    assert "allowlist" in tcp.fix and EGRESS in tcp.fix
    assert checks["network: outbound address"].status == "unknown"
    # the same silence in the peered topology points at the peering, not an allowlist
    with dropping_port() as port:
        peered = run(uri(source), f"esdb://127.0.0.1:{port}?Tls=false", timeout=0.5)
    assert "peering" in peered.check("target: TCP").fix
    assert "allowlist" not in peered.check("target: TCP").fix


def test_public_topology_with_a_closed_port_fails_the_allowlist(pair):
    source, _ = pair
    report = run(
        uri(source),
        f"esdb://127.0.0.1:{closed_port()}?Tls=false",
        network_mode="public",
        egress_ips=[EGRESS],
    )
    checks = public(report)
    assert checks["network: allowlist"].status == "fail"
    outbound = checks["network: outbound address"]
    assert outbound.status == "unknown" and "no connection to the target" in outbound.detail


def test_public_topology_egress_ips_must_be_public_and_given(pair):
    source, target = pair
    private = public(run(uri(source), uri(target), network_mode="public", egress_ips=["10.0.0.5"]))
    check = private["network: egress IPs"]
    assert check.status == "fail" and "10.0.0.5 is not a public address" in check.detail
    assert "EgressIp" in check.fix and "egress_ip" in check.fix
    missing = public(run(uri(source), uri(target), network_mode="public"))
    assert missing["network: egress IPs"].status == "warn"
    assert "--egress-ip" in missing["network: egress IPs"].fix


def test_public_topology_with_an_unresolvable_target_skips_what_needs_its_address(pair):
    source, _ = pair
    report = run(
        uri(source),
        "esdb://nonexistent.invalid:2113?Tls=false",
        network_mode="public",
        egress_ips=[EGRESS],
    )
    checks = public(report)
    assert checks["network: target address"].status == "skip"
    assert checks["network: allowlist"].status == "skip"
    assert checks["network: outbound address"].status == "unknown"


def test_egress_ips_alone_mean_the_public_topology(pair):
    source, target = pair
    report = run(uri(source), uri(target), egress_ips=[EGRESS])
    assert "network: allowlist" in public(report)
    peered = run(uri(source), uri(target), subnets=["10.0.1.0/24"], peering_cidr="10.0.0.0/16")
    assert "network: allowlist" not in public(peered)


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"network_mode": "public", "peering_cidr": "10.0.0.0/16"}, "public topology"),
        ({"network_mode": "peered", "egress_ips": [EGRESS]}, "peered topology"),
        ({"network_mode": "hybrid"}, "network mode"),
        ({"egress_ips": ["34.120.5"]}, "not an IP address"),
    ],
)
def test_contradictory_public_settings_are_config_errors(options, says):
    with pytest.raises(ConfigError) as caught:
        preflight(
            job_for("esdb://127.0.0.1:1?Tls=false", "esdb://127.0.0.1:1?Tls=false"), **options
        )
    assert says in str(caught.value)


def test_public_checks_judge_what_only_a_public_address_shows():
    ip = ipaddress.ip_address
    # the target resolves to public addresses; the socket itself left from the egress IP
    checks = {
        c.name: c
        for c in public_checks(
            [ip(EGRESS)],
            resolved=["34.1.2.3", "34.1.2.4"],
            reachable=[("34.1.2.3", 2113)],
            local_addresses=[EGRESS],
        )
    }
    assert checks["network: target address"].status == "ok"
    assert "34.1.2.3, 34.1.2.4" in checks["network: target address"].detail
    assert checks["network: outbound address"].status == "ok"
    # a socket leaving from another public address: not the NAT the deployment names
    other = {
        c.name: c
        for c in public_checks(
            [ip(EGRESS)], resolved=["34.1.2.3"], reachable=[], local_addresses=["52.9.9.9"]
        )
    }
    assert other["network: outbound address"].status == "fail"
    assert "52.9.9.9" in other["network: outbound address"].detail
    # a public socket address but no egress IP given: warn, naming what to allowlist
    unnamed = {
        c.name: c
        for c in public_checks(
            [], resolved=["34.1.2.3"], reachable=[], local_addresses=["52.9.9.9"]
        )
    }
    assert unnamed["network: outbound address"].status == "warn"
    assert "52.9.9.9" in unnamed["network: outbound address"].fix
    # some addresses private: fail, even if others are public
    mixed = {
        c.name: c
        for c in public_checks(
            [ip(EGRESS)], resolved=["34.1.2.3", "10.1.2.3"], reachable=[], local_addresses=[]
        )
    }
    assert mixed["network: target address"].status == "fail"
    assert "10.1.2.3" in mixed["network: target address"].detail


def test_the_dns_step_warns_of_a_public_target_only_in_the_peered_topology():
    # IP literals resolve without the network; nothing connects to the address.
    peered = EndpointProbe("target", f"esdb://{EGRESS}:2113", 1.0)
    assert peered.dns([(EGRESS, 2113)])
    assert peered.checks[-1].status == "warn" and "peering" in peered.checks[-1].fix
    public_probe = EndpointProbe("target", f"esdb://{EGRESS}:2113", 1.0, public=True)
    assert public_probe.dns([(EGRESS, 2113)])
    assert public_probe.checks[-1].status == "ok" and public_probe.resolved == [EGRESS]


def test_the_handler_action_reads_the_public_topology_from_the_environment(
    pair, tmp_path, monkeypatch
):
    source, target = pair
    job = make_job(source, target, tmp_path)
    monkeypatch.setenv("ESDB_RELAY_PREFLIGHT__NETWORK_MODE", "public")
    monkeypatch.setenv("ESDB_RELAY_PREFLIGHT__EGRESS_IPS", f"{EGRESS}, 34.120.5.7")
    monkeypatch.setenv("ESDB_RELAY_PREFLIGHT__SUBNETS", "10.0.1.0/24")
    monkeypatch.setenv("ESDB_RELAY_PREFLIGHT__CLOUD", "azure")
    response = invoke(parse_request({"action": "preflight"}), job)
    checks = {c["name"]: c for c in response.result["checks"]}
    assert checks["network: egress IPs"]["status"] == "ok"
    assert f"{EGRESS}, 34.120.5.7" in checks["network: egress IPs"]["detail"]
    assert checks["network: outbound address"]["status"] == "unknown"
    # no peering, so no subnet-in-range and no Azure gateway transit check
    assert "network: Azure gateway transit" not in checks
    assert not any(name.startswith("network: subnet") for name in checks)
    assert response.error == "1 check(s) failed: network: target address"
    monkeypatch.setenv("ESDB_RELAY_PREFLIGHT__NETWORK_MODE", "nat")
    with pytest.raises(ConfigError, match="peered or public"):
        invoke(parse_request({"action": "preflight"}), job)


def test_cli_public_topology_shows_what_it_cannot_tell(pair, tmp_path):
    source, target = pair
    result = cli(
        ["--network-mode", "public", "--egress-ip", EGRESS], tmp_path, uri(source), uri(target)
    )
    assert result.exit_code == 1  # the target resolves to 127.0.0.1
    assert "?" in result.output and "cannot tell from here" in result.output
    assert "network: allowlist" in result.output
    assert cli(["--network-mode", "nat"], tmp_path, uri(source), uri(target)).exit_code == 2
