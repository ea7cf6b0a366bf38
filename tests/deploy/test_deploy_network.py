"""The NetworkPolicies of every rendered kustomization (docs/security.md): a Ray cluster's head
admits on 6379 (GCS), 8265 (dashboard / job submission) and 10001 (Ray client) only the cluster's
own pods, its clients (the RayJob's submitter) and, on 8265 for RayJobs, the KubeRay operator; the
cluster's pods reach each other on any port; nothing else reaches any of its pods.

The pods are modelled with the labels KubeRay gives them (pod template labels plus ray.io/cluster,
ray.io/node-type, ray.io/is-ray-node, ...; a RayJob's cluster name has a random suffix), and the
policies are evaluated as the Kubernetes NetworkPolicy API defines them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from tests.deploy.deploy_paths import kustomization_dirs

OVERLAYS = sorted(kustomization_dirs())
HEAD_PORTS = {6379: "GCS", 8265: "dashboard / job submission", 10001: "Ray client"}
OTHER_PORTS = [8076, 8080, 10002, 52365, 60000]   # object manager, metrics, worker ports, agent, ...
CLUSTER_LABEL, CLIENT_LABEL = "hamur-dist/ray-cluster", "hamur-dist/ray-client"
NAMESPACE = {"kubernetes.io/metadata.name": "hamur"}
OPERATOR_NAMESPACE = {"kubernetes.io/metadata.name": "kuberay-system"}   # docs/deploy.md 2.1
NOT_OVERRIDABLE = {"ray.io/node-type", "ray.io/group", "ray.io/cluster"}   # KubeRay keeps its own values


@dataclass
class Pod:
    name: str
    labels: dict
    namespace: dict = field(default_factory=lambda: dict(NAMESPACE))
    external: bool = False                     # outside the Kubernetes cluster


def ray_pods(doc: dict) -> list[Pod]:
    """The head and one pod per worker group of a RayCluster / RayJob, labelled as KubeRay labels them."""
    name = doc["metadata"]["name"]
    spec = doc["spec"]["rayClusterSpec"] if doc["kind"] == "RayJob" else doc["spec"]
    cluster = f"{name}-x7k2p" if doc["kind"] == "RayJob" else name
    groups = [("head", "headgroup", spec["headGroupSpec"])]
    groups += [("worker", g["groupName"], g) for g in spec["workerGroupSpecs"]]
    pods = []
    for node_type, group, g in groups:
        labels = {"ray.io/is-ray-node": "yes", "ray.io/cluster": cluster, "ray.io/node-type": node_type,
                  "ray.io/group": group, "ray.io/identifier": f"{cluster}-{node_type}",
                  "app.kubernetes.io/name": "kuberay", "app.kubernetes.io/created-by": "kuberay-operator"}
        own = g["template"].get("metadata", {}).get("labels", {})
        labels.update({k: v for k, v in own.items() if k not in NOT_OVERRIDABLE})
        pods.append(Pod(f"{name}/{group}", labels))
    return pods


def clients(doc: dict) -> list[Pod]:
    """The RayJob's submitter pod (Job pod labels added); for a RayCluster, a pod labelled as its client."""
    name = doc["metadata"]["name"]
    if doc["kind"] == "RayCluster":
        return [Pod(f"{name}/notebook", {"app": "notebook", CLIENT_LABEL: name})]
    own = doc["spec"].get("submitterPodTemplate", {}).get("metadata", {}).get("labels", {})
    return [Pod(f"{name}/submitter", {**own, "batch.kubernetes.io/job-name": name, "job-name": name})]


OPERATOR = Pod("kuberay-operator",
               {"app.kubernetes.io/name": "kuberay-operator", "app.kubernetes.io/instance": "kuberay-operator"},
               OPERATOR_NAMESPACE)
STRANGERS = [
    Pod("same-namespace pod", {"app": "something-else"}),
    Pod("operator look-alike in the app namespace", {"app.kubernetes.io/name": "kuberay-operator"}),
    Pod("outside address", {}, {}, external=True),
]


def selects(selector: dict, labels: dict) -> bool:
    assert set(selector) <= {"matchLabels"}, f"{selector}: only matchLabels is modelled here; extend the test"
    return selector.get("matchLabels", {}).items() <= labels.items()


def peer_admits(peer: dict, source: Pod) -> bool:
    assert set(peer) <= {"podSelector", "namespaceSelector", "ipBlock"}, peer
    if "ipBlock" in peer:
        return True                                  # an address range: may be anyone, the outside too
    if source.external:
        return False
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], source.namespace):
            return False
    elif source.namespace != NAMESPACE:              # podSelector alone: the policy's own namespace
        return False
    return selects(peer.get("podSelector", {}), source.labels)


def port_matches(entry: dict, port: int) -> bool:
    assert entry.get("protocol", "TCP") == "TCP", entry
    if "port" not in entry:
        return True
    assert isinstance(entry["port"], int), f"{entry}: named ports are not modelled here; use numbers"
    return entry["port"] <= port <= entry.get("endPort", entry["port"])


def isolating(policies: list[dict], target: Pod) -> list[dict]:
    """The policies that select ``target`` for ingress (then only what they allow gets in)."""
    return [p for p in policies if "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
            and selects(p["spec"]["podSelector"], target.labels)]


def admitted(policies: list[dict], source: Pod, target: Pod, port: int) -> bool:
    selecting = isolating(policies, target)
    if not selecting:
        return True                                  # a pod no policy selects admits everything
    for policy in selecting:
        for rule in policy["spec"].get("ingress") or []:
            if rule.get("ports") and not any(port_matches(e, port) for e in rule["ports"]):
                continue
            if not rule.get("from") or any(peer_admits(peer, source) for peer in rule["from"]):
                return True
    return False


def ray_objects(docs):
    return [d for d in docs if d["kind"] in ("RayCluster", "RayJob")]


def policies_of(docs):
    return [d for d in docs if d["kind"] == "NetworkPolicy"]


@pytest.mark.parametrize("name", OVERLAYS)
def test_every_ray_pod_template_carries_its_cluster_label(name, rendered):
    for doc in ray_objects(rendered[name]):
        for pod in ray_pods(doc):
            assert pod.labels.get(CLUSTER_LABEL) == doc["metadata"]["name"], f"{name}: {pod.name} labels {pod.labels}"
        for client in clients(doc):
            assert CLUSTER_LABEL not in client.labels, f"{name}: {client.name} must not pass for a Ray pod"


@pytest.mark.parametrize("name", OVERLAYS)
def test_head_ports_admit_only_the_cluster_and_its_clients(name, rendered):
    docs = rendered[name]
    policies = policies_of(docs)
    assert policies, f"{name}: renders no NetworkPolicy"
    problems = []
    for doc in ray_objects(docs):
        head, *workers = ray_pods(doc)
        others = [p for d in ray_objects(docs) if d is not doc for p in ray_pods(d) + clients(d)]
        for port, what in HEAD_PORTS.items():
            expected = {p.name: True for p in [head, *workers, *clients(doc)]}
            expected[OPERATOR.name] = doc["kind"] == "RayJob" and port == 8265   # it polls the job status
            expected.update({p.name: False for p in others + STRANGERS})
            sources = [head, *workers, *clients(doc), OPERATOR, *others, *STRANGERS]
            for source in sources:
                if admitted(policies, source, head, port) != expected[source.name]:
                    problems.append(f"{name}: {head.name} port {port} ({what}) from {source.name}: "
                                    f"{'admitted' if not expected[source.name] else 'refused'}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", OVERLAYS)
def test_ray_pods_reach_each_other_on_any_port_and_nobody_else_reaches_workers(name, rendered):
    docs = rendered[name]
    policies = policies_of(docs)
    problems = []
    for doc in ray_objects(docs):
        own = ray_pods(doc)
        others = [p for d in ray_objects(docs) if d is not doc for p in ray_pods(d) + clients(d)]
        for target in own:
            for port in OTHER_PORTS + list(HEAD_PORTS):
                problems += [f"{name}: {s.name} -> {target.name}:{port} refused" for s in own
                             if not admitted(policies, s, target, port)]
                if target.labels["ray.io/node-type"] == "head" and port in HEAD_PORTS:
                    continue              # the test above covers the head ports
                problems += [f"{name}: {s.name} -> {target.name}:{port} admitted"
                             for s in [*clients(doc), OPERATOR, *others, *STRANGERS]
                             if admitted(policies, s, target, port)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", OVERLAYS)
def test_head_policy_names_the_three_ports_and_travels_with_its_cluster(name, rendered):
    """The ports are spelled out (not 'any port from anywhere'), and each policy carries its cluster's
    component label, so `kubectl apply -l app.kubernetes.io/component=X` applies both together."""
    policies = policies_of(rendered[name])
    for doc in ray_objects(rendered[name]):
        component = doc["metadata"]["labels"]["app.kubernetes.io/component"]
        head = ray_pods(doc)[0]
        selecting = [p for pod in ray_pods(doc) for p in isolating(policies, pod)]
        named = {e["port"] for p in isolating(policies, head) for rule in p["spec"].get("ingress") or []
                 for e in rule.get("ports") or []}
        assert set(HEAD_PORTS) <= named, f"{name}: the policies of {head.name} name ports {sorted(named)}"
        for p in selecting:
            assert p["metadata"]["labels"].get("app.kubernetes.io/component") == component, \
                f"{name}: NetworkPolicy {p['metadata']['name']} lacks component {component}"


def test_the_model_refuses_what_it_should():
    """The evaluator itself: an open rule, an ipBlock and a podSelector {} let strangers in."""
    head = Pod("h", {"ray.io/node-type": "head", CLUSTER_LABEL: "c"})
    policy = {"spec": {"podSelector": {"matchLabels": {CLUSTER_LABEL: "c"}}, "policyTypes": ["Ingress"], "ingress": []}}
    stranger, outside = STRANGERS[0], STRANGERS[-1]
    assert not admitted([policy], stranger, head, 8265)
    assert admitted([], stranger, head, 8265)                                   # not isolated at all
    for rule, source in (({}, outside), ({"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}, outside),
                         ({"from": [{"podSelector": {}}]}, stranger),
                         ({"from": [{"namespaceSelector": {}, "podSelector": {}}]}, OPERATOR)):
        policy["spec"]["ingress"] = [rule]
        assert admitted([policy], source, head, 8265), rule
    policy["spec"]["ingress"] = [{"from": [{"podSelector": {}}], "ports": [{"port": 6379}]}]
    assert admitted([policy], stranger, head, 6379) and not admitted([policy], stranger, head, 8265)
    assert not admitted([policy], Pod("elsewhere", {}, {"kubernetes.io/metadata.name": "x"}), head, 6379)
