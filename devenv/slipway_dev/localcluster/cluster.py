"""A local Kubernetes control plane made of real components, with kwok playing the kubelets.

etcd -> kube-apiserver -> (kube-controller-manager, kube-scheduler, kwok, local executor),
all bound to 127.0.0.1, all state (certificates, etcd data, logs, pids, kubeconfig) under
one directory; on request also a real Prometheus, the real serving stack (KServe's controller
manager and webhooks, Traefik) and real Knative Serving. kwok simulates the nodes and every pod
except slipway's runtime pods (label slipway.dev/component) and KServe's predictor pods, Knative
revision pods included (label serving.kserve.io/inferenceservice), which the local executor
(slipway_dev/localexec) runs as real processes, one per container.
Starting is idempotent and a warm start reuses certificates and etcd data, so it costs
roughly the apiserver's own start-up time.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from slipway_dev import HACK
from slipway_dev.kube import Api, ApiError
from slipway_dev.localexec.podnet import unreachable_routes

from . import argo, components, knative, kubeconfig, kueue, nodes, serving
from . import prometheus as prom
from .argo import PROCESS as ARGO_CONTROLLER
from .argo import ArgoStack
from .components import APISERVER, CONTROLLER_MANAGER, ETCD, EXECUTOR, KWOK, PROMETHEUS, SCHEDULER
from .knative_stack import ALL_PROCESSES as KNATIVE
from .knative_stack import KnativeStack
from .kueue import PROCESS as KUEUE_MANAGER
from .kueue_stack import KueueStack
from .layout import (
    BINARIES,
    REPO_ROOT,
    Ports,
    StateDir,
    default_bin_dir,
    default_etcd,
    default_kserve_crds,
    default_state_dir,
    port_in_use,
)
from .pki import ADMIN, CONTROLLER_MANAGER_USER, PKI, SCHEDULER_USER, ClientIdentity
from .procs import ProcessSpec, ProcessTable
from .serving import KSERVE_MANAGER, TRAEFIK, ServingError, Stack, gateway_api_crds
from .sysnet import SystemNetworks

# Where the platform's own components live (their ServiceAccounts are not audited: components.audit_policy).
PLATFORM_NAMESPACES = ("kube-system", serving.NAMESPACE, serving.TRAEFIK_NAMESPACE, serving.MONITORING_NAMESPACE,
                       knative.NAMESPACE, knative.TRAEFIK_NAMESPACE, kueue.NAMESPACE, argo.NAMESPACE)  # fmt: skip

START_ORDER = (ETCD, APISERVER, CONTROLLER_MANAGER, SCHEDULER, KWOK)
# kube-apiserver must go before etcd: with etcd gone first, its shutdown hangs retrying.
# The optional processes are always in the first group: one started by an earlier `up` is
# stopped even when this Cluster was made without it.
OPTIONAL = (EXECUTOR, PROMETHEUS, TRAEFIK, KSERVE_MANAGER, *KNATIVE, KUEUE_MANAGER, ARGO_CONTROLLER)
STOP_ORDER = ((*OPTIONAL, KWOK, SCHEDULER, CONTROLLER_MANAGER), (APISERVER,), (ETCD,))
HACK_DIR = HACK

FIELD_MANAGER = "slipway-localcluster"
NODE_LEASES = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"


class ClusterError(RuntimeError):
    pass


def _stderr_log(message: str) -> None:
    print(f"localcluster: {message}", file=sys.stderr, flush=True)


class Cluster:
    """One local cluster, identified by its state directory.

    Ports come from, in order: the `ports` argument, the ports saved in the state dir by an
    earlier `up` (so a warm start keeps its kubeconfig valid), fresh free ports when
    `free_ports` is set, else the fixed defaults in `Ports`.

    `executor` (default on) runs the local executor as one more process; without it, pods
    labelled slipway.dev/component stay Pending (kwok leaves them alone) until an executor
    is run by hand, e.g. under a debugger. `executor_python` is the interpreter that runs it
    and, through it, the pods' `python` (default: this process's, i.e. the venv's).

    `prometheus` (default off) runs Prometheus at `prometheus_url`, scraping every
    `scrape_interval` what it discovers when the serving stack runs (KServe's predictor pods
    and Knative's queue-proxies through the apiserver, and Traefik).
    `serving` (default off) runs the real serving stack (slipway_dev/localcluster/serving.py): KServe's
    controller manager with its webhooks, the Gateway API CRDs and Traefik, whose Gateway
    listens at `ingress_url`.
    `knative` (default off) runs Knative Serving (slipway_dev/localcluster/knative_stack.py) for
    KServe's Serverless mode, its services reached through `knative_url`.
    `kueue` (default off) runs Kueue's manager (slipway_dev/localcluster/kueue_stack.py): its CRDs and
    webhooks, batch admission of pods that name a LocalQueue.
    `argo_rollouts` (default off) runs Argo Rollouts' analysis controller (slipway_dev/localcluster/argo.py) with its
    CRDs: AnalysisRuns are measured and judged by Argo's own code (bench/compare_argo.py).
    """

    def __init__(
        self,
        state_dir: Path | str | None = None,
        *,
        ports: Ports | None = None,
        free_ports: bool = False,
        bin_dir: Path | str | None = None,
        etcd: Path | str | None = None,
        crds_dir: Path | str | None = None,
        kserve_crds_dir: Path | str | None = None,
        fake_nodes: Sequence[nodes.FakeNode] = nodes.DEFAULT_NODES,
        executor: bool = True,
        executor_python: str | None = None,
        prometheus: bool = False,
        serving: bool = False,
        knative: bool = False,
        kueue: bool = False,
        argo_rollouts: bool = False,
        scrape_interval: str = "1s",
        prometheus_binary: Path | str | None = None,
        log: Callable[[str], None] = _stderr_log,
    ) -> None:
        self.state = StateDir(Path(state_dir) if state_dir is not None else default_state_dir())
        self.bin_dir = Path(bin_dir) if bin_dir is not None else default_bin_dir()
        self.etcd = Path(etcd) if etcd is not None else default_etcd()
        self.crds_dir = Path(crds_dir) if crds_dir is not None else REPO_ROOT / "crds"
        self.kserve_crds_dir = Path(kserve_crds_dir) if kserve_crds_dir is not None else default_kserve_crds()
        self.fake_nodes = tuple(fake_nodes)
        self.executor = executor
        self.executor_python = executor_python or sys.executable
        self.prometheus = prometheus
        self.scrape_interval = scrape_interval
        # The serving stack's Prometheus discovers pods through the apiserver, which Debian's
        # build cannot (it leaves Kubernetes discovery out): the one built from its module can.
        self.prometheus_binary = (
            Path(prometheus_binary) if prometheus_binary else prom.default_binary(self.bin_dir if serving else None)
        )
        self.serving = serving
        self.knative = knative
        self.kueue = kueue
        self.argo_rollouts = argo_rollouts
        wanted = {
            **dict.fromkeys(KNATIVE, knative),
            EXECUTOR: executor,
            PROMETHEUS: prometheus,
            TRAEFIK: serving,
            KSERVE_MANAGER: serving,
            KUEUE_MANAGER: kueue,
            ARGO_CONTROLLER: argo_rollouts,
        }
        self.start_order = START_ORDER + tuple(name for name in OPTIONAL if wanted[name])
        self.log = log
        self.ports = ports or self.state.load_ports() or (Ports.free() if free_ports else Ports())
        self.pki = PKI(self.state.pki)
        self.sysnet = SystemNetworks(self.state.sysnet, components.SERVICE_CIDR)
        self.procs = ProcessTable(self.state.run, self.state.logs)
        self._api_client: Api | None = None

    # ---- public API --------------------------------------------------------------------

    @property
    def state_dir(self) -> Path:
        return self.state.root

    @property
    def kubeconfig(self) -> Path:
        return self.state.kubeconfig

    @property
    def audit_log(self) -> Path:
        """The apiserver's audit log: JSON lines, one per request of an application's ServiceAccount."""
        return self.state.audit_log

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports.apiserver}"

    def binary(self, name: str) -> Path:
        path = self.bin_dir / name
        if not os.access(path, os.X_OK):
            raise ClusterError(f"{path} is missing: run hack/build-controlplane.sh to build the control plane binaries")
        return path

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """An environment for subprocesses that talk to this cluster: KUBECONFIG set, the
        built kubectl first on PATH, and kubectl's discovery cache kept in the state dir
        (private clusters on random ports would otherwise litter ~/.kube/cache)."""
        env = dict(os.environ if base is None else base)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = os.pathsep.join(p for p in (str(self.bin_dir), env.get("PATH", "")) if p)
        env["KUBECACHEDIR"] = str(self.state.kube_cache)
        return env

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 120.0,
        kubeconfig: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run the built kubectl against this cluster, as the admin user unless another
        `kubeconfig` is given (e.g. one from user_kubeconfig())."""
        env = self.env()
        if kubeconfig is not None:
            env["KUBECONFIG"] = str(kubeconfig)
        argv = [str(self.binary("kubectl")), *args]
        proc = subprocess.run(argv, input=input, capture_output=True, text=True, env=env, timeout=timeout)
        if check and proc.returncode != 0:
            raise ClusterError(f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    @property
    def executor_logs(self) -> Path:
        """Where the local executor writes each container's output, as
        <namespace>_<pod>_<container>.log (`kubectl logs` cannot reach them: no kubelet)."""
        return self.state.executor / "logs"

    @property
    def ingress_url(self) -> str:
        """Traefik's Gateway listener (with serving=True): send requests for an
        InferenceService here with `Host: <host of its status.url>` (under example.com)."""
        return f"http://127.0.0.1:{self.ports.ingress}"

    @property
    def gateway_api_url(self) -> str:
        """Traefik's own API for the Gateway listener (with serving=True), e.g. <url>/rawdata: its routers and
        the servers each service balances over."""
        return f"http://127.0.0.1:{self.ports.traefik}/api"

    @property
    def knative_url(self) -> str:
        """Traefik's Knative entry point (Cluster(knative=True)): a Knative Service's requests go
        here with its URL's host in the Host header."""
        return KnativeStack(self).ingress_url()

    @property
    def prometheus_url(self) -> str:
        """Prometheus (with prometheus=True), e.g. <url>/api/v1/query?query=up."""
        return f"http://127.0.0.1:{self.ports.prometheus}"

    def is_running(self) -> bool:
        return all(pid is not None for pid in self.procs.running(self.start_order).values()) and self._readyz()

    def status(self) -> dict[str, Any]:
        """Readiness is the control plane's; the executor's pid is listed (None when it is
        not running, which `up --no-executor` intends), whatever this Cluster's option; the
        other optional processes' (Prometheus, the serving stack, Knative) when they run or
        this Cluster asks for them, and Prometheus' and Traefik's URLs when they run."""
        processes = self.procs.running((*START_ORDER, *OPTIONAL))
        processes = {
            n: pid for n, pid in processes.items() if pid or n not in OPTIONAL or n == EXECUTOR or n in self.start_order
        }
        up = all(processes[name] is not None for name in START_ORDER)
        out: dict[str, Any] = {
            "state_dir": str(self.state_dir),
            "server": self.server,
            "kubeconfig": str(self.kubeconfig),
            "ports": self.ports.to_json(),
            "processes": processes,
            "ready": up and self._readyz(),
            "logs": str(self.state.logs),
            "container_logs": str(self.executor_logs),
        }
        if processes.get(PROMETHEUS):
            out["prometheus_url"] = self.prometheus_url
        if processes.get(TRAEFIK):
            out["ingress_url"] = self.ingress_url
        return out

    def up(self, timeout: float = 300.0) -> dict[str, float]:
        """Start whatever is not running and wait until the cluster is usable. Returns the
        seconds spent per phase ({} when everything was already running)."""
        t0 = time.monotonic()
        for name in OPTIONAL:
            if name not in self.start_order and self.procs.pid(name) is not None:
                self.log(f"stopping {name} (not asked for)")
                self.procs.stop([name], 20.0)
        if self.prometheus and self.procs.pid(PROMETHEUS) is not None:
            self._reload_prometheus()
        if self.is_running():
            self.log(f"already running at {self.server} (state {self.state_dir})")
            return {}
        self._check_prerequisites()
        timings: dict[str, float] = {}
        deadline = t0 + timeout
        already = self._live()
        try:
            self._phase(timings, "certificates", self._prepare)
            self._phase(timings, "etcd", lambda: self._start_etcd(deadline))
            self._phase(timings, "kube-apiserver", lambda: self._start_apiserver(deadline))
            self._phase(timings, "controllers", self._start_controllers)
            self._phase(timings, "nodes", self._apply_nodes)
            self._phase(timings, "crds", self._install_crds_if_changed)
            if self.knative:
                self._phase(timings, "knative", lambda: KnativeStack(self).start(deadline))
            if self.kueue:
                self._phase(timings, "kueue", lambda: KueueStack(self).start(deadline))
            if self.serving:
                self._phase(timings, "kserve", lambda: Stack(self).start(deadline))
            if self.argo_rollouts:
                self._phase(timings, "argo-rollouts", lambda: ArgoStack(self).start(deadline))
            if self.prometheus:
                self._phase(timings, "prometheus", self._start_prometheus)
            self._phase(timings, "ready", lambda: self._wait_usable(deadline))
        except BaseException:
            # Leave nothing half-started behind (logs stay for the post-mortem). A start that was bringing back
            # parts of a running cluster (one component killed) stops only what it started: the cluster stays.
            if not already:
                self.log(f"start failed; stopping what was started (logs in {self.state.logs})")
                self.down()
                raise
            started = self._live() - already
            self.log(f"start failed; stopping what this start began ({', '.join(sorted(started)) or 'nothing'}), "
                     f"keeping the {len(already)} already running (logs in {self.state.logs})")  # fmt: skip
            for group in STOP_ORDER:
                self.procs.stop([n for n in group if n in started], 20.0)
            raise
        timings["total"] = time.monotonic() - t0
        self.log(f"cluster ready in {timings['total']:.1f}s at {self.server}; KUBECONFIG={self.kubeconfig}")
        return timings

    def _live(self) -> set[str]:
        """The components of this state dir that are running now."""
        return {n for group in STOP_ORDER for n, pid in self.procs.running(group).items() if pid is not None}

    def down(self, timeout: float = 20.0, purge: bool = False) -> None:
        """Stop exactly the processes this state dir started (recorded pids), kwok and the
        controllers first, then the apiserver, then etcd. `purge` also deletes the state dir."""
        for group in STOP_ORDER:
            live = [n for n, pid in self.procs.running(group).items() if pid is not None]
            if live:
                self.log(f"stopping {', '.join(live)}")
            killed = self.procs.stop(group, timeout)
            if killed:
                self.log(f"{', '.join(killed)} ignored SIGTERM for {timeout:.0f}s; killed")
        if self.state.sysnet.exists():  # the namespaces of the components that ran in them
            self.sysnet.remove_all()
        if purge and self.state_dir.exists():
            shutil.rmtree(self.state_dir)
            self.log(f"removed {self.state_dir}")

    def install_crds(self, paths: Iterable[Path] | None = None) -> list[str]:
        """Server-side apply every YAML in <repo>/crds/ plus the KServe CRDs (or `paths`),
        then wait until each CRD applied is Established. Returns the CRD names. Callable any
        time the cluster is up, e.g. after CRDs were regenerated."""
        files = [f for f in (self._crd_files() if paths is None else paths) if _has_content(f)]
        if not files:
            return []
        args = ["apply", "--server-side", "--force-conflicts", f"--field-manager={FIELD_MANAGER}", "-o", "name"]
        for f in files:
            args += ["-f", str(f)]
        applied = self.kubectl(*args).stdout.split()
        crds = [name.split("/", 1)[1] for name in applied if name.startswith("customresourcedefinition")]
        # Polled here rather than with `kubectl wait`, which fails outright on a CRD whose
        # status.conditions is not populated yet (right after creation).
        pending = set(crds)

        def all_established() -> bool:
            pending.difference_update([n for n in pending if self._crd_established(n)])
            return not pending

        self._wait(f"CRDs Established ({len(crds)})", all_established, time.monotonic() + 60, [APISERVER])
        if paths is None:
            self.state.crds_record.write_text(json.dumps({"digest": _digest(files), "names": crds}) + "\n")
        return crds

    def user_kubeconfig(self, name: str, groups: Sequence[str] = (), path: Path | None = None) -> Path:
        """A kubeconfig for another user, authenticated by a client certificate from the
        cluster CA (CN=name, O=groups) and with no rights unless RBAC grants some."""
        who = ClientIdentity(name, tuple(groups))
        self.pki.ensure_client(who)
        cert, _ = self.pki.client_cert(who)
        target = path or self.state.root / "users" / f"{cert.stem.removeprefix('client-')}.kubeconfig"
        return kubeconfig.for_identity(self.pki, self.server, who, target)

    # ---- start-up steps ----------------------------------------------------------------

    def _phase(self, timings: dict[str, float], name: str, step: Callable[[], object]) -> None:
        start = time.monotonic()
        step()
        timings[name] = time.monotonic() - start
        self.log(f"{name}: {timings[name]:.1f}s")

    def _check_prerequisites(self) -> None:
        for name in BINARIES:
            self.binary(name)
        if not os.access(self.etcd, os.X_OK):
            raise ClusterError(f"{self.etcd} is missing: run hack/install-system-deps.sh (or set SLIPWAY_ETCD)")
        if self.prometheus and not os.access(self.prometheus_binary, os.X_OK):
            raise ClusterError(
                f"{self.prometheus_binary} is missing: run hack/install-system-deps.sh or hack/build-serving.sh "
                "(or set SLIPWAY_PROMETHEUS)"
            )
        if shutil.which("openssl") is None and "SLIPWAY_OPENSSL" not in os.environ:
            raise ClusterError("openssl is not on PATH; it is needed to make the cluster's certificates")
        self._crd_files()  # raises if the KServe CRDs are missing, before anything starts

    def _prepare(self) -> None:
        for d in (self.state.root, self.state.logs, self.state.run, self.state.kwok_workdir):
            d.mkdir(parents=True, exist_ok=True)
        self._guard_network()
        self.state.save_ports(self.ports)
        self._api_client = None  # certificates may be new
        if self.pki.ensure():
            self.log(f"certificates written to {self.state.pki}")
        # Rewritten every start: cheap, and the server URL follows the ports.
        for who, path in self._kubeconfigs().items():
            cert, key = self.pki.client_cert(who)
            kubeconfig.write(path, self.server, self.pki.ca_cert, cert, key, user=who.name)

    def _guard_network(self) -> None:
        """kwok's simulated pods have addresses in the pod network and Services have ClusterIPs, neither with
        anything behind them: route both to `unreachable` before anything can learn them, so no proxy's packet
        follows the default route off the machine (the executor installs the same, with or without us)."""
        for cmd in unreachable_routes(components.SERVICE_CIDR):
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise ClusterError(f"{' '.join(cmd)} failed (needs root): {proc.stderr.strip()}")

    def _kubeconfigs(self) -> dict[ClientIdentity, Path]:
        return {
            ADMIN: self.kubeconfig,
            CONTROLLER_MANAGER_USER: self.state.component_kubeconfigs / "kube-controller-manager.kubeconfig",
            SCHEDULER_USER: self.state.component_kubeconfigs / "kube-scheduler.kubeconfig",
        }

    def _start(self, spec: ProcessSpec, *ports: int) -> None:
        if self.procs.pid(spec.name) is not None:
            return
        busy = [p for p in ports if port_in_use(p)]
        if busy:
            raise ClusterError(
                f"cannot start {spec.name}: 127.0.0.1 port(s) {busy} already in use "
                "(another cluster? stop it, or use a different state dir / --free-ports)"
            )
        self.procs.start(spec)

    def _wait(self, what: str, ok: Callable[[], bool], deadline: float, watch: Sequence[str]) -> None:
        """Poll `ok` until it holds; fail early, with the log tail, if a watched process dies."""
        delay = 0.05
        while True:
            if ok():
                return
            for name in watch:
                if self.procs.pid(name) is None:
                    raise ClusterError(
                        f"{name} exited while waiting for {what}; last lines of {self.procs.log_path(name)}:\n"
                        + self.procs.tail(name)
                    )
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- {n} ---\n{self.procs.tail(n, 15)}" for n in watch)
                raise ClusterError(f"timed out waiting for {what}\n{tails}")
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    def _start_etcd(self, deadline: float) -> None:
        p = self.ports
        self._start(ProcessSpec(ETCD, components.etcd(self.etcd, self.state, p)), p.etcd_client, p.etcd_peer)
        etcd = Api(f"http://127.0.0.1:{p.etcd_client}")
        self._wait("etcd /health", lambda: (etcd.get_json("/health") or {}).get("health") == "true", deadline, [ETCD])

    def _start_apiserver(self, deadline: float) -> None:
        policy = components.audit_policy(PLATFORM_NAMESPACES)
        self.state.audit_policy.write_text(json.dumps(policy, indent=2) + "\n")
        argv = components.apiserver(self.binary(APISERVER), self.state, self.ports, self.pki)
        self._start(ProcessSpec(APISERVER, argv), self.ports.apiserver)
        self._wait("kube-apiserver /readyz", self._readyz, deadline, [ETCD, APISERVER])

    def _start_controllers(self) -> None:
        p, kc = self.ports, self._kubeconfigs()
        binary = self.binary(CONTROLLER_MANAGER)
        kcm_argv = components.controller_manager(binary, self.state, p, self.pki, kc[CONTROLLER_MANAGER_USER])
        self._start(ProcessSpec(CONTROLLER_MANAGER, kcm_argv), p.controller_manager)
        scheduler_argv = components.scheduler(self.binary(SCHEDULER), self.state, p, kc[SCHEDULER_USER])
        self._start(ProcessSpec(SCHEDULER, scheduler_argv), p.scheduler)
        if self.procs.pid(KWOK) is None:
            # kwok only manages a node once it holds the node's Lease, and it draws a new
            # holder identity at every start: after a restart it would wait for the previous
            # run's leases to expire (40s) before Nodes and Pods move again. Nothing else
            # holds these leases, so clearing them lets the new kwok take over at once.
            for node in self.fake_nodes:
                self._api().delete(f"{NODE_LEASES}/{node.name}")
        # kwok reads ~/.kwok/kwok.yaml too if it exists; its work dir is moved into the
        # state dir so only our kwok.yaml applies.
        kwok_env = dict(os.environ, KWOK_WORKDIR=str(self.state.kwok_workdir))
        self._start(ProcessSpec(KWOK, components.kwok(self.binary(KWOK), self.kubeconfig), env=kwok_env))
        if self.executor and self.procs.pid(EXECUTOR) is None:
            self._start_executor()

    def _start_executor(self) -> None:
        # A ready file left by an executor that died must not pass for the new one's.
        self._executor_ready.unlink(missing_ok=True)
        argv = components.executor(
            self.executor_python, self.state, self.kubeconfig, self.executor_python, self.bin_dir
        )
        self._start(ProcessSpec(EXECUTOR, argv, env=dict(os.environ)))

    @property
    def _executor_ready(self) -> Path:
        return self.state.executor / "ready"

    def _start_prometheus(self) -> None:
        if self.procs.pid(PROMETHEUS) is None:
            config, _ = prom.write_config(self.state, self.scrape_interval, self._discovery())
            argv = prom.argv(self.prometheus_binary, self.state, self.ports.prometheus, config)
            self._start(ProcessSpec(PROMETHEUS, argv), self.ports.prometheus)

    def _discovery(self) -> prom.Discovery | None:
        """With the real serving stack, Prometheus discovers KServe's pods through the apiserver."""
        return Stack(self).discovery() if self.serving else None

    def _reload_prometheus(self) -> None:
        """A running Prometheus takes a changed config (scrape interval) without a restart."""
        _, changed = prom.write_config(self.state, self.scrape_interval, self._discovery())
        if changed:
            Api(self.prometheus_url).request("POST", "/-/reload")
            self.log(f"prometheus: configuration reloaded (scrape interval {self.scrape_interval})")

    def _apply_nodes(self) -> None:
        for node in self.fake_nodes:
            try:
                self._api().apply(f"/api/v1/nodes/{node.name}", node.manifest(), FIELD_MANAGER)
            except ApiError as err:
                raise ClusterError(str(err)) from err

    def _install_crds_if_changed(self) -> None:
        """install_crds(), skipped on a warm start when the same files were applied last
        time and every CRD they defined is still Established (saves seconds of kubectl)."""
        files = [f for f in self._crd_files() if _has_content(f)]
        try:
            record = json.loads(self.state.crds_record.read_text())
        except (OSError, ValueError):
            record = {}
        if record.get("digest") == _digest(files) and all(self._crd_established(n) for n in record["names"]):
            self.log(f"CRDs unchanged since last install ({len(record['names'])})")
            return
        self.install_crds()

    def _crd_files(self) -> list[Path]:
        files = _yaml_files(self.crds_dir) if self.crds_dir.is_dir() else []
        if not self.kserve_crds_dir.is_dir():
            raise ClusterError(
                f"KServe CRDs not found at {self.kserve_crds_dir}: set SLIPWAY_KSERVE_CRDS to the "
                "directory holding the serving.kserve.io_*.yaml files"
            )
        try:
            gateway_api = gateway_api_crds()
        except ServingError as err:
            raise ClusterError(str(err)) from err
        return files + _yaml_files(self.kserve_crds_dir) + gateway_api

    def _wait_usable(self, deadline: float) -> None:
        watch = list(self.start_order)
        for name, port in (
            (CONTROLLER_MANAGER, self.ports.controller_manager),
            (SCHEDULER, self.ports.scheduler),
        ):
            self._wait(f"{name} /healthz", _healthz(port), deadline, watch)
        # The default ServiceAccount only appears once the controller-manager's
        # serviceaccount controller runs: proof the controllers are alive and authorized.
        self._wait(
            "ServiceAccount default/default",
            lambda: self._api().ok("/api/v1/namespaces/default/serviceaccounts/default"),
            deadline,
            watch,
        )
        self._wait(
            f"nodes {', '.join(n.name for n in self.fake_nodes)} Ready and held by kwok",
            self._nodes_ready,
            deadline,
            watch,
        )
        if self.executor:
            # Written once its first list of pods went through: it is watching.
            self._wait("the local executor watching pods", self._executor_ready.exists, deadline, watch)
        if self.prometheus:
            prometheus = Api(self.prometheus_url)
            self._wait("prometheus /-/ready", lambda: prometheus.ok("/-/ready"), deadline, watch)

    # ---- probes ------------------------------------------------------------------------

    def _api(self) -> Api:
        if self._api_client is None:
            cert, key = self.pki.client_cert(ADMIN)
            self._api_client = Api.with_client_cert(self.server, self.pki.ca_cert, cert, key)
        return self._api_client

    def _readyz(self) -> bool:
        cert, _ = self.pki.client_cert(ADMIN)
        if not cert.exists():
            return False
        return self._api().ok("/readyz", timeout=2.0)

    def _crd_established(self, name: str) -> bool:
        crd = self._api().get_json(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
        conditions = (crd or {}).get("status", {}).get("conditions") or []
        return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)

    def _nodes_ready(self) -> bool:
        # A node's Ready condition survives a restart in etcd; its Lease (cleared before kwok
        # starts) proves the running kwok has taken the node over.
        leases = self._api().get_json(NODE_LEASES)
        held = {
            item["metadata"]["name"]
            for item in (leases or {}).get("items", [])
            if item.get("spec", {}).get("holderIdentity")
        }
        if not all(n.name in held for n in self.fake_nodes):
            return False
        listing = self._api().get_json("/api/v1/nodes")
        if not listing:
            return False
        ready = {
            item["metadata"]["name"]
            for item in listing.get("items", [])
            if any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in item.get("status", {}).get("conditions", [])
            )
        }
        return all(n.name in ready for n in self.fake_nodes)


def _yaml_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def _healthz(port: int) -> Callable[[], bool]:
    """A probe of a component's /healthz (a controller-manager or scheduler port)."""
    api = Api.insecure(f"https://127.0.0.1:{port}")
    return lambda: api.ok("/healthz")


def _digest(files: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(str(f).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def _has_content(path: Path) -> bool:
    """False for files with only comments/separators: kubectl rejects them ("no objects
    passed to apply"), and an empty placeholder in crds/ should not break `up`."""
    for line in path.read_text().splitlines():
        s = line.strip()
        if s and not s.startswith("#") and s != "---":
            return True
    return False
