#!/usr/bin/env python3
"""Checks deploy/ against the code it deploys, so the manifests cannot drift from the binaries.

  check_deploy.py --repo ROOT --bin BUILD/bin [--live]

Static (always):
  - the kustomize base and overlays render (`kubectl kustomize`, when kubectl is installed; otherwise the base is
    assembled from its files, which is what CI has);
  - every Deployment runs a binary that exists, every PROXYKV_<SERVICE>_<KEY> variable names a real config key,
    and each service accepts its ConfigMap file together with the Deployment's environment (`--print-config`
    with nothing on stderr);
  - ports agree: config <-> containerPort <-> Service <-> probe, and the endpoints one service dials name the
    other's headless Service and port; the mapper serves the pair the proxy and target call themselves, with
    the channels the bundled mapper was trained on; CURVE key paths lie in the mounted Secret;
  - the NetworkPolicies let through exactly the flows the pipeline needs (and the target's API from anywhere);
  - pods run non-root with a read-only root filesystem and without service links;
  - every metric the HPAs, the alerts, the adapter rule and the Grafana dashboard use is a metric family the
    services export; the dashboard JSON is what deploy/grafana/make_dashboard.py writes;
  - the runtime image installs the Debian package of every shared library the binaries link (where dpkg is).
Live (--live): starts the three services from the base ConfigMaps exactly as the pods would (ports set to 0 and
hosts to loopback, model paths to the staged bundled models, a fresh CURVE keypair, the proxy pool named by host
name, an API key file) and checks that a request without the key gets 401, a proxykv request with it is served
with the proxy's mask, and proxykv-loadgen with the key succeeds.
Exit status 0 when all checks pass; every failure is printed.
"""
import argparse
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

try:
    import yaml
except ImportError:  # python3-yaml comes from scripts/install-deps.sh
    print("check_deploy.py: python3-yaml is missing (bash scripts/install-deps.sh)", file=sys.stderr)
    sys.exit(2)

SERVICES = ("target", "proxy", "mapper")
FAILURES = []


def check(condition, message):
    if not condition:
        FAILURES.append(message)
    return condition


# ---------------------------------------------------------------------------------------------- rendering

def load_yaml_docs(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def assemble_base(base):
    """The base as `kubectl kustomize` would emit it, for the parts the checks read (no kubectl needed)."""
    k = yaml.safe_load((base / "kustomization.yaml").read_text())
    docs = []
    for r in k["resources"]:
        docs += load_yaml_docs(base / r)
    for gen in k.get("configMapGenerator", []):
        data = {pathlib.Path(f).name: (base / f).read_text() for f in gen["files"]}
        docs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": gen["name"]}, "data": data})
    return docs


def render(deploy, kubectl):
    """{name: docs} for the base and every overlay."""
    base = deploy / "k8s" / "base"
    sets = {}
    if kubectl:
        for d in [base] + sorted((deploy / "k8s" / "overlays").iterdir()):
            out = subprocess.run([kubectl, "kustomize", str(d)], capture_output=True, text=True)
            if check(out.returncode == 0, f"kubectl kustomize {d} failed: {out.stderr.strip()}"):
                sets[d.name] = [x for x in yaml.safe_load_all(out.stdout) if x]
    else:
        print("check_deploy.py: kubectl not installed: checking the base assembled from its files; the overlays "
              "are only parsed", file=sys.stderr)
        sets["base"] = assemble_base(base)
        for d in sorted((deploy / "k8s" / "overlays").iterdir()):
            for f in sorted(d.glob("*.yaml")):
                load_yaml_docs(f)  # parse errors fail here
    return sets


def by_kind(docs, kind):
    return {d["metadata"]["name"]: d for d in docs if d.get("kind") == kind}


def configmap_named(docs, name):
    """A generated ConfigMap carries a hash suffix after kustomize; the Deployment references the same name."""
    maps = by_kind(docs, "ConfigMap")
    return maps.get(name)


# ---------------------------------------------------------------------------------------------- helpers

def service_of(deployment_name):
    return deployment_name.removeprefix("proxykv-")


def tcp_port(endpoint):
    m = re.fullmatch(r"tcp://(\[[^\]]+\]|[^:]+):(\d+|\*)", endpoint)
    return (m.group(1), m.group(2)) if m else (None, None)


def print_config(binary, config_text, env):
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        f.write(config_text)
    try:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("PROXYKV_")}
        clean.update(env)
        out = subprocess.run([binary, "--config", f.name, "--print-config"], capture_output=True, text=True, env=clean)
        return out.returncode, out.stdout, out.stderr
    finally:
        os.unlink(f.name)


def container_env(container, pod_ip="10.0.0.7"):
    env = {}
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
        elif e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "status.podIP":
            env[e["name"]] = pod_ip
        else:
            check(False, f"env {e['name']}: only literal values and status.podIP are understood by this check")
    return env


def metric_families(repo):
    text = (repo / "common" / "telemetry" / "src" / "metric_families.cpp").read_text()
    return set(re.findall(r'"(proxykv_[a-z0-9_]+)"', text))


def metric_names_in(text):
    names = set(re.findall(r"\b(proxykv_[a-z0-9_]+)", text))
    return {re.sub(r"_(bucket|sum|count)$", "", n) for n in names}


# ---------------------------------------------------------------------------------------------- static checks

def check_set(name, docs, repo, bindir):
    deployments = by_kind(docs, "Deployment")
    services = by_kind(docs, "Service")
    check(set(deployments) >= {f"proxykv-{s}" for s in SERVICES}, f"[{name}] a Deployment per service")
    configs = {}
    for dname, d in deployments.items():
        svc = service_of(dname)
        pod = d["spec"]["template"]
        spec = pod["spec"]
        where = f"[{name}] Deployment {dname}"
        check(spec.get("enableServiceLinks") is False, f"{where}: enableServiceLinks must be false (operations.md)")
        check(spec.get("securityContext", {}).get("runAsNonRoot") is True, f"{where}: runAsNonRoot")
        check(d["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items(),
              f"{where}: selector does not match the pod labels")
        (c,) = spec["containers"]
        sc = c.get("securityContext", {})
        check(sc.get("readOnlyRootFilesystem") is True and sc.get("allowPrivilegeEscalation") is False,
              f"{where}: read-only root filesystem, no privilege escalation")
        binary = bindir / pathlib.Path(c["command"][0]).name
        if not check(binary.exists(), f"{where}: runs {c['command'][0]}, but {binary} was not built"):
            continue
        env = container_env(c)
        prefix = f"PROXYKV_{svc.upper()}_"
        config_path = env.get(prefix + "CONFIG")
        if not check(config_path, f"{where}: no {prefix}CONFIG"):
            continue
        mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        cm_volume = [n for n, v in volumes.items() if "configMap" in v and mounts.get(n) == os.path.dirname(config_path)]
        if not check(len(cm_volume) == 1, f"{where}: {config_path} is not in a mounted ConfigMap"):
            continue
        cm = configmap_named(docs, volumes[cm_volume[0]]["configMap"]["name"])
        file_name = os.path.basename(config_path)
        if not check(cm is not None and file_name in cm.get("data", {}), f"{where}: ConfigMap lacks {file_name}"):
            continue
        text = cm["data"][file_name]
        rc, out, err = print_config(str(binary), text, env)
        if not check(rc == 0 and err.strip() == "", f"{where}: {binary.name} refuses its config: {err.strip()}"):
            continue
        effective = json.loads(out)
        for var in env:
            if var.startswith(prefix) and var != prefix + "CONFIG":
                key = var[len(prefix):].lower()
                check(key in effective, f"{where}: {var} names no config key of {svc}")
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            port = c.get(probe, {}).get("httpGet", {}).get("port")
            check(port in ports, f"{where}: {probe} uses port {port}, not a declared port")
        if "curve" in volumes:
            check(volumes["curve"].get("secret", {}).get("secretName") == "proxykv-curve", f"{where}: curve Secret")
            check(spec.get("securityContext", {}).get("fsGroup") is not None,
                  f"{where}: without fsGroup the non-root user cannot read the Secret's 0440 files")
            for key in ("curve_secret_key_file", "curve_server_public_key_file"):
                if effective.get(key):
                    check(os.path.dirname(effective[key]) == mounts.get("curve"), f"{where}: {key} outside the Secret")
        if effective.get("api_key_file"):
            check(volumes.get("api-keys", {}).get("secret", {}).get("secretName") == "proxykv-api-keys" and
                  os.path.dirname(effective["api_key_file"]) == mounts.get("api-keys"),
                  f"{where}: api_key_file is not in the mounted Secret proxykv-api-keys")
        configs[svc] = {"effective": effective, "ports": ports, "text": text, "env": env, "labels":
                        pod["metadata"]["labels"], "binary": binary}

    def port_of(svc, key):
        return int(tcp_port(configs[svc]["effective"][key])[1])

    if set(configs) != set(SERVICES):
        return configs
    t, p, m = (configs[s]["effective"] for s in SERVICES)
    check(configs["target"]["ports"].get("http") == t["port"], f"[{name}] target port != containerPort http")
    check(configs["target"]["ports"].get("masks") == port_of("target", "mask_endpoint"),
          f"[{name}] target mask_endpoint port != containerPort masks")
    check(t.get("host") == "0.0.0.0", f"[{name}] the target must bind 0.0.0.0 in a pod")
    for svc, cfg in (("proxy", p), ("mapper", m)):
        check(configs[svc]["ports"].get("control") == port_of(svc, "control_endpoint"), f"[{name}] {svc} control port")
        check(configs[svc]["ports"].get("admin") == cfg["admin_port"], f"[{name}] {svc} admin port")
        check(cfg["admin_host"] == "0.0.0.0", f"[{name}] {svc} admin must bind 0.0.0.0 (probes, Prometheus)")
    check(configs["mapper"]["ports"].get("data") == port_of("mapper", "data_plane_bind"), f"[{name}] mapper data port")
    check("PROXYKV_MAPPER_ADVERTISE_HOST" in configs["mapper"]["env"], f"[{name}] mapper must advertise its pod IP")
    check("PROXYKV_TARGET_MASK_ADVERTISE_HOST" in configs["target"]["env"], f"[{name}] target must advertise its pod IP")

    # Who dials whom: the endpoint's host is the callee's headless Service, its port a Service port that leads
    # to the callee's control port.
    for caller, key, callee in (("target", "proxy_endpoints", "proxy"), ("proxy", "mapper_endpoints", "mapper")):
        endpoints = configs[caller]["effective"][key]
        check(len(endpoints) > 0, f"[{name}] {caller}.{key} is empty")
        for e in endpoints:
            host, port = tcp_port(e)
            s = services.get(host)
            if not check(s is not None, f"[{name}] {caller}.{key} {e}: no Service named {host}"):
                continue
            check(s["spec"].get("clusterIP") == "None", f"[{name}] Service {host} must be headless (one address per pod)")
            check(s["spec"]["selector"].items() <= configs[callee]["labels"].items(), f"[{name}] Service {host} selector")
            sp = [x for x in s["spec"]["ports"] if str(x["port"]) == port]
            check(len(sp) == 1 and configs[callee]["ports"].get(sp[0]["targetPort"]) == port_of(callee, "control_endpoint"),
                  f"[{name}] {e} does not lead to {callee}'s control port")
    for sname, s in services.items():
        owner = [c for c in configs.values() if s["spec"]["selector"].items() <= c["labels"].items()]
        if check(len(owner) == 1, f"[{name}] Service {sname} selects {len(owner)} Deployments"):
            for sp in s["spec"]["ports"]:
                check(sp["targetPort"] in owner[0]["ports"], f"[{name}] Service {sname} targetPort {sp['targetPort']}")

    # The pair the mapper serves is the one the proxy and the target name themselves, with the trained channels.
    pairs = [re.fullmatch(r"([^:]+):([^=]+)=(.+)", x) for x in m["mappers"]]
    check(all(pairs) and any(x.group(1) == p["model_id"] and x.group(2) == t["model_name"] for x in pairs),
          f"[{name}] mapper serves {m['mappers']}, not {p['model_id']}:{t['model_name']}")
    check(t["proxy_model_id"] in ("", p["model_id"]), f"[{name}] target asks for proxy {t['proxy_model_id']}")
    features = json.loads((repo / "models" / "mapper" / "features.json").read_text())
    check(p["channels"] == features["channels"], f"[{name}] proxy channels {p['channels']} != models/mapper "
          f"features.json {features['channels']}")
    staged = {"target": t["model"], "proxy": p["model"], "mapper": pairs[0].group(3) if pairs[0] else ""}
    for model, path in staged.items():
        check(path == f"/opt/proxykv/models/{model}", f"[{name}] {model} model path {path} is not where the image "
              "stages it (deploy/docker/Dockerfile)")
    check_network_policies(name, docs, configs)
    return configs


def policy_allows(policies, dest_labels, src_labels, port):
    for pol in policies.values():
        sel = pol["spec"]["podSelector"].get("matchLabels", {})
        if not sel.items() <= dest_labels.items():
            continue
        for rule in pol["spec"].get("ingress", []):
            ports = rule.get("ports")
            port_ok = ports is None or any(
                x.get("port") == port or (isinstance(x.get("port"), int) and x.get("endPort", x["port"]) >= port >= x["port"])
                for x in ports)
            froms = rule.get("from")
            src_ok = froms is None or any(
                "podSelector" in f and "namespaceSelector" not in f and
                f["podSelector"].get("matchLabels", {}).items() <= src_labels.items() for f in froms)
            if port_ok and src_ok:
                return True
    return False


def check_network_policies(name, docs, configs):
    policies = by_kind(docs, "NetworkPolicy")
    check(any(p["spec"]["podSelector"] == {} and "ingress" not in p["spec"] for p in policies.values()),
          f"[{name}] no default-deny ingress policy")
    lab = {s: configs[s]["labels"] for s in SERVICES}
    port = {"target_http": configs["target"]["effective"]["port"],
            "target_masks": configs["target"]["ports"]["masks"],
            "proxy_control": configs["proxy"]["ports"]["control"],
            "mapper_control": configs["mapper"]["ports"]["control"],
            "mapper_data": configs["mapper"]["ports"]["data"]}
    needed = [("target", "proxy", port["proxy_control"]), ("proxy", "mapper", port["mapper_control"]),
              ("proxy", "mapper", port["mapper_data"]), ("proxy", "target", port["target_masks"]),
              ("mapper", "target", port["target_masks"])]
    for src, dst, p in needed:
        check(policy_allows(policies, lab[dst], lab[src], p), f"[{name}] NetworkPolicy blocks {src} -> {dst}:{p}")
    outsider = {"app": "somebody-else"}
    check(policy_allows(policies, lab["target"], outsider, port["target_http"]), f"[{name}] the target API is not open")
    for dst, p in (("proxy", port["proxy_control"]), ("mapper", port["mapper_control"]), ("target", port["target_masks"])):
        check(not policy_allows(policies, lab[dst], outsider, p), f"[{name}] {dst}:{p} is open to any pod")


def check_metrics(repo, sets):
    families = metric_families(repo)
    check(len(families) >= 18, f"found only {len(families)} metric families in metric_families.cpp")
    used = {}
    for name, docs in sets.items():
        for d in docs:
            if d.get("kind") in ("PrometheusRule", "HorizontalPodAutoscaler"):
                used[f"[{name}] {d['kind']} {d['metadata']['name']}"] = json.dumps(d)
    used["deploy/prometheus/adapter-rules.yaml"] = (repo / "deploy" / "prometheus" / "adapter-rules.yaml").read_text()
    used["deploy/grafana/proxykv.json"] = (repo / "deploy" / "grafana" / "proxykv.json").read_text()
    for where, text in used.items():
        for metric in metric_names_in(text):
            check(metric in families, f"{where}: {metric} is not a metric the services export")
        for value in re.findall(r'\bservice=\\?"([^"\\]+)', text):
            check(value in SERVICES, f"{where}: service=\"{value}\" (the services label themselves {SERVICES})")
    sys.path.insert(0, str(repo / "deploy" / "grafana"))
    import make_dashboard  # noqa: E402
    check(make_dashboard.render() == used["deploy/grafana/proxykv.json"],
          "deploy/grafana/proxykv.json is stale: run python3 deploy/grafana/make_dashboard.py")
    ids = [p["id"] for p in json.loads(used["deploy/grafana/proxykv.json"])["panels"]]
    check(len(ids) == len(set(ids)), "duplicate Grafana panel ids")


def check_image(repo, bindir):
    dockerfile = (repo / "deploy" / "docker" / "Dockerfile").read_text()
    runtime = dockerfile.split("FROM debian:bookworm-slim", 1)[-1]
    installed = set(re.findall(r"\b(lib[a-z0-9.+-]+|zlib1g)\b", runtime))
    if shutil.which("dpkg") is None or shutil.which("readelf") is None:
        print("check_deploy.py: no dpkg/readelf: the image's package list is not checked", file=sys.stderr)
        return
    needed = set()
    for b in ("proxykv", "proxykv-target", "proxykv-proxy", "proxykv-mapper", "proxykv-loadgen"):
        out = subprocess.run(["readelf", "-d", str(bindir / b)], capture_output=True, text=True).stdout
        needed |= set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out))
    ldconfig = subprocess.run(["/sbin/ldconfig", "-p"], capture_output=True, text=True).stdout
    for lib in sorted(needed):
        if re.match(r"(libc|libm|libgcc_s|ld-linux-x86-64|libstdc\+\+)\.so", lib):
            continue  # in every Debian base image
        m = re.search(rf"^\s*{re.escape(lib)} \(.*x86-64.*\) => (\S+)", ldconfig, re.M) or \
            re.search(rf"^\s*{re.escape(lib)} .*=> (\S+)", ldconfig, re.M)
        if not check(m is not None, f"image: cannot locate {lib}"):
            continue
        package = ""
        for path in (m.group(1), os.path.realpath(m.group(1))):  # usrmerge: dpkg knows one of the two spellings
            owner = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True)
            if owner.returncode == 0:
                package = owner.stdout.split(":")[0].strip()
                break
        check(package in installed, f"image: the runtime stage lacks {package} (for {lib})")


# ---------------------------------------------------------------------------------------------- live run

class Procs:
    def __init__(self, log_dir):
        self.log_dir = log_dir
        self.procs = []

    def start(self, name, argv, env):
        out = open(self.log_dir / f"{name}.out", "w")
        err = open(self.log_dir / f"{name}.log", "w")
        p = subprocess.Popen(argv, stdout=out, stderr=err, env=env)
        self.procs.append((name, p))
        deadline = time.monotonic() + 120
        path = self.log_dir / f"{name}.out"
        while time.monotonic() < deadline:
            text = path.read_text()
            if "\n" in text:
                return text.splitlines()[0]
            if p.poll() is not None:
                raise RuntimeError(f"{name} exited: {(self.log_dir / (name + '.log')).read_text()[-2000:]}")
            time.sleep(0.05)  # polling the announce file, not synchronising on time
        raise RuntimeError(f"{name} did not announce itself within 120 s")

    def stop(self):
        for _, p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for name, p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                check(False, f"live: {name} did not stop on SIGTERM within 30 s")


def http(url, body=None, timeout=120, api_key=None):
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if data else {}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    req = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def wait_healthy(url, seconds=120):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if http(url + "/health", timeout=5)[0] == 200:
                return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def live(repo, bindir, configs):
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="proxykv-deploy-"))
    procs = Procs(tmp)
    try:
        models = tmp / "models"
        for m in SERVICES:
            subprocess.run(["bash", str(repo / "scripts" / "stage-model.sh"), "--bin", str(bindir),
                            str(repo / "models" / m), str(models / m)], check=True, capture_output=True)
        keys = tmp / "curve"
        subprocess.run([str(bindir / "proxykv"), "curve-keygen", "--out", str(keys)], check=True, capture_output=True)
        api_key = "live-check-key-" + os.urandom(8).hex()
        (tmp / "api-keys").mkdir()
        (tmp / "api-keys" / "keys").write_text(f"# the live check's key\n{api_key}\n")

        def prepare(svc, rewrite):
            cfg = json.loads(configs[svc]["text"])
            cfg = json.loads(json.dumps(cfg).replace("/opt/proxykv/models", str(models))
                             .replace("/etc/proxykv/curve", str(keys))
                             .replace("/etc/proxykv/api-keys", str(tmp / "api-keys")))
            rewrite(cfg)
            path = tmp / f"{svc}.json"
            path.write_text(json.dumps(cfg))
            env = {k: v for k, v in os.environ.items() if not k.startswith("PROXYKV_")}
            env.update({k: ("127.0.0.1" if v == "10.0.0.7" else v) for k, v in configs[svc]["env"].items()})
            env[f"PROXYKV_{svc.upper()}_CONFIG"] = str(path)
            return [str(configs[svc]["binary"])], env

        def loopback(endpoint):
            return re.sub(r"tcp://[^:]+:\d+", "tcp://127.0.0.1:0", endpoint)

        def mapper_cfg(c):
            c.update(control_endpoint=loopback(c["control_endpoint"]), data_plane_bind=loopback(c["data_plane_bind"]),
                     admin_host="127.0.0.1", admin_port=0)
        argv, env = prepare("mapper", mapper_cfg)
        mapper = json.loads(procs.start("mapper", argv, env))

        def proxy_cfg(c):
            port = mapper["control"].rsplit(":", 1)[1]
            c.update(control_endpoint=loopback(c["control_endpoint"]), admin_host="127.0.0.1", admin_port=0,
                     mapper_endpoints=[f"tcp://localhost:{port}"])  # a host name, resolved like the Service's
        argv, env = prepare("proxy", proxy_cfg)
        proxy = json.loads(procs.start("proxy", argv, env))

        def target_cfg(c):
            port = proxy["control"].rsplit(":", 1)[1]
            c.update(host="127.0.0.1", port=0, mask_endpoint=loopback(c["mask_endpoint"]),
                     proxy_endpoints=[f"tcp://localhost:{port}"])
        argv, env = prepare("target", target_cfg)
        target = procs.start("target", argv, env)
        for url in (mapper["admin"], proxy["admin"], target):
            check(wait_healthy(url), f"live: {url}/health did not turn 200")
        tasks = tmp / "task.jsonl"
        subprocess.run([str(bindir / "proxykv"), "make-tasks", "--task", "niah_single", "--length", "400", "--facts",
                        "1", "--queries", "1", "--n", "1", "--seed", "5", "--out", str(tasks)], check=True,
                       capture_output=True)
        context = json.loads(tasks.read_text().splitlines()[0])["context"]
        request = {"model": json.loads(configs["target"]["text"])["model_name"], "context": context,
                   "kv_compression": {"method": "proxykv", "keep_ratio": 0.3}}
        check(http(target + "/v1/contexts", request)[0] == 401, "live: the base's API answered without an API key")
        status, body = http(target + "/v1/contexts", request, api_key=api_key)
        check(status == 201 and body.get("method") == "proxykv",
              f"live: a proxykv context was not served with the proxy's mask: {status} {body} "
              f"(logs in {tmp})")
        load = subprocess.run([str(bindir / "proxykv-loadgen"), "--url", target, "--tasks", str(tasks), "--requests",
                               "2", "--concurrency", "1", "--max-tokens", "4"], capture_output=True, text=True,
                              env=dict(os.environ, PROXYKV_API_KEY=api_key))
        check(load.returncode == 0, f"live: proxykv-loadgen with the API key failed: {load.stdout[-500:]} {load.stderr[-500:]}")
        health = http(target + "/health")[1]
        check(health["details"]["proxy_path"]["masks"] >= 1, f"live: target /health counts no mask: {health}")
        metrics = urllib.request.urlopen(proxy["admin"] + "/metrics", timeout=10).read().decode()
        check(re.search(r'proxykv_transfer_bytes_total\{[^}]*transport="zmq"[^}]*\} [1-9]', metrics) is not None,
              "live: no feature bytes over the zmq data plane (CURVE on, as in the base)")
    except (RuntimeError, subprocess.CalledProcessError, OSError) as e:
        check(False, f"live: {e} (logs in {tmp})")
    finally:
        procs.stop()
    if not any(f.startswith("live:") for f in FAILURES):
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", type=pathlib.Path, default=pathlib.Path(__file__).resolve().parents[2])
    ap.add_argument("--bin", type=pathlib.Path, required=True)
    ap.add_argument("--live", action="store_true")
    args = ap.parse_args()
    repo, bindir = args.repo.resolve(), args.bin.resolve()
    sets = render(repo / "deploy", shutil.which("kubectl"))
    configs = {}
    for name, docs in sets.items():
        c = check_set(name, docs, repo, bindir)
        if name == "base":
            configs = c
    check_metrics(repo, sets)
    check_image(repo, bindir)
    if args.live and check(set(configs) == set(SERVICES), "live: the base does not configure all three services"):
        live(repo, bindir, configs)
    for f in FAILURES:
        print("FAIL", f)
    print(f"check_deploy.py: {len(sets)} manifest set(s) ({', '.join(sets)}), {len(FAILURES)} failure(s)")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
