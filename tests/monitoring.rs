//! The monitoring that ships (`config/prometheus/standby-alerts.yml`,
//! `config/grafana/standby-dashboard.json`) names only metrics that `/metrics` exports under
//! load, and the files are well formed: checked by `promtool` when it is installed (CI installs
//! it), by a structural check of the rule file otherwise.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use standby::config::Ordering;
use standby::pipeline::{self, Shared};
use tokio_util::sync::CancellationToken;

use common::{admin_client, clusters, http_client, wait_applied_to_head};

fn shipped(path: &str) -> (PathBuf, String) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (path, text)
}

/// Every `standby_…` metric name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("standby_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        names.insert(name);
    }
    names
}

/// Whether the exposition `text` carries a metric family answering to `name` as PromQL spells it
/// (counters with `_total`, histograms with `_bucket`/`_sum`/`_count`).
fn exported(text: &str, name: &str) -> bool {
    let family = ["_total", "_bucket", "_sum", "_count"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .unwrap_or(name);
    text.lines().any(|l| {
        l.starts_with(&format!("# TYPE {family} ")) || l.starts_with(&format!("# TYPE {name} "))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_and_the_rules_name_is_exported_under_load() {
    let (_, rules) = shipped("config/prometheus/standby-alerts.yml");
    let (_, dashboard) = shipped("config/grafana/standby-dashboard.json");
    let mut named = metric_names(&rules);
    named.extend(metric_names(&dashboard));
    assert!(named.len() >= 10, "{named:?}");

    let c = clusters(Ordering::Stream).await;
    let primary = admin_client(&c.config.primary.url);
    let shared = Arc::new(Shared::default());
    let (reader, _) = pipeline::clients(&c.config).unwrap();
    let server = standby::serve::start(
        "127.0.0.1:0".parse().unwrap(),
        shared.clone(),
        std::time::Duration::from_secs(2),
        reader,
        c.config.replication.clone(),
    )
    .await
    .unwrap();
    let stop = CancellationToken::new();
    let run = {
        let (config, shared, stop) = (c.config.clone(), shared.clone(), stop.clone());
        tokio::spawn(async move { pipeline::run(&config, stop, shared).await })
    };
    standby::demo::workload(
        &primary,
        "load",
        5_000,
        50,
        11,
        &CancellationToken::new(),
        |_| {},
    )
    .await
    .unwrap();
    wait_applied_to_head(&shared, &primary, &run).await;
    let text = http_client()
        .get(format!("http://{}/metrics", server.addr()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    stop.cancel();
    run.await.unwrap().expect("clean stop");

    let missing: Vec<&String> = named.iter().filter(|n| !exported(&text, n)).collect();
    assert!(
        missing.is_empty(),
        "named by the shipped dashboard or rules but not exported: {missing:?}\n{text}"
    );
}

#[test]
fn the_alert_rules_are_valid() {
    let (path, rules) = shipped("config/prometheus/standby-alerts.yml");
    if let Ok(out) = std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(&path)
        .output()
    {
        assert!(
            out.status.success(),
            "promtool check rules: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    // Without promtool: the shape Prometheus needs, rule by rule.
    assert!(rules.lines().any(|l| l == "groups:"), "top-level `groups:`");
    let mut alerts = 0;
    for rule in rules.split("      - alert: ").skip(1) {
        alerts += 1;
        let name = rule.lines().next().unwrap_or_default();
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric()),
            "alert name {name:?}"
        );
        for key in [
            "        expr: ",
            "        labels:",
            "          severity: ",
            "        annotations:",
            "          summary: ",
        ] {
            assert!(rule.contains(key), "alert {name} lacks {key:?}");
        }
        assert!(
            !rule.contains('\t'),
            "alert {name}: tabs are not YAML indentation"
        );
    }
    assert!(alerts >= 8, "{alerts} alerts");
}

#[test]
fn the_dashboard_is_grafana_json_with_a_query_per_panel() {
    let (_, text) = shipped("config/grafana/standby-dashboard.json");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert!(dashboard["uid"].is_string() && dashboard["title"].is_string());
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8);
    for panel in panels {
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{panel}");
        for target in targets {
            let expr = target["expr"].as_str().expect("expr");
            assert!(expr.contains("standby_"), "{expr}");
            assert_eq!(
                expr.matches('(').count(),
                expr.matches(')').count(),
                "unbalanced: {expr}"
            );
        }
        assert!(panel["gridPos"]["w"].as_u64().is_some_and(|w| w <= 24));
    }
}
