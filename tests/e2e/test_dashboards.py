"""
Static checks of the Grafana dashboard, the Prometheus alert rules and the
observability stack: structure, metric names, variables, PromQL syntax
(promtool), rule unit tests and provisioning.
"""

from __future__ import annotations

import json
import posixpath
import re
import subprocess
from typing import TYPE_CHECKING

import pytest

from stormwall.exporters import _vocabulary as vocab
from tests.support.dashboard_workload import (
    ALERTS,
    ALERTS_TEST,
    BUILTIN_VARIABLES,
    DASHBOARDS,
    STACK,
    load_dashboard,
    panels,
    substitute,
    targets,
    variables_used,
)
from tests.support.servers import require_binary


if TYPE_CHECKING:
    from pathlib import Path


DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
METRIC = re.compile(r"\bstormwall_[a-z_]+")
SELECTOR = re.compile(r"\b(stormwall_[a-z_]+)(\{[^}]*\})?")

# The label each metric's queries must filter on, besides job.
ENTITY_LABEL = {
    spec.prometheus_name: spec.labels[0] for spec in vocab.ALL_METRICS
}


def exported_names() -> set[str]:
    """Every sample name the exporters produce."""
    names = set()
    for spec in vocab.ALL_METRICS:
        if spec.kind == "histogram":
            names.update(spec.prometheus_name + s for s in HISTOGRAM_SUFFIXES)
        else:
            names.add(spec.prometheus_name)
    return names


def base_name(name: str) -> str:
    """The vocabulary name of a sample name (histogram suffixes removed)."""
    for suffix in HISTOGRAM_SUFFIXES:
        stripped = name.removesuffix(suffix)
        if stripped != name and stripped in ENTITY_LABEL:
            return stripped
    return name


def load_yaml(path: Path) -> dict:
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, capture_output=True, text=True, check=False, cwd=cwd, timeout=60
    )


def check_promql(exprs: dict[str, str], tmp_path: Path) -> str:
    """
    promtool's verdict on ``exprs`` (name -> PromQL), each written as a
    recording rule of a temporary rule file; "" when all parse.
    """
    promtool = require_binary("promtool")
    rules = [
        {"record": f"check:{i}", "expr": expr, "labels": {"query": name}}
        for i, (name, expr) in enumerate(exprs.items())
    ]
    path = tmp_path / "exprs.rules.json"
    # JSON is YAML: no YAML library needed to write the rule file.
    path.write_text(json.dumps({"groups": [{"name": "q", "rules": rules}]}))
    result = run(promtool, "check", "rules", str(path))
    return "" if result.returncode == 0 else result.stdout + result.stderr


def dashboard_exprs() -> dict[str, str]:
    """Every PromQL of the dashboard, variables substituted."""
    dashboard = load_dashboard()
    exprs = {
        f"{title} [{ref}]": substitute(expr, "1m", {})
        for title, ref, expr in targets(dashboard)
    }
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]["query"]
        inner = re.fullmatch(r"label_values\((.+),\s*\w+\)", query)
        assert inner is not None, query
        exprs[f"${variable['name']}"] = substitute(inner.group(1), "1m", {})
    return exprs


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return load_dashboard()


class TestPanels:
    def test_panel_ids_are_unique(self, dashboard):
        """Every panel and row has its own id."""
        ids = [p["id"] for p in dashboard["panels"]]
        ids += [
            nested["id"]
            for row in dashboard["panels"]
            if row["type"] == "row"
            for nested in row["panels"]
        ]

        assert len(set(ids)) == len(ids)
        assert all(isinstance(i, int) for i in ids)

    def test_every_panel_uses_the_datasource_variable(self, dashboard):
        """Panels and each of their targets query ${datasource}."""
        offenders = []
        for panel in panels(dashboard):
            if panel.get("datasource") != DATASOURCE:
                offenders.append(panel["title"])
            for target in panel["targets"]:
                if target.get("datasource") != DATASOURCE:
                    offenders.append(f"{panel['title']} [{target['refId']}]")

        assert [] == offenders

    def test_every_panel_has_a_unit_and_a_one_line_description(
        self, dashboard
    ):
        """A unit in fieldConfig.defaults and a one-line description."""
        offenders = []
        for panel in panels(dashboard):
            unit = panel["fieldConfig"]["defaults"].get("unit")
            description = panel.get("description", "")
            if not unit or not description.strip() or "\n" in description:
                offenders.append(panel["title"])

        assert [] == offenders

    def test_every_panel_has_queries_with_unique_ref_ids(self, dashboard):
        """At least one target per panel, refIds unique in the panel."""
        for panel in panels(dashboard):
            refs = [t["refId"] for t in panel["targets"]]
            assert refs, panel["title"]
            assert len(set(refs)) == len(refs), panel["title"]

    def test_rows_cover_the_design(self, dashboard):
        """Traffic, latency, retries, breakers, limiters, bulkheads and
        shared backends rows."""
        rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]

        assert [
            "Traffic",
            "Latency",
            "Retries",
            "Circuit breakers",
            "Rate limiters",
            "Bulkheads",
            "Backends",
        ] == rows

    def test_each_state_gauge_sits_in_its_row(self, dashboard):
        """A gauge panel sits under the row of what it measures: the
        retry budget with the retries, the limit with the bulkheads."""
        row, rows = None, {}
        for panel in sorted(
            dashboard["panels"],
            key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"]),
        ):
            if panel["type"] == "row":
                row = panel["title"]
            else:
                rows[panel["title"]] = row

        assert "Retries" == rows["Retry budget available"]
        assert "Bulkheads" == rows["Bulkhead limit"]
        assert (
            "Rate limiters" == rows["Limiter permits available (global tiers)"]
        )
        assert "Circuit breakers" == rows["Breaker failure and slow-call rate"]

    def test_backend_row_charts_errors_and_policy_decisions(self, dashboard):
        """A Redis outage shows: failed round trips by error type, and the
        calls on_backend_error decided, per component."""
        by_title = {p["title"]: p for p in panels(dashboard)}
        errors = by_title["Backend errors per second"]
        decisions = by_title["Backend decisions per second"]

        (error_target,) = errors["targets"]
        (decision_target,) = decisions["targets"]
        assert error_target["expr"].startswith(
            "sum by (component, error_type) "
            "(rate(stormwall_backend_errors_total{"
        )
        assert decision_target["expr"].startswith(
            "sum by (component, decision) "
            "(rate(stormwall_backend_decisions_total{"
        )
        assert "{{error_type}}" in error_target["legendFormat"]
        assert "{{decision}}" in decision_target["legendFormat"]
        variables = {v["name"] for v in dashboard["templating"]["list"]}
        assert "component" in variables

    def test_breaker_state_timeline_repeats_and_maps_every_state(
        self, dashboard
    ):
        """One state timeline per breaker, with a text for every state."""
        (timeline,) = [
            p for p in panels(dashboard) if p["type"] == "state-timeline"
        ]
        (mapping,) = timeline["fieldConfig"]["defaults"]["mappings"]
        texts = {o["text"] for o in mapping["options"].values()}

        assert "breaker" == timeline["repeat"]
        assert {s.replace("_", "-") for s in vocab.BREAKER_STATES} == texts
        for state in vocab.BREAKER_STATES:
            assert f'state="{state}"' in timeline["targets"][0]["expr"]

    def test_panels_do_not_overlap(self, dashboard):
        """No two grid positions share a cell."""
        cells: dict[tuple[int, int], str] = {}
        for panel in dashboard["panels"]:
            pos = panel["gridPos"]
            for x in range(pos["x"], pos["x"] + pos["w"]):
                for y in range(pos["y"], pos["y"] + pos["h"]):
                    assert (x, y) not in cells, (panel["title"], cells[x, y])
                    cells[x, y] = panel["title"]
            assert pos["x"] + pos["w"] <= 24, panel["title"]


class TestVariables:
    def test_datasource_input_and_variable(self, dashboard):
        """A Prometheus datasource input and a datasource variable."""
        (ds_input,) = dashboard["__inputs"]
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}

        assert ("datasource", "prometheus") == (
            ds_input["type"],
            ds_input["pluginId"],
        )
        assert ("datasource", "prometheus") == (
            variables["datasource"]["type"],
            variables["datasource"]["query"],
        )

    def test_job_and_executor_are_multi_value_with_all(self, dashboard):
        """The job and executor variables select several values or all."""
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        for name in ("job", "executor"):
            variable = variables[name]
            assert (True, True) == (variable["multi"], variable["includeAll"])
            assert variable["query"]["query"].startswith("label_values(")

    def test_every_variable_used_is_defined(self, dashboard):
        """Each $var, ${var} and [[var]] is a templating variable or a
        Grafana builtin."""
        defined = {v["name"] for v in dashboard["templating"]["list"]}
        text = json.dumps(
            {k: v for k, v in dashboard.items() if k != "__inputs"}
        )

        assert set() == variables_used(text) - defined - BUILTIN_VARIABLES

    def test_variables_are_all_used(self, dashboard):
        """No variable is defined for nothing."""
        defined = {v["name"] for v in dashboard["templating"]["list"]}
        used = variables_used(json.dumps(dashboard["panels"]))

        assert set() == defined - used


class TestQueries:
    def test_only_exported_metric_names(self, dashboard):
        """Every stormwall_* name in a query is one the exporters produce."""
        text = json.dumps(dashboard)
        used = set(METRIC.findall(text))

        assert set() == used - exported_names()

    def test_every_metric_is_charted(self, dashboard):
        """Every metric of the vocabulary appears in some panel."""
        used = {
            base_name(name)
            for _, _, expr in targets(dashboard)
            for name in METRIC.findall(expr)
        }

        assert {spec.prometheus_name for spec in vocab.ALL_METRICS} == used

    def test_every_selector_filters_by_job_and_its_entity(self, dashboard):
        """Each metric selector has job=~"$job" and its entity label."""
        offenders = []
        for title, ref, expr in targets(dashboard):
            for name, matchers in SELECTOR.findall(expr):
                entity = ENTITY_LABEL[base_name(name)]
                wanted = ('job=~"$job"', f'{entity}=~"${entity}"')
                if not all(w in (matchers or "") for w in wanted):
                    offenders.append(f"{title} [{ref}]: {name}{matchers}")

        assert [] == offenders

    def test_histogram_quantiles_use_buckets_by_le(self, dashboard):
        """histogram_quantile is applied to rates of _bucket, kept by le."""
        quantiles = [
            expr
            for _, _, expr in targets(dashboard)
            if "histogram_quantile" in expr
        ]

        assert 9 == len(quantiles)
        for expr in quantiles:
            assert "_bucket{" in expr, expr
            assert re.search(r"sum by \([a-z_, ]*\ble\)", expr), expr

    def test_dashboard_promql_parses(self, tmp_path):
        """promtool accepts every panel and variable query, substituted."""
        assert "" == check_promql(dashboard_exprs(), tmp_path)

    def test_the_syntax_check_rejects_bad_promql(self, tmp_path):
        """The check is real: an unbalanced expression fails it."""
        verdict = check_promql(
            {"broken": "sum by (executor (rate(stormwall_calls_total[1m]))"},
            tmp_path,
        )

        assert "parse error" in verdict


class TestAlerts:
    def test_promtool_check_rules(self):
        """promtool check rules accepts alerts.yml."""
        promtool = require_binary("promtool")
        result = run(promtool, "check", "rules", str(ALERTS))

        assert 0 == result.returncode, result.stdout + result.stderr

    def test_promtool_unit_tests_pass(self):
        """promtool test rules runs alerts_test.yml successfully."""
        promtool = require_binary("promtool")
        result = run(
            promtool, "test", "rules", ALERTS_TEST.name, cwd=DASHBOARDS
        )

        assert 0 == result.returncode, result.stdout + result.stderr
        assert "SUCCESS" in result.stdout

    def test_every_alert_is_unit_tested(self):
        """Each alert, the breaker held open included, has a firing test."""
        alerts = {
            rule["alert"]
            for group in load_yaml(ALERTS)["groups"]
            for rule in group["rules"]
        }
        fired = {
            case["alertname"]
            for test in load_yaml(ALERTS_TEST)["tests"]
            for case in test.get("alert_rule_test", [])
            if case.get("exp_alerts")
        }

        assert {
            "StormwallCircuitBreakerOpen",
            "StormwallCircuitBreakerFailureRateHigh",
            "StormwallRetryRatioHigh",
            "StormwallRateLimiterRejecting",
            "StormwallBackendFailing",
        } == alerts
        assert alerts == fired

    def test_alerts_have_severity_and_annotations(self):
        """severity, summary and a description naming the entity."""
        for group in load_yaml(ALERTS)["groups"]:
            for rule in group["rules"]:
                assert rule["labels"]["severity"] in {"warning", "critical"}
                assert rule["annotations"]["summary"]
                assert "{{ $labels." in rule["annotations"]["description"]
                assert "Runbook" in rule["annotations"]["description"]
                assert "for" in rule

    def test_alerts_use_only_exported_metric_names(self):
        """Every stormwall_* name in a rule is one the exporters produce."""
        used = set(METRIC.findall(ALERTS.read_text(encoding="utf-8")))

        assert set() == used - exported_names()


class TestStack:
    def test_promtool_check_config(self):
        """The stack's prometheus.yml is valid and its rule file resolves."""
        promtool = require_binary("promtool")
        result = run(
            promtool, "check", "config", str(STACK / "prometheus.yml")
        )

        assert 0 == result.returncode, result.stdout + result.stderr
        assert "1 rule files found" in result.stdout

    def test_compose_mounts_existing_paths(self):
        """Every bind mount of compose.yaml names a path of the repo."""
        compose = load_yaml(STACK / "compose.yaml")
        missing = []
        for service in compose["services"].values():
            for volume in service.get("volumes", []):
                source = volume.split(":")[0]
                if not (STACK / source).exists():
                    missing.append(source)

        assert [] == missing
        assert {"prometheus", "grafana", "jaeger", "demo"} == set(
            compose["services"]
        )

    def test_rule_file_resolves_inside_the_container(self):
        """prometheus.yml's rule file is where compose mounts alerts.yml."""
        compose = load_yaml(STACK / "compose.yaml")
        config = load_yaml(STACK / "prometheus.yml")
        mounts = dict(
            reversed(v.split(":")[:2])
            for v in compose["services"]["prometheus"]["volumes"]
        )
        config_dir = posixpath.dirname(
            next(t for t, s in mounts.items() if s == "./prometheus.yml")
        )
        (rule_file,) = config["rule_files"]

        target = posixpath.normpath(posixpath.join(config_dir, rule_file))
        assert (STACK / mounts[target]).resolve() == ALERTS.resolve()
        assert (STACK / rule_file).resolve() == ALERTS.resolve()

    def test_provisioning_points_at_the_mounted_dashboard(self):
        """Grafana's provider path is where compose mounts the JSON."""
        provider = load_yaml(
            DASHBOARDS / "provisioning" / "dashboards" / "stormwall.yml"
        )
        compose = load_yaml(STACK / "compose.yaml")
        (entry,) = provider["providers"]
        mounts = dict(
            reversed(v.split(":")[:2])
            for v in compose["services"]["grafana"]["volumes"]
        )
        dashboards = {
            t: s
            for t, s in mounts.items()
            if t.startswith(entry["options"]["path"] + "/")
        }

        assert "file" == entry["type"]
        assert ["../../dashboards/stormwall-overview.json"] == list(
            dashboards.values()
        )

    def test_datasource_provisioning(self):
        """A default Prometheus datasource, reachable from Grafana."""
        provisioned = load_yaml(
            DASHBOARDS / "provisioning" / "datasources" / "stormwall.yml"
        )
        by_type = {d["type"]: d for d in provisioned["datasources"]}

        assert 1 == provisioned["apiVersion"]
        assert (True, "http://prometheus:9090") == (
            by_type["prometheus"]["isDefault"],
            by_type["prometheus"]["url"],
        )
        assert "jaeger" in by_type
