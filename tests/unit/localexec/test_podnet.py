"""Pod IPs and what sets up a pod's network namespace (hack/localexec/podnet.py), without
touching the machine's network: the commands are recorded, not run (the integration tests
run them)."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from localexec import podnet
from localexec.podnet import Allocator, PodNetworks, PodRange


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
