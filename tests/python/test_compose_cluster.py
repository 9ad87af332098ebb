"""The `cluster` profile of docker-compose.yml has a production cluster's
topology (no Docker engine here, so it is checked by reading): three Kafka
brokers forming one KRaft quorum and replicating topics three times with two
in sync, one ZooKeeper, and two ClickHouse replicas of one shard that know
each other, the ZooKeeper and their own replica name. The local cluster of
`scripts/services start --cluster` is checked to have the same shape."""

import re
import tomllib
import xml.etree.ElementTree as ET

import yaml


def compose(root):
    return yaml.safe_load((root / "docker-compose.yml").read_text(encoding="utf-8"))


def cluster_services(root):
    services = compose(root)["services"]
    return {name: s for name, s in services.items() if "cluster" in s.get("profiles", [])}


def by_image(services, prefix):
    return {name: s for name, s in services.items() if s.get("image", "").startswith(prefix)}


def test_cluster_profile_has_three_brokers_zookeeper_and_two_replicas(root):
    services = cluster_services(root)
    assert len(by_image(services, "apache/kafka")) == 3
    assert len(by_image(services, "zookeeper")) == 1
    assert len(by_image(services, "clickhouse/clickhouse-server")) == 2
    built = sorted(name for name, s in services.items() if "build" in s)
    assert built == ["cluster-ingest", "cluster-jobs", "cluster-processor"], built
    assert len(services) == 9, sorted(services)
    # The single-node services stay out of the profile: `up` without it is
    # what it was.
    single = compose(root)["services"]
    for name in ("kafka", "clickhouse", "ingest", "processor"):
        assert "profiles" not in single[name], name


def test_the_three_brokers_form_one_quorum_and_replicate_three_times(root):
    brokers = by_image(cluster_services(root), "apache/kafka")
    envs = {name: s["environment"] for name, s in brokers.items()}
    ids = {env["KAFKA_NODE_ID"] for env in envs.values()}
    assert len(ids) == 3, "each broker has its own node id"
    assert len({env["CLUSTER_ID"] for env in envs.values()}) == 1, "one cluster id"
    for name, env in envs.items():
        voters = dict(v.split("@") for v in env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(","))
        assert set(voters) == ids, f"{name}: every node votes"
        assert {v.split(":")[0] for v in voters.values()} == set(brokers), name
        assert voters[env["KAFKA_NODE_ID"]].startswith(f"{name}:"), f"{name} votes as itself"
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092", name
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller", name
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3", name
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2", name
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3", name
        assert env["KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE"] == "false", name
    volumes = [v.split(":")[0] for s in brokers.values() for v in s["volumes"]]
    assert len(set(volumes)) == 3, "each broker keeps its own data"


def mounted_toml(root, service):
    (mount,) = [v for v in service["volumes"] if v.startswith("./config/")]
    return tomllib.loads((root / mount.split(":")[0].removeprefix("./")).read_text(encoding="utf-8"))


def test_the_pipeline_in_the_profile_is_configured_with_every_broker_and_the_cluster(root):
    """Ingest, processor and jobs of the profile list all three brokers (a
    client given one cannot start while that one is down), make topics with
    three replicas and two in sync, and wait for the brokers they use; the
    processor and jobs write to a replica of the cluster with a quorum of
    both."""
    services = cluster_services(root)
    brokers = sorted(by_image(services, "apache/kafka"))
    replicas = sorted(by_image(services, "clickhouse/clickhouse-server"))
    for name in ("cluster-ingest", "cluster-processor", "cluster-jobs"):
        config = mounted_toml(root, services[name])
        kafka = config["kafka"]
        assert sorted(kafka["brokers"].split(",")) == [f"{b}:9092" for b in brokers], name
        assert kafka["replication_factor"] == 3, name
        assert kafka["min_insync_replicas"] == 2, name
        if name != "cluster-ingest":
            clickhouse = config["clickhouse"]
            assert clickhouse["cluster"] == "telemetry", name
            assert clickhouse["insert_quorum"] == len(replicas), name
            assert clickhouse["url"].split("//")[1].split(":")[0] in replicas, name
    for name in ("cluster-ingest", "cluster-processor"):
        waits_for = services[name]["depends_on"]
        assert all(waits_for[b]["condition"] == "service_healthy" for b in brokers), name
    for name in ("cluster-processor", "cluster-jobs"):
        waits_for = services[name]["depends_on"]
        assert all(waits_for[r]["condition"] == "service_healthy" for r in replicas), name
    # Both run from one configuration, so they agree on the database.
    assert services["cluster-processor"]["volumes"] == services["cluster-jobs"]["volumes"]


def replica_config(root, relative):
    xml = ET.parse(root / relative).getroot()
    replicas = xml.findall("./remote_servers/telemetry/shard/replica")
    return xml, [(r.findtext("host"), r.findtext("port")) for r in replicas]


def test_the_two_clickhouse_replicas_share_one_shard_and_zookeeper(root):
    services = cluster_services(root)
    zookeeper = next(iter(by_image(services, "zookeeper")))
    replicas = by_image(services, "clickhouse/clickhouse-server")
    mounted = set()
    for name, service in replicas.items():
        assert service["hostname"] == name, "the name the other replica fetches parts from"
        assert service["environment"]["CLICKHOUSE_REPLICA"] == name, "its {replica} macro"
        assert service["depends_on"][zookeeper]["condition"] == "service_healthy"
        mounts = [v for v in service["volumes"] if v.startswith("./")]
        assert len(mounts) == 1 and "/config.d/" in mounts[0], name
        mounted.add(mounts[0].split(":")[0])
        assert len({v.split(":")[0] for v in service["volumes"]}) == 2, name
    assert len(mounted) == 1, "both replicas read the same cluster definition"
    xml, listed = replica_config(root, mounted.pop().removeprefix("./"))
    assert sorted(host for host, _ in listed) == sorted(replicas), "the shard's replicas"
    assert xml.findtext("./remote_servers/telemetry/shard/internal_replication") == "true"
    assert xml.findtext("./zookeeper/node/host") == zookeeper
    assert xml.find("./macros/replica").get("from_env") == "CLICKHOUSE_REPLICA"
    assert xml.findtext("./macros/shard")
    data = [v.split(":")[0] for s in replicas.values() for v in s["volumes"] if not v.startswith("./")]
    assert len(set(data)) == len(data), "each replica keeps its own data"


def test_the_local_cluster_has_the_same_shape(root):
    """scripts/cluster: three KRaft nodes voting for each other, replicating
    three times with two in sync; two replicas of one shard on ports of
    their own, apart from the single node's."""
    kafka = (root / "scripts" / "cluster" / "kafka.properties").read_text(encoding="utf-8")
    settings = dict(
        line.split("=", 1) for line in kafka.splitlines() if line and not line.startswith("#")
    )
    assert settings["process.roles"] == "broker,controller"
    assert settings["default.replication.factor"] == "3"
    assert settings["min.insync.replicas"] == "2"
    assert settings["offsets.topic.replication.factor"] == "3"
    script = (root / "scripts" / "cluster" / "services.sh").read_text(encoding="utf-8")
    assert re.search(r"^CLUSTER_KAFKA_NODES=\(1 2 3\)$", script, re.M)
    assert re.search(r"^CLUSTER_CLICKHOUSE_REPLICAS=\(1 2\)$", script, re.M)
    ports = {int(p) for p in re.findall(r"^CLUSTER_\w+_PORT=\$\{\w+:-(\d+)\}$", script, re.M)}
    assert len(ports) == 7, ports
    taken = {9092, 9093, 9094, 8123, 9000, 8443, 19092, 19093}  # single node, scripts/faults
    for base in ports:
        assert not {base, base + 1, base + 2} & taken, base
    xml, listed = replica_config(root, "scripts/cluster/clickhouse.xml")
    assert [host for host, _ in listed] == ["127.0.0.1", "127.0.0.1"]
    assert xml.findtext("./macros/replica") == "@REPLICA@"
    assert xml.findtext("./zookeeper/node/port") == "@ZOOKEEPER_PORT@"
