"""Pod IPs and what sets up a pod's network namespace (slipway_dev/localexec/podnet.py), without
touching the machine's network: the commands are recorded, not run (the integration tests
run them)."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from slipway_dev.localexec import podnet
from slipway_dev.localexec.podnet import Allocator, PodNetworks, PodRange


def test_range_checks() -> None:
    r = PodRange.parse("198.18.0.0/16")
    assert r.gateway == "198.18.0.1"
    assert list(r.candidates())[:2] == ["198.18.0.2", "198.18.0.3"]
    assert "198.18.0.2" in r and "198.18.0.1" not in r and "198.19.0.2" not in r and "bogus" not in r
    assert PodRange.parse(podnet.DEFAULT_RANGE) == r
    for outside in ("10.244.0.0/16", "127.64.0.0/16", "169.254.0.0/16", "198.17.0.0/16", "198.18.0.0/14"):
        with pytest.raises(ValueError, match=r"not inside 198\.18\.0\.0/15"):
            PodRange.parse(outside)  # the host routes only this network to `unreachable`
    with pytest.raises(ValueError, match="too small"):
        PodRange.parse("198.18.0.0/31")


def test_service_cidr_checks() -> None:
    assert podnet.check_service_cidr("10.96.0.0/16") == "10.96.0.0/16"
    for bad in ("0.0.0.0/0", "8.8.8.0/24", "127.0.0.0/16", "198.18.0.0/24", "10.0.0.0/7"):
        with pytest.raises(ValueError):
            podnet.check_service_cidr(bad)


def test_allocation_is_stable_across_restarts_and_released(tmp_path: Path) -> None:
    r = PodRange.parse("198.18.0.0/29")  # .2 to .6
    state = tmp_path / "ips.json"
    a = Allocator(r, state)
    assert a.allocate("u1") == "198.18.0.2"
    assert a.allocate("u2", taken_elsewhere=["198.18.0.3"]) == "198.18.0.4"  # another executor holds .3
    assert a.allocate("u1") == "198.18.0.2"
    assert a.allocate("u3", preferred="198.18.0.6") == "198.18.0.6"  # the podIP its status had
    assert a.allocate("u4", preferred="198.18.0.2") == "198.18.0.3"  # taken: the lowest free instead
    again = Allocator(r, state)  # a restarted executor
    assert again.get("u1") == "198.18.0.2" and again.get("u3") == "198.18.0.6"
    assert again.release("u1") == "198.18.0.2" and again.allocate("u5") == "198.18.0.2"
    assert sorted(again.retain(["u5", "u2"])) == ["u3", "u4"]
    with pytest.raises(podnet.NetworkError, match="exhausted"):
        for i in range(10):
            again.allocate(f"x{i}")


def test_a_kept_ip_another_executor_now_holds_is_given_up(tmp_path: Path) -> None:
    """A stopped cluster's state dir kept 198.18.0.2 while another cluster took it (seen on this machine: the
    second veth for one address failed with "File exists")."""
    path = tmp_path / "ips.json"
    Allocator(PodRange.parse("198.18.0.0/16"), path).allocate("u1")
    a = Allocator(PodRange.parse("198.18.0.0/16"), path)
    assert a.allocate("u1", taken_elsewhere=["198.18.0.2"]) == "198.18.0.3"
    assert Allocator(PodRange.parse("198.18.0.0/16"), path).get("u1") == "198.18.0.3"
    assert a.allocate("u1", taken_elsewhere=["198.18.0.9"]) == "198.18.0.3", "kept while nobody else holds it"


def test_allocator_drops_ips_outside_the_range(tmp_path: Path) -> None:
    state = tmp_path / "ips.json"
    state.write_text('{"old": "127.64.0.2", "new": "198.18.0.9"}')  # from before pods left loopback
    a = Allocator(PodRange.parse("198.18.0.0/16"), state)
    assert a.get("old") is None and a.get("new") == "198.18.0.9"


def test_names() -> None:
    assert podnet.veth_name("198.18.0.2") == "lxpc6120002"
    assert len(podnet.veth_name("198.19.255.254")) <= 15
    assert podnet.netns_name("abc123", "198.18.0.2") == "lxp-abc123-198.18.0.2"
    assert podnet.executor_id(Path("/a")) != podnet.executor_id(Path("/b"))


def test_host_guard_routes_the_pod_network_and_services_nowhere() -> None:
    guard = podnet.host_guard_commands(PodRange.parse("198.18.0.0/16"), "10.96.0.0/16")
    assert guard == [
        ["ip", "addr", "replace", "198.18.0.1/32", "dev", "lo"],
        ["ip", "route", "replace", "unreachable", "198.18.0.0/15"],
        ["ip", "route", "replace", "unreachable", "10.96.0.0/16"],
    ]


def test_commands_route_only_inside_the_pod_network() -> None:
    r = PodRange.parse("198.18.0.0/16")
    host = podnet.host_commands("198.18.0.7", r.gateway, "lxp-abc123-198.18.0.7")
    assert ["ip", "route", "replace", "198.18.0.7/32", "dev", "lxpc6120007", "src", "198.18.0.1"] in host
    sysctl = next(c for c in host if c[0] == "sysctl")
    assert "net.ipv4.conf.lxpc6120007.forwarding=1" in sysctl  # never net.ipv4.ip_forward
    assert not any("ip_forward" in a or ".all." in a or ".default." in a for c in host for a in c)
    pod = podnet.pod_commands("198.18.0.7", r)
    assert ["ip", "addr", "add", "198.18.0.7/32", "dev", "eth0"] in pod
    routes = [c for c in pod if c[:3] == ["ip", "route", "add"]]
    assert [c[3] for c in routes] == ["198.18.0.1/32", "198.18.0.0/16"]  # no default route: nothing else is reachable
    assert all("table" not in c and c[-2:] == ["src", "198.18.0.7"] for c in routes)


def test_pod_nat_leaves_the_pods_own_ports_alone_and_filters_egress() -> None:
    r = PodRange.parse("198.18.0.0/16")
    text = podnet.pod_nft("198.18.0.7", r, [8080, 9081, 8080])
    assert "ip daddr 127.0.0.1 tcp dport != { 8012, 8022, 8080, 9081, 9088, 9090, 9091 } dnat to 198.18.0.1" in text
    assert 'oifname "eth0" ip saddr 127.0.0.0/8 ip saddr != 198.18.0.7 snat to 198.18.0.7' in text
    assert 'oifname "eth0" ip saddr 198.18.0.7 ip daddr 198.18.0.0/16 accept\n    oifname "eth0" drop' in text


def test_host_nft_is_added_once_and_shared() -> None:
    r = PodRange.parse("198.18.0.0/16")
    text = podnet.host_nft(r, "")
    assert text is not None
    dnat = 'iifname "lxp*" ip saddr 198.18.0.0/16 ip daddr 198.18.0.1 dnat to 127.0.0.1'
    forward = 'iifname "lxp*" oifname "lxp*" ip saddr 198.18.0.0/16 ip daddr 198.18.0.0/16 accept'
    assert f"add rule ip localexec prerouting {dnat}\n" in text
    assert f"add rule ip localexec pods {forward}\n" in text
    prefix = "add rule ip localexec forward "
    rules = [line.removeprefix(prefix) for line in text.splitlines() if line.startswith(prefix)]
    assert rules == ['iifname "lxp*" jump pods', 'iifname "lxp*" drop', 'oifname "lxp*" drop']
    existing = f"""table ip localexec {{
        chain prerouting {{ {dnat} }}
        chain forward {{ iifname "lxp*" jump pods
            iifname "lxp*" drop
            oifname "lxp*" drop }}
        chain pods {{ {forward} }}
    }}"""
    assert podnet.host_nft(r, existing) is None  # added once, shared by executors
    other = podnet.host_nft(PodRange.parse("198.18.64.0/18"), existing)  # another range: its own two rules only
    assert other is not None and other.count("add rule") == 2


def test_a_node_namespace_also_reaches_the_pods_and_sinks_the_service_cidr() -> None:
    own, pods = PodRange.parse(podnet.SYSTEM_RANGE), PodRange.parse(podnet.DEFAULT_RANGE)
    inside = podnet.node_commands("198.19.128.5", own, "10.96.0.0/16")
    assert inside == [
        # the whole pod network (kwok's pods too: a ClusterIP DNATed there meets the guard)
        ["ip", "route", "replace", "198.18.0.0/15", "via", "198.19.128.1", "dev", "eth0", "src", "198.19.128.5"],
        ["ip", "link", "add", "slipway-svc", "type", "ifb"],
        ["ip", "link", "set", "slipway-svc", "up"],
        ["ip", "route", "replace", "10.96.0.0/16", "dev", "slipway-svc", "src", "198.19.128.5"],
        # anything else: the sink too (so what kube-proxy DNATs elsewhere meets the guard)
        ["ip", "route", "replace", "default", "dev", "slipway-svc", "src", "198.19.128.5"],
    ]
    assert not any("ip_forward" in " ".join(c) for c in inside)
    egress = podnet.pod_nft("198.19.128.5", own, [10249], [pods])
    assert 'oifname "eth0" ip saddr 198.19.128.5 ip daddr { 198.19.128.0/17, 198.18.0.0/16 } accept\n' in egress
    assert egress.endswith('    oifname "eth0" drop\n  }\n}\n')


def test_the_guard_refuses_service_ips_and_dnat_anywhere_but_loopback_and_the_two_ranges() -> None:
    own, pods = PodRange.parse(podnet.SYSTEM_RANGE), PodRange.parse(podnet.DEFAULT_RANGE)
    text = podnet.guard_nft(own, pods, "10.96.0.0/16")
    assert text.startswith("add table ip slipway-guard\nflush table ip slipway-guard\n")  # idempotent
    svc = "ip daddr 10.96.0.0/16 counter"
    dnat = "ct status dnat ip daddr != { 127.0.0.0/8, 198.18.0.0/16, 198.19.128.0/17 } counter"
    rest = "ip daddr != { 127.0.0.0/8, 198.18.0.0/16, 198.19.128.0/17 } counter"
    reject = "reject with icmp type host-unreachable"
    for chain, hook in (("output", "output"), ("forward", "forward")):
        body = text.split(f"chain {chain} {{")[1].split("  }")[0]
        assert f"type filter hook {hook} priority -50;" in body  # after kube-proxy's DNAT, before its filter
        assert body.splitlines()[2:] == [f"    {svc} {reject}", f"    {dnat} {reject}", f"    {rest} {reject}"]
    post = text.split("chain postrouting {")[1]
    assert "priority 300;" in post and f"{svc} drop" in post and f"{dnat} drop" in post and f"{rest} drop" in post


def test_node_host_rules_are_added_once() -> None:
    own, pods = PodRange.parse(podnet.SYSTEM_RANGE), PodRange.parse(podnet.DEFAULT_RANGE)
    text = podnet.node_host_nft(own, pods, "")
    assert text is not None
    veths = 'iifname "lxp*" oifname "lxp*"'
    forward = f"{veths} ip saddr 198.19.128.0/17 ip daddr 198.18.0.0/16 accept"
    replies = f"{veths} ip saddr 198.18.0.0/16 ip daddr 198.19.128.0/17 ct state established accept"
    snat = f"{veths} ip saddr 198.19.128.0/17 ip daddr 198.18.0.0/16 snat to 198.18.0.1"
    assert f"add rule ip localexec pods {forward}\n" in text
    assert f"add rule ip localexec pods {replies}\n" in text  # pods answer; they open nothing towards it
    assert f"add rule ip localexec postrouting {snat}\n" in text
    assert "type nat hook postrouting priority 100;" in text
    assert text.count("add rule") == 3
    existing = f"table ip localexec {{ chain pods {{ {forward}\n{replies} }} chain postrouting {{ {snat} }} }}"
    assert podnet.node_host_nft(own, pods, existing) is None


def test_declared_ports() -> None:
    pod = {
        "spec": {
            "initContainers": [{"ports": [{"containerPort": 9000}]}],
            "containers": [
                {"ports": [{"containerPort": 8080}, {"containerPort": 53, "protocol": "UDP"}]},
                {"ports": [{"containerPort": 8080}, {"containerPort": 9081}]},
            ],
        }
    }
    assert podnet.declared_ports(pod) == [9000, 8080, 9081]


def test_own_ports_include_the_port_kserves_agent_proxies_to() -> None:
    agent = {
        "name": "agent",
        "args": ["--log-url", "http://x/", "--component-port", "8080"],
        "ports": [{"containerPort": 9081}],
    }
    pod = {"spec": {"containers": [{"name": "kserve-container", "args": ["--http_port=8080"]}, agent]}}
    assert podnet.declared_ports(pod) == [9081]
    assert podnet.own_ports(pod) == [9081, 8080]  # the model server's undeclared port is the pod's own
    agent["args"] = ["--component-port=8085"]
    assert podnet.own_ports(pod) == [9081, 8085]
    agent["args"] = ["--component-port"]  # no value: nothing added
    assert podnet.own_ports(pod) == [9081]


def test_wrap_enters_the_namespaces_and_mounts_first(tmp_path: Path) -> None:
    argv = podnet.wrap(["echo", "a b"], Path("/run/netns/x"), [("/src dir", "/mnt/m", True), ("/s2", "/t2", False)])
    assert argv[:3] == ["nsenter", "--net=/run/netns/x", "--"]
    assert argv[3:9] == ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh"]
    assert argv[-6:] == ["/src dir", "/mnt/m", "/s2", "/t2", "echo", "a b"]
    # The script itself, run with the mounts replaced by echo: arguments survive as given.
    script = argv[10].replace("mount ", "echo mount ").replace("mkdir ", "echo mkdir ")
    assert script.startswith("{ uecho mount -R -l /run/netns")
    script = script.replace("uecho mount", "echo umount")
    out = subprocess.run(["/bin/sh", "-c", script, *argv[11:]], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == [
        "umount -R -l /run/netns",
        "mkdir -p /mnt/m",
        "mount --bind /src dir /mnt/m",
        "mount -o remount,bind,ro /mnt/m",
        "mkdir -p /t2",
        "mount --bind /s2 /t2",
        "a b",
    ]


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[list[str], str | None]] = []

    def __call__(self, argv: Sequence[str], stdin: str | None = None) -> str:
        self.calls.append((list(argv), stdin))
        return ""


def test_ensure_and_remove(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(podnet, "NETNS_DIR", tmp_path / "netns")
    monkeypatch.setattr(podnet, "RUN_DIR", tmp_path / "run")
    rec = Recorder()
    nets = PodNetworks(tmp_path / "executor", PodRange.parse("198.18.0.0/16"), rec)
    (tmp_path / "executor").mkdir()
    ip = nets.ensure("uid-1", [8080])
    assert ip == "198.18.0.2"
    name = podnet.netns_name(nets.id, ip)
    commands = [c for c, _ in rec.calls]
    assert commands[0] == ["ip", "netns", "add", name]
    assert ["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"] in commands
    assert commands[-1] == ["ip", "netns", "exec", name, "nft", "-f", "-"]
    (tmp_path / "netns").mkdir()
    (tmp_path / "netns" / name).touch()  # what `ip netns add` would have made
    rec.calls.clear()
    assert nets.ensure("uid-1", [8080]) == ip and rec.calls == []  # once per pod
    nets.remove("uid-1", release=True)
    assert rec.calls[0][0] == ["ip", "netns", "del", name]
    assert nets.allocator.get("uid-1") is None


def test_ensure_on_node_duty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(podnet, "NETNS_DIR", tmp_path / "netns")
    monkeypatch.setattr(podnet, "RUN_DIR", tmp_path / "run")
    rec = Recorder()
    nets = PodNetworks(tmp_path / "sysnet", PodRange.parse(podnet.SYSTEM_RANGE), rec, prefix=podnet.SYSTEM_PREFIX)
    (tmp_path / "sysnet").mkdir()
    ip = nets.ensure("node", [10249], node=PodRange.parse(podnet.DEFAULT_RANGE))
    name = podnet.netns_name(nets.id, ip, podnet.SYSTEM_PREFIX)
    commands = [c for c, _ in rec.calls]
    host_nft = commands.index(["nft", "-f", "-"])
    assert host_nft < commands.index(["ip", "netns", "add", name])  # the host's rules first
    assert "snat to 198.18.0.1" in str(rec.calls[host_nft][1])
    assert ["ip", "netns", "exec", name, "ip", "link", "add", "slipway-svc", "type", "ifb"] in commands
    inside = rec.calls[-1]
    assert inside[0] == ["ip", "netns", "exec", name, "nft", "-f", "-"]
    assert "table ip localexec" in str(inside[1]) and "table ip slipway-guard" in str(inside[1])
    rec.calls.clear()
    other = nets.ensure("webhook", [9443])  # not on node duty: nothing of the above
    assert other != ip and "slipway" not in str(rec.calls) and "snat to 198.18.0.1" not in str(rec.calls)
