"""Pod IPs and what sets up a pod's network namespace (hack/localexec/podnet.py), without
touching the machine's network: the commands are recorded, not run."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from localexec import podnet
from localexec.podnet import Allocator, PodNetworks, PodRange


def test_range_checks() -> None:
    r = PodRange.parse("127.64.0.0/16")
    assert r.gateway == "127.64.0.1"
    assert list(r.candidates())[:2] == ["127.64.0.2", "127.64.0.3"]
    assert "127.64.0.2" in r and "127.64.0.1" not in r and "127.65.0.2" not in r and "bogus" not in r
    with pytest.raises(ValueError, match=r"not inside 127\.0\.0\.0/8"):
        PodRange.parse("10.244.0.0/16")  # traffic must never leave the loopback
    with pytest.raises(ValueError, match=r"127\.0\.0\.1"):
        PodRange.parse("127.0.0.0/16")
    with pytest.raises(ValueError, match="too small"):
        PodRange.parse("127.64.0.0/31")


def test_allocation_is_stable_across_restarts_and_released(tmp_path: Path) -> None:
    r = PodRange.parse("127.64.0.0/29")  # .2 to .6
    state = tmp_path / "ips.json"
    a = Allocator(r, state)
    assert a.allocate("u1") == "127.64.0.2"
    assert a.allocate("u2", taken_elsewhere=["127.64.0.3"]) == "127.64.0.4"  # another executor holds .3
    assert a.allocate("u1") == "127.64.0.2"
    assert a.allocate("u3", preferred="127.64.0.6") == "127.64.0.6"  # the podIP its status had
    assert a.allocate("u4", preferred="127.64.0.2") == "127.64.0.3"  # taken: the lowest free instead
    again = Allocator(r, state)  # a restarted executor
    assert again.get("u1") == "127.64.0.2" and again.get("u3") == "127.64.0.6"
    assert again.release("u1") == "127.64.0.2" and again.allocate("u5") == "127.64.0.2"
    assert sorted(again.retain(["u5", "u2"])) == ["u3", "u4"]
    with pytest.raises(podnet.NetworkError, match="exhausted"):
        for i in range(10):
            again.allocate(f"x{i}")


def test_names() -> None:
    assert podnet.veth_name("127.64.0.2") == "lxp7f400002"
    assert len(podnet.veth_name("127.255.255.254")) <= 15
    assert podnet.netns_name("abc123", "127.64.0.2") == "lxp-abc123-127.64.0.2"
    assert podnet.executor_id(Path("/a")) != podnet.executor_id(Path("/b"))


def test_commands_keep_everything_on_the_loopback() -> None:
    r = PodRange.parse("127.64.0.0/16")
    host = podnet.host_commands("127.64.0.7", r.gateway, "lxp-abc123-127.64.0.7")
    route = ["ip", "route", "replace", "127.64.0.7/32", "dev", "lxp7f400007", "src", "127.64.0.1", "table", "local"]
    assert route in host
    pod = podnet.pod_commands("127.64.0.7", r)
    assert ["ip", "addr", "add", "127.64.0.7/32", "dev", "eth0"] in pod
    routes = [c for c in pod if c[:3] == ["ip", "route", "add"]]
    assert [c[3] for c in routes] == ["127.64.0.1/32", "127.64.0.0/16"]  # no default route: nothing else is reachable
    assert all(c[-2:] == ["table", "local"] and "src" in c for c in routes)


def test_pod_nat_leaves_the_pods_own_ports_alone() -> None:
    text = podnet.pod_nft("127.64.0.7", "127.64.0.1", [8080, 9081, 8080])
    assert "ip daddr 127.0.0.1 tcp dport != { 8012, 8022, 8080, 9081, 9088, 9090, 9091 } dnat to 127.64.0.1" in text
    assert 'oifname "eth0" ip saddr 127.0.0.0/8 ip saddr != 127.64.0.7 snat to 127.64.0.7' in text
    assert podnet.host_nft("127.64.0.1", "") is not None
    existing = f"table ip localexec {{ chain prerouting {{ {podnet.host_rule('127.64.0.1')} }} }}"
    assert podnet.host_nft("127.64.0.1", existing) is None  # added once, shared by executors


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
    nets = PodNetworks(tmp_path / "executor", PodRange.parse("127.64.0.0/16"), rec)
    (tmp_path / "executor").mkdir()
    ip = nets.ensure("uid-1", [8080])
    assert ip == "127.64.0.2"
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
