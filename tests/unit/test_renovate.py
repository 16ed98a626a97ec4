"""renovate.json finds every version pin the repository holds, and Renovate itself accepts it.

The image pins are matched by our own regex in the settings table, so the pure-Python tests run it
against the real file and compare with the table's values: a renamed setting, a moved image or a
reworded row fails here instead of silently leaving a pin without pull requests. The last tests
run Renovate's own validator from .tools/renovate (`make tools`), or skip saying why.
"""

import json
import os
import re

import pytest

from tasks import REPO
from tasks.settings import SETTINGS, pinned_image
from tasks.settings import table as settings_table
from tests.renovate_support import CONFIG, IMAGE_PINS, TABLE_PATH, image_tags, renovate

# Tag suffixes docker versioning must keep (an update to a tag without them is another image).
SUFFIXES = {"gitea_image": "-rootless", "postgres_image": "-trixie"}


def regex_managers():
    return [m for m in CONFIG["customManagers"] if m["customType"] == "regex"]


def python_regex(pattern: str) -> re.Pattern:
    # RE2 (what Renovate prefers) has no lookarounds or back-references: keep to the common subset,
    # where JavaScript's (?<name>) is Python's (?P<name>).
    assert not re.search(r"\(\?<?[=!]|\\[1-9]", pattern), f"not RE2-safe: {pattern}"
    return re.compile(re.sub(r"\(\?<(?=[A-Za-z])", "(?P<", pattern))


def file_pattern_matches(pattern: str, path: str) -> bool:
    assert pattern.startswith("/") and pattern.endswith("/"), f"{pattern}: a regex, not a glob"
    return re.search(pattern[1:-1], path) is not None


def extracted(manager) -> dict[str, tuple[str, str]]:
    """setting name -> (depName, currentValue), as the manager extracts them from the real table."""
    text = (REPO / TABLE_PATH).read_text()
    found = {}
    for pattern in manager["matchStrings"]:
        for match in python_regex(pattern).finditer(text):
            name = re.match(r'Setting\("([a-z0-9_]+)"', match[0])[1]
            assert name not in found, f"{name} matched twice"
            found[name] = (match["depName"], match["currentValue"])
    return found


def image_manager():
    managers = [m for m in regex_managers() if any(file_pattern_matches(p, TABLE_PATH)
                                                   for p in m["managerFilePatterns"])]
    assert len(managers) == 1, "one regex manager reads the settings table"
    return managers[0]


def test_the_table_is_where_the_manager_looks():
    assert os.path.relpath(settings_table.__file__, REPO) == TABLE_PATH


def test_every_pinned_image_setting_is_covered():
    assert {s.name for s in SETTINGS if s.check is pinned_image} == set(IMAGE_PINS)


def test_image_manager_extracts_each_default_the_table_holds():
    found = extracted(image_manager())
    assert set(found) == set(IMAGE_PINS)
    for name, (dep, value) in found.items():
        assert dep == IMAGE_PINS[name], name
        assert value == image_tags()[dep], name
        assert value.endswith(SUFFIXES.get(name, "")), name


def test_every_regex_manager_matches_something():
    for manager in regex_managers():
        files = [p.relative_to(REPO).as_posix() for p in REPO.rglob("*")
                 if p.is_file() and not p.relative_to(REPO).parts[0].startswith(".")]
        matched = [f for f in files if any(file_pattern_matches(p, f) for p in manager["managerFilePatterns"])]
        assert matched, manager["description"]
        texts = "\n".join((REPO / f).read_text() for f in matched)
        for pattern in manager["matchStrings"]:
            assert python_regex(pattern).search(texts), pattern


def test_images_use_docker_versioning_which_keeps_the_suffix():
    manager = image_manager()
    assert manager["datasourceTemplate"] == "docker" and manager["versioningTemplate"] == "docker"


# What packageRules match on here; effective() knows no other condition.
MATCHERS = ("matchDatasources", "matchDepNames", "matchPackageNames", "matchUpdateTypes")


def effective(datasource: str, dep: str, update_type: str, package: str | None = None) -> dict:
    """The settings an update gets: matching rules applied in order, later ones winning (as Renovate
    does), addLabels added up."""
    result = {"automerge": CONFIG["automerge"], "labels": list(CONFIG["labels"])}
    wanted = {"matchDatasources": datasource, "matchDepNames": dep, "matchPackageNames": package or dep,
              "matchUpdateTypes": update_type}
    for rule in CONFIG["packageRules"]:
        conditions = {k for k in rule if k.startswith("match")}
        assert conditions <= set(MATCHERS), rule["description"]
        if all(wanted[k] in rule[k] for k in conditions):
            result["labels"] += rule.get("addLabels", [])
            result.update({k: v for k, v in rule.items() if k not in conditions and k != "addLabels"})
    return result


@pytest.mark.parametrize("setting, update_type", [
    ("gitea_image", "minor"), ("gitea_image", "major"), ("postgres_image", "major")])
def test_database_migrating_updates_stand_alone_for_a_person(setting, update_type):
    update = effective("docker", IMAGE_PINS[setting], update_type)
    assert update["automerge"] is False and "manual-review" in update["labels"]
    assert "groupName" not in update  # a pull request of its own
    assert update["prBodyNotes"]


@pytest.mark.parametrize("setting, update_type", [
    ("gitea_image", "patch"), ("postgres_image", "patch"), ("postgres_image", "minor"), ("grafana_image", "patch")])
def test_bug_fix_releases_come_grouped(setting, update_type):
    update = effective("docker", IMAGE_PINS[setting], update_type)
    assert update["groupName"] == "patch updates" and update["automerge"] is False
    assert "manual-review" not in update["labels"]


def test_an_aws_provider_major_is_for_a_person():
    update = effective("terraform-provider", "aws", "major", package="hashicorp/aws")
    assert update["automerge"] is False and "manual-review" in update["labels"]
    assert update["groupName"] == "Terraform AWS provider"


def test_nothing_automerges_and_there_is_a_schedule():
    assert CONFIG["automerge"] is False
    assert not any(r.get("automerge") for r in CONFIG["packageRules"])
    assert CONFIG["schedule"] and CONFIG["timezone"] == "UTC"


def test_package_rules_name_only_what_is_extracted():
    names = set(IMAGE_PINS.values())
    for rule in CONFIG["packageRules"]:
        assert set(rule.get("matchDepNames", [])) <= names, rule["description"]
        assert rule["description"]


def test_the_aws_provider_rule_names_the_providers_source():
    # The terraform manager reads required_providers itself; this only keeps the rule's name true.
    sources = {source for versions in (REPO / "terraform").rglob("versions.tf")
               for source in re.findall(r'^\s*source\s*=\s*"([^"]+)"', versions.read_text(), re.M)}
    assert sources == {"hashicorp/aws"}
    rules = [r for r in CONFIG["packageRules"] if r.get("matchDatasources") == ["terraform-provider"]]
    assert rules and all(r["matchPackageNames"] == ["hashicorp/aws"] for r in rules)


def test_each_kind_of_pin_has_its_manager():
    assert {"custom.regex", "terraform", "pep621"} <= set(CONFIG["enabledManagers"])
    assert CONFIG["extends"] == ["config:recommended"]
    if list((REPO / ".gitea" / "workflows").glob("*.y*ml")):
        assert "github-actions" in CONFIG["enabledManagers"]


def validator(config: str):
    return renovate("renovate-config-validator", "--strict", "--no-global", config, timeout=120)


@pytest.mark.tools
def test_renovate_validator_accepts_the_config():
    cp = validator("renovate.json")
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "Config validated successfully" in cp.stdout


@pytest.mark.tools
def test_renovate_validator_is_strict(tmp_path):
    # Proof the validator judges: a config Renovate would have to migrate (fileMatch is the old
    # name of managerFilePatterns) fails --strict.
    old = json.dumps(CONFIG).replace('"managerFilePatterns"', '"fileMatch"')
    (tmp_path / "renovate.json").write_text(old)
    cp = validator(str(tmp_path / "renovate.json"))
    assert cp.returncode != 0 and "migration" in cp.stdout.lower(), cp.stdout + cp.stderr
