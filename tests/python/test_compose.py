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
