#!/usr/bin/env python3
"""Checks packaging/k8s/hotpair.yaml and packaging/compose/docker-compose.yml:
that each parses as YAML and says what docs/operations.md and
packaging/k8s/README.md say it does (the parts a pair depends on). Run by
netns-tests/tests/packaging_manifests.rs; useful after editing either.

    python3 packaging/check-manifests.py [--k8s FILE] [--compose FILE]

Exit 0 when every check holds; 1 with one line per failed check; 2 when
python3-yaml is missing or a file does not parse.
"""

import argparse
import os
import sys

try:
    import yaml
except ImportError:
    print("check-manifests: python3-yaml is missing (apt-get install python3-yaml)", file=sys.stderr)
    sys.exit(2)

HERE = os.path.dirname(os.path.abspath(__file__))
problems = []


def check(cond, what):
    if not cond:
        problems.append(what)
    return cond


def load_all(path):
    try:
        with open(path, encoding="utf-8") as f:
            return [d for d in yaml.safe_load_all(f) if d is not None]
    except (OSError, yaml.YAMLError) as e:
        print(f"check-manifests: {path}: {e}", file=sys.stderr)
        sys.exit(2)


def check_k8s(path):
    docs = load_all(path)
    kinds = [d.get("kind") for d in docs]
    deployments = [d for d in docs if d.get("kind") == "Deployment"]
    pdbs = [d for d in docs if d.get("kind") == "PodDisruptionBudget"]
    check("Service" not in kinds, f"{path}: a Service: the service address is an L2 address on the hosts' LAN")
    if not check(len(deployments) == 2, f"{path}: {len(deployments)} Deployments, want 2 (n1, n2)"):
        return
    hosts, keys, pod_labels = [], [], []
    for d in deployments:
        name = d.get("metadata", {}).get("name", "?")
        where = f"{path}: {name}"
        spec = d.get("spec", {})
        check(spec.get("replicas") == 1, f"{where}: replicas must be 1")
        check(spec.get("strategy", {}).get("type") == "Recreate",
              f"{where}: strategy must be Recreate (never two pods of one node)")
        tmpl = spec.get("template", {})
        labels = tmpl.get("metadata", {}).get("labels", {}) or {}
        pod_labels.append(labels)
        sel = spec.get("selector", {}).get("matchLabels", {}) or {}
        check(sel and all(labels.get(k) == v for k, v in sel.items()),
              f"{where}: selector does not match the template's labels")
        pod = tmpl.get("spec", {})
        host = (pod.get("nodeSelector") or {}).get("kubernetes.io/hostname")
        check(bool(host), f"{where}: not pinned (nodeSelector kubernetes.io/hostname)")
        hosts.append(host)
        check(pod.get("hostNetwork") is True, f"{where}: hostNetwork must be true")
        check(pod.get("dnsPolicy") == "ClusterFirstWithHostNet", f"{where}: dnsPolicy ClusterFirstWithHostNet")
        grace = pod.get("terminationGracePeriodSeconds")
        check(isinstance(grace, int) and grace >= 5,
              f"{where}: terminationGracePeriodSeconds must leave time for the handover (>= 5)")
        containers = pod.get("containers") or []
        if not check(len(containers) == 1, f"{where}: one container"):
            continue
        c = containers[0]
        sc = c.get("securityContext") or {}
        check(sc.get("privileged") is not True, f"{where}: privileged")
        caps = sc.get("capabilities") or {}
        check(caps.get("add") == ["NET_ADMIN"], f"{where}: capabilities.add must be [NET_ADMIN]")
        check(caps.get("drop") == ["ALL"], f"{where}: capabilities.drop must be [ALL]")
        env = {e.get("name"): e.get("value") for e in c.get("env") or []}
        check(env.get("HOTPAIR_SETUP_NET") == "0",
              f"{where}: HOTPAIR_SETUP_NET=0 (the entrypoint must not rebuild the host's network)")
        args = c.get("args") or []
        check(args[:1] == ["node"] and "--config" in args
              and args[args.index("--config") + 1:args.index("--config") + 2] == ["/etc/hotpair/node.toml"],
              f"{where}: args must be node --config /etc/hotpair/node.toml")
        volumes = {v.get("name"): v for v in pod.get("volumes") or []}
        mounts = {m.get("mountPath"): m for m in c.get("volumeMounts") or []}
        tun = volumes.get((mounts.get("/dev/net/tun") or {}).get("name"), {})
        check(tun.get("hostPath") == {"path": "/dev/net/tun", "type": "CharDevice"},
              f"{where}: /dev/net/tun must be a hostPath CharDevice")
        cfg_mount = mounts.get("/etc/hotpair") or {}
        check(cfg_mount.get("readOnly") is True, f"{where}: /etc/hotpair must be mounted read-only")
        secret = (volumes.get(cfg_mount.get("name"), {}) or {}).get("secret") or {}
        items = secret.get("items") or []
        check(bool(secret.get("secretName")), f"{where}: the config must come from a Secret")
        check(secret.get("defaultMode") in (0o400, 0o600), f"{where}: the Secret's mode must be 0400 or 0600")
        if check(len(items) == 1 and items[0].get("path") == "node.toml",
                 f"{where}: the Secret must give this pod one key, as node.toml"):
            keys.append(items[0].get("key"))
        ports = {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}
        for probe, want in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"),
                            ("startupProbe", "/healthz")):
            get = (c.get(probe) or {}).get("httpGet") or {}
            check(get.get("path") == want, f"{where}: {probe} must GET {want}")
            port = get.get("port")
            check(port in ports or port in ports.values(), f"{where}: {probe}'s port {port!r} is not a container port")
        check(ports.get("metrics") == 9464, f"{where}: the metrics port 9464 named 'metrics'")
    check(len(set(hosts)) == 2, f"{path}: the two nodes must be pinned to two different hosts ({hosts})")
    check(sorted(keys) == ["n1.toml", "n2.toml"], f"{path}: the pods must read n1.toml and n2.toml ({keys})")
    if check(len(pdbs) == 1, f"{path}: one PodDisruptionBudget"):
        pdb = pdbs[0]
        check(pdb.get("apiVersion") == "policy/v1", f"{path}: PodDisruptionBudget apiVersion policy/v1")
        ps = pdb.get("spec", {})
        check(ps.get("maxUnavailable") == 1, f"{path}: PodDisruptionBudget maxUnavailable must be 1")
        sel = (ps.get("selector") or {}).get("matchLabels") or {}
        check(sel and all(all(l.get(k) == v for k, v in sel.items()) for l in pod_labels),
              f"{path}: the PodDisruptionBudget's selector must match both pods")


def check_compose(path):
    docs = load_all(path)
    if not check(len(docs) == 1, f"{path}: one document"):
        return
    d = docs[0]
    check(d.get("version") == "2.4", f"{path}: version \"2.4\" (docker-compose 1.29 and compose v2)")
    services = d.get("services") or {}
    check(sorted(services) == ["n1", "n2"], f"{path}: services n1 and n2 ({sorted(services)})")
    for name, s in services.items():
        where = f"{path}: {name}"
        check(s.get("privileged") is not True, f"{where}: privileged")
        check("NET_ADMIN" in (s.get("cap_add") or []), f"{where}: cap_add NET_ADMIN")
        check(any(str(x).split(":")[0] == "/dev/net/tun" for x in s.get("devices") or []),
              f"{where}: devices /dev/net/tun")
        check(s.get("restart") == "on-failure", f"{where}: restart: on-failure")
        check(s.get("stop_signal", "SIGTERM") == "SIGTERM", f"{where}: stop_signal SIGTERM (the planned stop)")
        test = (s.get("healthcheck") or {}).get("test") or []
        check(any("/healthz" in str(t) for t in test) or "status" in test,
              f"{where}: the healthcheck must use /healthz or hotpair status")
        vols = [str(v) for v in s.get("volumes") or []]
        check(any(v.endswith(":/etc/hotpair:ro") for v in vols), f"{where}: the pair's configs read-only at /etc/hotpair")
        check(s.get("command") == ["node", "--config", f"/etc/hotpair/{name}.toml"],
              f"{where}: command node --config /etc/hotpair/{name}.toml")
        check("lan" in (s.get("networks") or {}), f"{where}: on the network lan")
    lan = (d.get("networks") or {}).get("lan") or {}
    check(lan.get("driver") == "bridge",
          f"{path}: the network must be a bridge (a macvlan delivers only each container's own MAC)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k8s", default=os.path.join(HERE, "k8s", "hotpair.yaml"))
    ap.add_argument("--compose", default=os.path.join(HERE, "compose", "docker-compose.yml"))
    a = ap.parse_args()
    check_k8s(a.k8s)
    check_compose(a.compose)
    for p in problems:
        print(f"check-manifests: {p}")
    if problems:
        sys.exit(1)
    print(f"check-manifests: {a.k8s} and {a.compose}: ok")


if __name__ == "__main__":
    main()
