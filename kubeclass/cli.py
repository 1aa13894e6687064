"""`kubeclass` command line: `up` (the whole cluster in one process), `server`, `scheduler`, `explain pod`,
`token create`."""
from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import logging
import os
import signal
import sys
import tempfile

import yaml

DEFAULT_DATA_DIR = os.path.expanduser("~/.kubeclass")


def kubeconfig(server: str, ca_pem: bytes, user: str, token: str) -> dict:
    return {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": "kubeclass", "cluster": {"server": server,
                                                        "certificate-authority-data": base64.b64encode(ca_pem).decode()}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": f"{user}@kubeclass", "context": {"cluster": "kubeclass", "user": user}}],
        "current-context": f"{user}@kubeclass",
    }


def _paths(data_dir: str) -> dict:
    return {"pki": os.path.join(data_dir, "pki"), "tokens": os.path.join(data_dir, "tokens.csv"),
            "db": os.path.join(data_dir, "kubeclass.db"), "kubeconfig": os.path.join(data_dir, "kubeconfig"),
            "server": os.path.join(data_dir, "server-url")}


def _admin_token(tokens_path: str) -> str:
    from .server.auth import TokenFile
    tf = TokenFile(tokens_path)
    for t, u in tf._tokens.items():
        if u.name == "admin":
            return t
    return tf.add("admin", ["system:masters"], "admin")


async def _compactor(store, interval: float) -> None:
    prev = store.revision
    while True:
        await asyncio.sleep(interval)
        try:
            if prev > 0:
                await store.compact(prev)
        except Exception:
            logging.getLogger("kubeclass.store").exception("compaction failed")
        prev = store.revision


def _share_pki(src: str, data_dir: str) -> str:
    """Copy another server's CA, keys (not its serving certificate) and token file into data_dir, where absent."""
    import shutil
    s_pki, d_pki = os.path.join(src, "pki"), os.path.join(data_dir, "pki")
    if not os.path.isfile(os.path.join(s_pki, "ca.crt")) or not os.path.isfile(os.path.join(src, "tokens.csv")):
        return f"{src} is not a kubeclass data directory (no pki/ca.crt or tokens.csv)"
    os.makedirs(d_pki, mode=0o700, exist_ok=True)
    for name in os.listdir(s_pki):
        if name in ("server.crt", "server.key") or os.path.exists(os.path.join(d_pki, name)):
            continue
        shutil.copy2(os.path.join(s_pki, name), os.path.join(d_pki, name))
    if not os.path.exists(os.path.join(data_dir, "tokens.csv")):
        shutil.copy2(os.path.join(src, "tokens.csv"), os.path.join(data_dir, "tokens.csv"))
    return ""


async def _open_etcd(args, data_dir: str):
    """The etcd store: the members of --etcd-servers, or (kubeclass up without them) a local member it starts."""
    from .store import localetcd
    from .store.etcd import EtcdStore, endpoints_of
    local = None
    urls = [u.strip() for u in args.etcd_servers.split(",") if u.strip()]
    if not urls:
        if args.cmd != "up":
            raise ValueError("--storage etcd needs --etcd-servers (comma-separated URLs of the etcd members)")
        local = localetcd.start(data_dir, args.etcd_port, args.etcd_port + 1)
        urls = [f"http://127.0.0.1:{args.etcd_port}"]
    try:
        endpoints, secure = endpoints_of(urls)
    except ValueError as e:
        raise ValueError(f"--etcd-servers: {e}") from None

    def read(path: str) -> bytes | None:
        if not path:
            return None
        with open(path, "rb") as f:
            return f.read()
    if secure and not args.etcd_cafile:
        raise ValueError("--etcd-servers uses https: give --etcd-cafile (and --etcd-certfile / --etcd-keyfile)")
    store = EtcdStore(endpoints, args.etcd_prefix, read(args.etcd_cafile), read(args.etcd_certfile), read(args.etcd_keyfile))
    try:
        await store.open()
    except BaseException:
        if local is not None:
            localetcd.stop(local)
        raise
    return store, local


async def serve(args) -> int:
    from .api import schema
    from .server.app import APIServer
    from .server.auth import TokenFile
    from .server.certs import ensure_certs, ensure_client_cert
    from .server.serving import HTTPSServer, port_in_use
    from .store import StoreDamaged, StoreError
    from .store.sqlite import SQLiteStore

    data_dir = os.path.abspath(args.data_dir)
    node_opts = None
    if args.cmd == "up" and not args.no_node:
        try:
            node_opts = node_options(args, os.path.join(data_dir, "node"))
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        taken = node_port_taken(node_opts, "Pass --node-port with a free port, or --no-node")
        if taken:
            print(taken, file=sys.stderr)
            return 1
    why = port_in_use(args.bind, args.port)
    if why:
        print(f"kubeclass: cannot listen on {args.bind}:{args.port}: {why}", file=sys.stderr, flush=True)
        return 1
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    mode = os.stat(data_dir).st_mode & 0o777
    if mode & 0o077:
        print(f"warning: the data directory {data_dir} is open to other users (mode {mode:04o}); the store and pki/ inside "
              f"are kept 0600/0700, but `chmod 700 {data_dir}` is safer: it holds the cluster's Secrets and keys", file=sys.stderr)
    p = _paths(data_dir)
    if args.pki_from:
        why = _share_pki(os.path.abspath(args.pki_from), data_dir)
        if why:
            print(f"error: --pki-from: {why}", file=sys.stderr)
            return 1
    hosts = [args.bind] if args.bind not in ("0.0.0.0", "::") else []
    from .node.apiproxy import service_ip
    try:
        hosts.append(service_ip(args.service_cluster_ip_range))   # Pods reach the API server there (the kubernetes Service)
    except ValueError:
        print(f"error: --service-cluster-ip-range: {args.service_cluster_ip_range!r} is not a CIDR (e.g. 10.96.0.0/12)",
              file=sys.stderr)
        return 1
    ca, crt, key = ensure_certs(p["pki"], hosts)
    token = _admin_token(p["tokens"])
    host = args.bind if args.bind not in ("0.0.0.0", "::") else "127.0.0.1"
    server_url = f"https://{host}:{args.port}"
    with open(ca, "rb") as f:
        ca_pem = f.read()
    fd = os.open(p["kubeconfig"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(kubeconfig(server_url, ca_pem, "admin", token), f, sort_keys=False)
    with open(p["server"], "w") as f:
        f.write(server_url + "\n")
    schema.definitions()  # load upstream schemas before serving
    local_etcd = None
    try:
        if args.storage == "etcd":
            store, local_etcd = await _open_etcd(args, data_dir)
        else:
            store = SQLiteStore(p["db"], durable=args.durable, identity_file=os.path.join(data_dir, "cluster-id"))
    except (StoreDamaged, StoreError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    kubelet_client = ensure_client_cert(p["pki"], "apiserver-kubelet-client", "kube-apiserver-kubelet-client", ["system:masters"])
    from .server.satokens import TokenIssuer
    issuer = TokenIssuer(os.path.join(p["pki"], "sa.key"), jwks_uri=f"{server_url}/openid/v1/jwks")
    api = APIServer(store, TokenFile(p["tokens"]), f"{host}:{args.port}", bookmark_interval=args.bookmark_interval, body_timeout=args.request_body_timeout,
                    toleration_seconds=(args.default_not_ready_toleration_seconds, args.default_unreachable_toleration_seconds),
                    kubelet_client=kubelet_client, issuer=issuer, service_cidr=args.service_cluster_ip_range)
    await api.start()
    server = HTTPSServer(api, args.bind, args.port, crt, key)
    loop = asyncio.get_running_loop()
    _quiet_transport_errors(loop)
    components: list[asyncio.Task] = []

    async def stop_components_then_server() -> None:
        # the in-process components first, while the server still answers: their watches and requests end
        # cleanly, so the server's own stop has no open stream to wait for; a component slower than 5 s
        # (the node powering VMs off) finishes after the server stopped, with the store still open
        for t in components:
            t.cancel()
        if components:
            await asyncio.wait(components, timeout=5)
        server.stop()

    stopping: list[asyncio.Task] = []

    def shutdown() -> None:
        if not stopping:
            stopping.append(loop.create_task(stop_components_then_server()))
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, shutdown)
    loop.add_signal_handler(signal.SIGUSR1, functools.partial(dump_stacks, loop))
    compactor = loop.create_task(_compactor(store, args.compact_interval))
    if args.cmd == "up" and not args.no_scheduler:
        components.append(loop.create_task(_after_server_start(
            server, functools.partial(run_scheduler, p["kubeconfig"], scheduler_options(args), secure_port=args.scheduler_secure_port,
                                      bind_address=args.bind, cert_dir=os.path.join(p["pki"], "kube-scheduler")),
            "kubeclass.scheduler")))
    if args.cmd == "up" and not args.no_controllers:
        components.append(loop.create_task(_after_server_start(
            server, functools.partial(run_controllers, p["kubeconfig"], controller_options(args), args.controllers_secure_port,
                                      args.bind, os.path.join(p["pki"], "kube-controller-manager")), "kubeclass.controllers"),
            name="controllers"))
    if args.cmd == "up" and not args.no_simulator:
        components.append(loop.create_task(_after_server_start(
            server, functools.partial(run_simulator, p["kubeconfig"], args), "kubeclass.simulator")))
    if args.cmd == "up" and not args.no_node:
        components.append(loop.create_task(_after_server_start(
            server, functools.partial(run_node, p["kubeconfig"], node_opts),
            "kubeclass.node")))
    print(f"kubeclass API server listening on {server_url} (data in {data_dir})", flush=True)
    print(f"export KUBECONFIG={p['kubeconfig']}", flush=True)
    try:
        await server.serve()
    except OSError as e:
        print(f"kubeclass: cannot listen on {args.bind}:{args.port}: {e}", file=sys.stderr, flush=True)
        return 1
    finally:
        for t in components:
            t.cancel()
        if components:
            # let them finish their clean-up (the node powers its idle pooled VMs off) while the store is open
            _, pending = await asyncio.wait(components, timeout=15)
            for t in pending:
                logging.getLogger("kubeclass").warning("component %s did not stop within 15 s: %s", t.get_name(),
                                                       "".join(t.get_stack(limit=3) and [str(f) for f in t.get_stack(limit=3)]))
        compactor.cancel()
        await store.close()
        if local_etcd is not None:
            from .store import localetcd
            localetcd.stop(local_etcd)
    print("kubeclass stopped", flush=True)
    return 0


def dump_stacks(loop) -> None:
    """SIGUSR1: every task's and thread's stack to stderr (the log), to see what a stuck process waits on."""
    import faulthandler
    for t in asyncio.all_tasks(loop):
        print(f"task {t.get_name()}: {t!r}", file=sys.stderr)
        t.print_stack(limit=8, file=sys.stderr)
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    sys.stderr.flush()


def scheduler_options(args):
    from .scheduler.scheduler import Options
    return Options(runtime_handler_filter=not args.no_runtime_handler_filter, scoring_strategy=args.scoring_strategy,
                   percentage_of_nodes_to_score=args.percentage_of_nodes_to_score, record_decisions=args.record_decisions)


async def _metrics_endpoint(registry, config, port: int, address: str, cert_dir: str, name: str):
    """The component's HTTPS /metrics (metricsexport.py), or None when port is 0."""
    if not port:
        return None
    from . import metricsexport
    return await metricsexport.serve(registry, config, address, port, cert_dir or tempfile.mkdtemp(prefix="kubeclass-"), name)


async def run_scheduler(kubeconfig_path: str, opts, leader_elect: bool = True, secure_port: int = 0,
                        bind_address: str = "127.0.0.1", cert_dir: str = "") -> None:
    from .client import Client, Config
    from .leaderelection import LeaderElector
    from .scheduler import metrics
    from .scheduler.scheduler import Scheduler
    client = Client(Config.from_kubeconfig(kubeconfig_path), user_agent="kubeclass-scheduler")
    endpoint = await _metrics_endpoint(metrics.REGISTRY, client.config, secure_port, bind_address, cert_dir, "kube-scheduler")
    try:
        if leader_elect:
            elector = LeaderElector(client, "kube-system", "kube-scheduler", opts.identity)
            await elector.run(lambda: Scheduler(client, opts).run())
        else:
            await Scheduler(client, opts).run()
    finally:
        if endpoint is not None:
            await endpoint.cleanup()
        await client.close()


async def _after_server_start(server, run, logger: str) -> None:
    """Run an in-process component once the server listens; its failure is logged, never fatal to up."""
    while not server.started:
        await asyncio.sleep(0.02)
    try:
        await run()
    except asyncio.CancelledError:
        raise
    except Exception:
        logging.getLogger(logger).exception("%s stopped", logger.rsplit(".", 1)[-1])


def controller_options(args):
    from .controllers.manager import Options, enabled
    spec = list(args.controllers or ["*"])
    if getattr(args, "no_node_lifecycle", False):
        spec.append("-nodelifecycle")
    return Options(enabled(spec), args.node_monitor_grace_period, args.node_monitor_period,
                   leader_elect=not getattr(args, "no_leader_elect", False))


async def run_controllers(kubeconfig_path: str, opts, secure_port: int = 0, bind_address: str = "127.0.0.1",
                          cert_dir: str = "") -> None:
    from .client import Config
    from .controllers import manager, metrics
    endpoint = await _metrics_endpoint(metrics.REGISTRY, Config.from_kubeconfig(kubeconfig_path), secure_port, bind_address,
                                       cert_dir, "kube-controller-manager")
    try:
        await manager.run(kubeconfig_path, opts)
    finally:
        if endpoint is not None:
            await endpoint.cleanup()


async def run_simulator(kubeconfig_path: str, args) -> None:
    """KWOK-style simulated nodes: the controller that keeps them Ready and runs their Pods, and the N
    nodes --simulated-nodes asks for."""
    from .client import Client, Config
    from .controllers.simulated_nodes import Simulator, create_nodes
    client = Client(Config.from_kubeconfig(kubeconfig_path), user_agent="kubeclass-simulator")
    try:
        if args.simulated_nodes:
            template = None
            if args.simulated_node_template:
                with open(args.simulated_node_template) as f:
                    template = yaml.safe_load(f)
            await create_nodes(client, args.simulated_nodes, template)
            logging.getLogger("kubeclass.simulator").info("%d simulated nodes created", args.simulated_nodes)
        await Simulator(client).run()
    finally:
        await client.close()


def node_options(args, data_dir: str):
    from .node.agent import AgentOptions, default_node_name
    from .node.nodestatus import parse_labels, parse_taints
    return AgentOptions(name=getattr(args, "node_name", None) or default_node_name(), data_dir=data_dir,
                        labels=parse_labels(getattr(args, "labels", "") or ""),
                        taints=parse_taints(getattr(args, "register_with_taints", "") or ""),
                        runtime_config=getattr(args, "runtime_config", None), address=getattr(args, "address", "127.0.0.1"),
                        port=getattr(args, "node_port", 10250), vm_pool=getattr(args, "vm_pool", 0),
                        vm_pool_memory=_mib(getattr(args, "vm_pool_memory", "512Mi")),
                        vm_kernel=getattr(args, "vm_kernel", None), vm_initrd=getattr(args, "vm_initrd", None),
                        vm_templates=not getattr(args, "no_vm_templates", False), network=network_options(args),
                        service_proxy=not getattr(args, "no_service_proxy", False),
                        cluster_dns=not getattr(args, "no_cluster_dns", False))


def network_options(args):
    from .node import podnet
    opts = podnet.Options(conf_dir=args.cni_conf_dir, bin_dirs=tuple(d for d in args.cni_bin_dir.split(":") if d),
                          pod_cidr=args.pod_cidr, bridge=args.cni_bridge, enabled=not args.no_pod_network,
                          service_cidr=args.service_cluster_ip_range)
    podnet.validate(opts)
    return opts


def node_port_taken(opts, advice: str) -> str:
    """The error line when the node agent's port is in use ("" when it is free): checked before anything starts."""
    from .server.serving import port_in_use
    why = port_in_use(opts.address, opts.port)
    if not why:
        return ""
    return (f"error: the node agent cannot listen on {opts.address}:{opts.port} ({why}): another `kubeclass up`, node "
            f"agent or kubelet on this machine? {advice}")


def _mib(q: str) -> int:
    from .api import quantity
    try:
        v = quantity.value(q)
    except ValueError:
        raise ValueError(f"--vm-pool-memory: {q!r} is not a quantity (e.g. 512Mi)") from None
    if v < 128 << 20:
        raise ValueError(f"--vm-pool-memory: {q} is less than the 128Mi a VM needs")
    return int(-(-v // (1 << 20)))


async def run_node(kubeconfig_path: str, opts) -> None:
    from .client import Client, Config
    from .node.agent import Agent
    client = Client(Config.from_kubeconfig(kubeconfig_path), user_agent=f"kubeclass-node/{opts.name}")
    try:
        await Agent(client, opts).run()
    finally:
        await client.close()


def _add_node_flags(s, prefix_name: bool = False) -> None:
    s.add_argument("--node-name" if prefix_name else "--name", dest="node_name", default=None,
                   help="the Node's name (default: this host's name)")
    s.add_argument("--labels", default="", help="labels to register the node with: k=v,k2=v2")
    s.add_argument("--register-with-taints", default="", help="taints to register the node with: k=v:NoSchedule,...")
    s.add_argument("--runtime-config", default=None,
                   help="containerd config.toml, crio.conf or a crio.conf.d directory (default: /etc/containerd/"
                        "config.toml, then /etc/crio/crio.conf, then runc/crun/runsc found on PATH)")
    s.add_argument("--vm-pool", type=int, default=0,
                   help="keep N booted idle VMs per VM (Kata) handler for Pods that fit them (default 0)")
    s.add_argument("--vm-pool-memory", default="512Mi", help="the memory of a pooled VM (Pods needing more boot their own)")
    s.add_argument("--vm-kernel", default=None, help="the guest kernel of VM Pods (an ELF vmlinux or a bzImage; default: "
                                                     "Debian's, extracted by scripts/install.sh)")
    s.add_argument("--vm-initrd", default=None, help="the guest initramfs (with kubeclass's guest agent as /init)")
    s.add_argument("--no-vm-templates", action="store_true",
                   help="always boot VMs (by default a VM starts from a saved state of a freshly booted VM of its "
                        "shape, ~15x faster under TCG)")
    s.add_argument("--pod-cidr", default="10.244.0.0/24",
                   help="the node's Pod addresses (spec.podCIDR; the subnet of the CNI configuration kubeclass writes)")
    s.add_argument("--cni-conf-dir", default="/etc/cni/net.d",
                   help="the CNI network configuration (the first *.conflist / *.conf in lexical order); when it holds "
                        "none, kubeclass writes a bridge + host-local + portmap one in the node's data directory")
    s.add_argument("--cni-bin-dir", default=":".join(("/usr/lib/cni", "/opt/cni/bin")),
                   help="where the CNI plugins are (colon-separated)")
    s.add_argument("--cni-bridge", default="kubeclass0", help="the bridge of kubeclass's own CNI configuration")
    s.add_argument("--no-pod-network", action="store_true",
                   help="no CNI: each Pod gets a network namespace with loopback only (no Pod IP)")
    s.add_argument("--no-service-proxy", action="store_true",
                   help="do not carry ClusterIP / NodePort traffic (kube-proxy's job, done with nftables)")
    s.add_argument("--no-cluster-dns", action="store_true",
                   help="do not serve cluster DNS on the kube-dns Service's address (Pods use the node's resolvers)")


async def cmd_node(args) -> int:
    from .node import handlers
    if args.what == "handlers":
        try:
            table = handlers.load(args.runtime_config)
        except handlers.ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        sys.stdout.write(handlers.table_text(table))
        return 0
    try:
        opts = node_options(args, os.path.abspath(args.data_dir))
        handlers.load(opts.runtime_config)
    except (ValueError, handlers.ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    opts.address, opts.port = args.address, args.node_port
    taken = node_port_taken(opts, "Pass --node-port with a free port")
    if taken:
        print(taken, file=sys.stderr)
        return 1
    return await _run_until_signal(run_node(args.kubeconfig, opts))


def _quiet_transport_errors(loop) -> None:
    """A connection reset in the middle of a TLS handshake (a component's watch being opened while the server
    stops) surfaces as an unretrieved future in uvloop's SSL protocol, and TLS data arriving for a transport
    closed at shutdown as uvloop's "the handler is closed": log them at debug, not as tracebacks."""
    import ssl

    def handler(loop, context) -> None:
        exc = context.get("exception")
        if isinstance(exc, (ConnectionResetError, BrokenPipeError, ssl.SSLError)) or \
                (isinstance(exc, RuntimeError) and "the handler is closed" in str(exc)):
            logging.getLogger("kubeclass").debug("connection closed during a handshake or at shutdown: %r", exc)
            return
        loop.default_exception_handler(context)
    loop.set_exception_handler(handler)


async def _run_until_signal(coro) -> int:
    """A component as its own command: runs until it ends or SIGINT / SIGTERM cancels it."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    _quiet_transport_errors(loop)
    task = loop.create_task(coro)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    waiter = loop.create_task(stop.wait())
    await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
    task.cancel()
    try:
        await task
    except (asyncio.CancelledError, Exception):
        pass
    return 0


def _add_scheduler_flags(s) -> None:
    s.add_argument("--no-runtime-handler-filter", action="store_true",
                   help="do not filter nodes by the runtime handlers they publish (status.runtimeHandlers)")
    s.add_argument("--scoring-strategy", choices=["LeastAllocated", "MostAllocated"], default="LeastAllocated")
    s.add_argument("--percentage-of-nodes-to-score", type=int, default=0, help="0: adaptive, as upstream")
    s.add_argument("--record-decisions", action="store_true",
                   help="record each Pod's per-node filter verdicts and scores as an annotation")


def _add_kubeconfig_flag(s) -> None:
    s.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG") or os.path.join(DEFAULT_DATA_DIR, "kubeconfig"))


def _add_metrics_flags(s, port: int) -> None:
    s.add_argument("--secure-port", type=int, default=port, help=f"the HTTPS port of /metrics (default {port}; 0: none); "
                   "callers need `get` on the non-resource URL /metrics (ClusterRole system:monitoring)")
    s.add_argument("--bind-address", default="127.0.0.1", help="the address /metrics listens on")
    s.add_argument("--cert-dir", default="", help="where the self-signed serving certificate is kept (default: a new "
                   "temporary directory)")


def _add_controller_flags(s) -> None:
    s.add_argument("--controllers", type=lambda v: v.split(","), default=None,
                   help="controllers to run: '*' (all), 'name', '-name' (leave out), comma-separated, as kube-controller-manager")
    s.add_argument("--node-monitor-grace-period", type=float, default=40.0,
                   help="seconds without a heartbeat before a Node is Ready=Unknown (as kube-controller-manager)")
    s.add_argument("--node-monitor-period", type=float, default=5.0,
                   help="seconds between the node lifecycle controller's looks at the Nodes")


async def cmd_controllers(args) -> int:
    try:
        opts = controller_options(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return await _run_until_signal(run_controllers(args.kubeconfig, opts, args.secure_port, args.bind_address, args.cert_dir))


async def cmd_scheduler(args) -> int:
    return await _run_until_signal(run_scheduler(args.kubeconfig, scheduler_options(args),
                                                 leader_elect=not args.no_leader_elect, secure_port=args.secure_port,
                                                 bind_address=args.bind_address, cert_dir=args.cert_dir))


def cmd_token_create(args) -> int:
    from .server.auth import TokenFile
    data_dir = os.path.abspath(args.data_dir)
    p = _paths(data_dir)
    if not os.path.exists(p["server"]):
        print(f"error: no cluster in {data_dir} (run `kubeclass up` first)", file=sys.stderr)
        return 1
    token = TokenFile(p["tokens"]).add(args.user, args.group or [])
    with open(os.path.join(p["pki"], "ca.crt"), "rb") as f:
        ca_pem = f.read()
    server = open(p["server"]).read().strip()
    yaml.safe_dump(kubeconfig(server, ca_pem, args.user, token), sys.stdout, sort_keys=False)
    return 0


def cmd_image_import(args) -> int:
    from .node.images import ImageError, ImageStore
    node_dir = args.node_data_dir or os.path.join(os.path.abspath(args.data_dir), "node")
    try:
        refs = ImageStore(os.path.join(node_dir, "images")).import_archive(args.archive)
    except (ImageError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for r in refs:
        print(f"imported {r}")
    return 0


def _use_uvloop() -> None:
    """uvloop's event loop (libuv, its own TLS transport) when installed: the server's and the
    scheduler's requests cost less CPU."""
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="kubeclass", description="Kubernetes RuntimeClass, implemented for real.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name, helptext in (("up", "start the cluster (API server on the embedded store) in the foreground"),
                           ("server", "run the API server alone")):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
        s.add_argument("--port", type=int, default=6443)
        s.add_argument("--bind", default="127.0.0.1")
        s.add_argument("--service-cluster-ip-range", default="10.96.0.0/12",
                       help="Service addresses; the first is the kubernetes Service's, where Pods reach the API server "
                            "(in the serving certificate; the local node serves it)")
        s.add_argument("--durable", action="store_true", help="fsync every commit (survives power loss, slower)")
        s.add_argument("--pki-from", default="",
                       help="another server's data directory: its CA, service-account key and token file are copied "
                            "here (once), so several API servers serve one cluster (each makes its own serving certificate)")
        s.add_argument("--storage", choices=["sqlite", "etcd"], default="sqlite",
                       help="the store: the embedded SQLite file (default) or etcd v3" +
                            (" (a local member in DATA/etcd unless --etcd-servers names a cluster)" if name == "up" else ""))
        s.add_argument("--etcd-servers", default="", help="etcd members to use, comma-separated URLs (http://127.0.0.1:2379)")
        s.add_argument("--etcd-prefix", default="/registry", help="the prefix of every key in etcd (as kube-apiserver)")
        s.add_argument("--etcd-cafile", default="", help="the CA of the etcd members' serving certificates")
        s.add_argument("--etcd-certfile", default="", help="the client certificate presented to etcd")
        s.add_argument("--etcd-keyfile", default="", help="the client certificate's key")
        if name == "up":
            s.add_argument("--etcd-port", type=int, default=2379,
                           help="the local etcd member's client port (its peer port is the next one)")
        s.add_argument("--compact-interval", type=float, default=300.0, help="seconds between store compactions")
        s.add_argument("--bookmark-interval", type=float, default=60.0, help="seconds between watch bookmarks")
        s.add_argument("--default-not-ready-toleration-seconds", type=int, default=300,
                       help="the tolerationSeconds of the not-ready:NoExecute toleration every Pod gets (as kube-apiserver)")
        s.add_argument("--default-unreachable-toleration-seconds", type=int, default=300,
                       help="the tolerationSeconds of the unreachable:NoExecute toleration every Pod gets (as kube-apiserver)")
        s.add_argument("--request-body-timeout", type=float, default=60.0,
                       help="seconds a request body may take to arrive (a body trickled slower is refused: 408)")
        s.add_argument("-v", "--verbose", action="store_true")
        if name == "up":
            s.add_argument("--no-scheduler", action="store_true", help="do not start the scheduler")
            s.add_argument("--scheduler-secure-port", type=int, default=10259,
                           help="the scheduler's HTTPS /metrics port (kube-scheduler's 10259; 0: none)")
            s.add_argument("--controllers-secure-port", type=int, default=10257,
                           help="the controller manager's HTTPS /metrics port (kube-controller-manager's 10257; 0: none)")
            _add_scheduler_flags(s)
            s.add_argument("--no-node", action="store_true",
                           help="start the control plane alone (nodes join with `kubeclass node --kubeconfig`)")
            _add_node_flags(s, prefix_name=True)
            s.add_argument("--node-port", dest="node_port", type=int, default=10250, help="the local node agent's port (logs)")
            s.add_argument("--simulated-nodes", type=int, default=0,
                           help="create N simulated nodes (KWOK's convention: annotated kwok.x-k8s.io/node=fake, tainted "
                                "kwok.x-k8s.io/node=fake:NoSchedule); their Pods go Running without containers")
            s.add_argument("--no-simulator", action="store_true", help="do not run the simulated-node controller")
            s.add_argument("--no-controllers", action="store_true",
                           help="do not start the controller manager (Deployments, ReplicaSets, garbage collection, node lifecycle)")
            s.add_argument("--no-node-lifecycle", action="store_true",
                           help="do not run the node lifecycle controller (unreachable nodes, taints, evictions)")
            _add_controller_flags(s)
            s.add_argument("--simulated-node-template", default=None,
                           help="a Node YAML the simulated nodes are made from (labels, taints, capacity, runtimeHandlers)")
    sch = sub.add_parser("scheduler", help="run the scheduler against a cluster (as kube-scheduler does)")
    sch.add_argument("--kubeconfig", default=os.path.join(DEFAULT_DATA_DIR, "kubeconfig"))
    sch.add_argument("--no-leader-elect", action="store_true")
    sch.add_argument("-v", "--verbose", action="store_true")
    _add_metrics_flags(sch, 10259)
    _add_scheduler_flags(sch)
    cm = sub.add_parser("controllers", help="run the controller manager against a cluster (as kube-controller-manager does)")
    _add_kubeconfig_flag(cm)
    cm.add_argument("--no-leader-elect", action="store_true")
    cm.add_argument("-v", "--verbose", action="store_true")
    _add_metrics_flags(cm, 10257)
    _add_controller_flags(cm)
    nd = sub.add_parser("node", help="run a node agent: register this machine and run its Pods (as kubelet does); "
                                     "`kubeclass node handlers` prints its runtime handler table")
    nd.add_argument("what", nargs="?", choices=["run", "handlers"], default="run")
    _add_kubeconfig_flag(nd)
    nd.add_argument("--data-dir", default="/var/lib/kubeclass/node", help="images, containers and logs of this node")
    nd.add_argument("--address", default="127.0.0.1", help="the node's InternalIP, where the API server reaches it")
    nd.add_argument("--port", dest="node_port", type=int, default=10250, help="the agent's port (logs)")
    nd.add_argument("--service-cluster-ip-range", default="10.96.0.0/12",
                    help="the API server's: the node serves its first address (the kubernetes Service) to Pods")
    nd.add_argument("-v", "--verbose", action="store_true")
    _add_node_flags(nd)
    im = sub.add_parser("image", help="manage the node's image store")
    imsub = im.add_subparsers(dest="imgcmd", required=True)
    ii = imsub.add_parser("import", help="import an OCI image layout tarball or a docker-archive into the image store "
                                         "of the node `kubeclass up` runs on --data-dir")
    ii.add_argument("archive")
    ii.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="the cluster's data directory (as given to `kubeclass up`)")
    ii.add_argument("--node-data-dir", default=None, help="a standalone node's --data-dir instead")
    ex = sub.add_parser("explain", help="explain a Pod's placement: every node's verdict per filter and its scores")
    ex.add_argument("what", choices=["pod"])
    ex.add_argument("name")
    ex.add_argument("-n", "--namespace", default="default")
    _add_kubeconfig_flag(ex)
    ck = sub.add_parser("check", help="will these Pods run, and where? Our admission chain and scheduler on the manifests, "
                                      "against the live cluster (--cluster, the default) or given nodes (--nodes)")
    ck.add_argument("-f", "--filename", action="append", required=True, help="manifests: a file, a directory or - (repeatable)")
    ck.add_argument("--cluster", action="store_true", help="against the live cluster's state (the default without --nodes)")
    ck.add_argument("--nodes", action="append", default=[], help="Node YAMLs to check against instead of a cluster (repeatable)")
    ck.add_argument("--runtime-config", action="append", default=[],
                    help="containerd config.toml or CRI-O crio.conf: the given nodes' runtime handlers (repeatable)")
    ck.add_argument("-o", "--output", choices=["table", "json"], default="table")
    _add_kubeconfig_flag(ck)
    ov = sub.add_parser("overhead", help="measure what a runtime handler's sandbox costs")
    ovsub = ov.add_subparsers(dest="ovcmd", required=True)
    om = ovsub.add_parser("measure", help="start idle probe Pods under a handler, print their sandboxes' CPU and memory "
                                          "beyond their containers and the overhead.podFixed it recommends")
    om.add_argument("--handler", required=True, help="the runtime handler (runc, runsc, kata-qemu, ...)")
    om.add_argument("--pods", type=int, default=5, help="probe Pods to start (default 5)")
    om.add_argument("--image", default="busybox", help="the probe Pods' image: it must have `sleep` (default busybox)")
    om.add_argument("-n", "--namespace", default="default")
    om.add_argument("--readings", type=int, default=3, help="readings of the metrics API to take (default 3)")
    om.add_argument("--interval", type=float, default=10.0, help="seconds between readings (default 10: the agents' rate window)")
    om.add_argument("--timeout", type=float, default=300.0, help="seconds the probe Pods may take to run")
    om.add_argument("-o", "--output", choices=["table", "json"], default="table")
    _add_kubeconfig_flag(om)
    st = sub.add_parser("store", help="move a cluster's objects between stores")
    stsub = st.add_subparsers(dest="storecmd", required=True)
    sc = stsub.add_parser("copy", help="copy every object of a stopped cluster's store into a new, empty one "
                                       "(resourceVersions change: watchers relist)")
    sc.add_argument("--from", dest="src", required=True, help="sqlite:DATA_DIR or etcd:URL[,URL...]")
    sc.add_argument("--to", dest="dst", required=True, help="sqlite:DATA_DIR or etcd:URL[,URL...]")
    sc.add_argument("--etcd-prefix", default="/registry")
    tok = sub.add_parser("token", help="manage user tokens")
    toksub = tok.add_subparsers(dest="tokcmd", required=True)
    tc = toksub.add_parser("create", help="add a user and print a kubeconfig for it")
    tc.add_argument("--user", required=True)
    tc.add_argument("--group", action="append")
    tc.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    args = ap.parse_args(argv)
    if args.cmd in ("up", "server"):
        logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                            format='{"time":"%(asctime)s","level":"%(levelname)s","logger":"%(name)s","msg":"%(message)s"}')
        _use_uvloop()
        try:
            return asyncio.run(serve(args))
        except KeyboardInterrupt:
            return 0
    if args.cmd == "scheduler":
        logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                            format='{"time":"%(asctime)s","level":"%(levelname)s","logger":"%(name)s","msg":"%(message)s"}')
        _use_uvloop()
        return asyncio.run(cmd_scheduler(args))
    if args.cmd == "controllers":
        logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                            format='{"time":"%(asctime)s","level":"%(levelname)s","logger":"%(name)s","msg":"%(message)s"}')
        _use_uvloop()
        return asyncio.run(cmd_controllers(args))
    if args.cmd == "node":
        logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                            format='{"time":"%(asctime)s","level":"%(levelname)s","logger":"%(name)s","msg":"%(message)s"}')
        _use_uvloop()
        return asyncio.run(cmd_node(args))
    if args.cmd == "image" and args.imgcmd == "import":
        return cmd_image_import(args)
    if args.cmd == "explain":
        from .scheduler.explain import main as explain_main
        return asyncio.run(explain_main(args))
    if args.cmd == "check":
        if args.cluster and args.nodes:
            print("error: --cluster and --nodes exclude each other", file=sys.stderr)
            return 2
        from .check import run as check_run
        return check_run(args)
    if args.cmd == "overhead" and args.ovcmd == "measure":
        if args.pods < 1 or args.pods > 100 or args.readings < 1:
            print("error: --pods must be 1 to 100 and --readings at least 1", file=sys.stderr)
            return 2
        from .overhead_measure import main as overhead_main
        return asyncio.run(overhead_main(args))
    if args.cmd == "token" and args.tokcmd == "create":
        return cmd_token_create(args)
    if args.cmd == "store" and args.storecmd == "copy":
        return asyncio.run(cmd_store_copy(args))
    return 2


async def cmd_store_copy(args) -> int:
    from .store import StoreError
    from .store import copy as storecopy
    src = dst = None
    try:
        src = await storecopy.open_store(args.src, args.etcd_prefix)
        dst = await storecopy.open_store(args.dst, args.etcd_prefix, create=True)
        n = await storecopy.copy(src, dst, lambda k: print(f"{k} objects copied", flush=True))
    except (ValueError, StoreError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        for s in (src, dst):
            if s is not None:
                await s.close()
    print(f"copied {n} objects from {args.src} to {args.dst}; resourceVersions changed: watchers and informers relist")
    return 0


if __name__ == "__main__":
    sys.exit(main())
