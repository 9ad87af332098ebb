"""docker-compose.yml cannot be run here (no Docker engine), so check what can
be checked without one: it parses, every service the README names is in it,
each has a health check or depends on healthy ones, and the config files it
mounts exist."""

import re

import yaml


def readme_services(root):
    text = (root / "README.md").read_text(encoding="utf-8")
    section = re.search(r"^## Running in containers\n(.*?)(?=^## )", text, re.S | re.M)
    assert section, "README has a 'Running in containers' section"
    names = re.findall(r"^\| `([a-z0-9_-]+)` \|", section.group(1), re.M)
    assert names, "the section's table names the services"
    return names


def test_compose_parses_and_has_every_readme_service(root):
    compose = yaml.safe_load((root / "docker-compose.yml").read_text(encoding="utf-8"))
    services = compose["services"]
    named = readme_services(root)
    assert sorted(named) == sorted(services), "README and docker-compose.yml list the same services"
    for name, service in services.items():
        healthy = "healthcheck" in service or all(
            dep.get("condition") == "service_healthy" for dep in service.get("depends_on", {}).values()
        )
        assert healthy, f"{name} has a health check or waits for healthy dependencies"
        assert "image" in service or "build" in service, name


def test_compose_mounts_files_that_exist(root):
    compose = yaml.safe_load((root / "docker-compose.yml").read_text(encoding="utf-8"))
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (root / source).is_file(), f"{name} mounts missing {source}"
    assert (root / "Dockerfile").is_file()


def test_the_dashboard_is_built_from_the_cookbook(root):
    """The committed dashboard is what scripts/grafana-dashboard makes of the
    cookbook, and every panel runs a cookbook query."""
    import subprocess

    generated = subprocess.run(
        [str(root / "scripts" / "grafana-dashboard")], check=True, capture_output=True, text=True
    ).stdout
    committed = (root / "deploy" / "grafana" / "dashboards" / "telemetry.json").read_text(encoding="utf-8")
    assert generated == committed, "run scripts/grafana-dashboard --write"
    dashboard = yaml.safe_load(committed)  # JSON is YAML
    queries = {p.stem for p in (root / "schemas" / "queries").glob("*.sql")}
    for panel in dashboard["panels"]:
        name = panel["description"].rsplit("/", 1)[-1].removesuffix(".sql")
        assert name in queries, panel["title"]
        assert panel["targets"][0]["rawSql"].startswith("SELECT"), panel["title"]
        assert "{" not in panel["targets"][0]["rawSql"].replace("${", ""), "unreplaced parameter"
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    for panel in dashboard["panels"]:
        for used in set(__import__("re").findall(r"\$\{(\w+)\}", panel["targets"][0]["rawSql"])):
            assert used in variables, f"{panel['title']} uses undefined ${used}"
    compose = yaml.safe_load((root / "docker-compose.yml").read_text(encoding="utf-8"))
    grafana = compose["services"]["grafana"]
    assert "grafana-clickhouse-datasource" in grafana["environment"]["GF_INSTALL_PLUGINS"]


def test_every_service_comes_back_after_a_crash(root):
    """A crashed or killed container restarts by itself: no single fault
    leaves the pipeline down until someone notices."""
    compose = yaml.safe_load((root / "docker-compose.yml").read_text())
    for name, service in compose["services"].items():
        assert service.get("restart") in ("always", "unless-stopped"), name
