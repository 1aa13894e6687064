"""CNI configuration loading and results (kubeclass/node/cni.py), as libcni reads them: the first file in lexical
order, a .conflist's plugins or a single-plugin .conf; what kubeclass writes when there is none."""
import json

import pytest

from kubeclass.node import cni, podnet


def test_first_valid_file_in_lexical_order(tmp_path):
    (tmp_path / "20-b.conflist").write_text(json.dumps({"cniVersion": "1.0.0", "name": "b", "plugins": [{"type": "bridge"}]}))
    (tmp_path / "10-a.conf").write_text(json.dumps({"cniVersion": "0.4.0", "name": "a", "type": "ptp"}))
    (tmp_path / "05-broken.conflist").write_text("{not json")
    (tmp_path / "README").write_text("ignored")
    net = cni.load(str(tmp_path))
    assert (net.name, net.cni_version, [p["type"] for p in net.plugins]) == ("a", "0.4.0", ["ptp"])
    assert cni.load(str(tmp_path / "missing")) is None


def test_default_config_is_a_bridge_with_host_local_and_portmap():
    c = cni.default_config("kubeclass", "kubeclass0", "10.244.0.0/24", "/x/ipam")
    assert [p["type"] for p in c["plugins"]] == ["bridge", "portmap"]
    assert c["plugins"][0]["ipam"]["ranges"] == [[{"subnet": "10.244.0.0/24"}]]
    assert c["plugins"][1]["capabilities"] == {"portMappings": True}


def test_runtime_config_carries_only_declared_capabilities():
    net = cni.NetworkConfig("n", "1.0.0", [{"type": "bridge"}, {"type": "portmap", "capabilities": {"portMappings": True}}])
    rc = {"portMappings": [{"hostPort": 80, "containerPort": 8080, "protocol": "tcp"}], "bandwidth": {}}
    assert "runtimeConfig" not in cni.Runner._conf(net, net.plugins[0], None, rc)
    conf = cni.Runner._conf(net, net.plugins[1], {"ips": []}, rc)
    assert conf["runtimeConfig"] == {"portMappings": rc["portMappings"]} and conf["prevResult"] == {"ips": []}
    assert conf["name"] == "n" and conf["cniVersion"] == "1.0.0"


def test_results_and_args():
    res = {"ips": [{"address": "fd00::5/64"}, {"address": "10.244.0.5/24", "gateway": "10.244.0.1"}]}
    assert cni.ips_of(res) == ["10.244.0.5", "fd00::5"]
    assert podnet._gateway(res) == "10.244.0.1"
    assert cni.k8s_args("ns", "p", "u", "c") == \
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;K8S_POD_INFRA_CONTAINER_ID=c;K8S_POD_UID=u"


def test_host_ports_and_option_checks():
    pod = {"spec": {"containers": [{"ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 9090}]},
                                   {"ports": [{"containerPort": 53, "hostPort": 53, "protocol": "UDP", "hostIP": "127.0.0.1"}]}]}}
    assert podnet.host_ports(pod) == [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
                                      {"hostPort": 53, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"}]
    with pytest.raises(ValueError, match="--pod-cidr"):
        podnet.validate(podnet.Options(pod_cidr="10.0.0.0/33"))
    with pytest.raises(ValueError, match="--cni-bridge"):
        podnet.validate(podnet.Options(bridge="a-very-long-bridge-name"))
    with pytest.raises(ValueError, match="--service-cluster-ip-range"):
        podnet.validate(podnet.Options(service_cidr="nope"))
    podnet.validate(podnet.Options())


def test_plugin_types_cannot_name_paths():
    with pytest.raises(cni.CNIError, match="invalid plugin type"):
        cni.Runner().find("../../bin/sh")
