//! The configuration as documented and as shipped: `docs/configuration.md` names every key and its
//! environment variable, and `config/compose.toml` (used by `docker-compose.yml`) is valid.

use std::path::{Path, PathBuf};

use standby::config::{env_var, Config, KEYS};

fn repo_file(relative: &str) -> (PathBuf, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    (path, text)
}

#[test]
fn the_compose_config_is_valid() {
    let (path, text) = repo_file("config/compose.toml");
    let config = Config::from_parts(&path, &text, std::iter::empty())
        .unwrap_or_else(|e| panic!("config/compose.toml: {e}"));
    // gRPC: the compose file leaves AtomPub off, as the server's default.
    assert_eq!(config.primary.url, "kurrentdb://primary:2113");
    assert_eq!(config.secondary.url, "kurrentdb://secondary:2113");
    assert_eq!(config.primary.username.as_deref(), Some("admin"));
    // The replication user is not the admin: promotion must be able to fence it.
    assert_eq!(config.secondary.username.as_deref(), Some("replicator"));
    let admin = config
        .secondary
        .admin
        .as_ref()
        .expect("config/compose.toml has [secondary.admin]");
    assert_eq!(admin.username, "admin");
    assert!(config
        .checkpoint
        .path
        .starts_with(Path::new("/var/lib/standby")));
}

#[test]
fn the_configuration_reference_names_every_key_and_variable() {
    let (_, doc) = repo_file("docs/configuration.md");
    let mut missing = Vec::new();
    for (key, _) in KEYS {
        if !doc.contains(&format!("`{key}`")) {
            missing.push(format!("key `{key}`"));
        }
        let var = env_var(key);
        if !doc.contains(&format!("`{var}`")) {
            missing.push(format!("environment variable `{var}` (of {key})"));
        }
    }
    for var in ["STANDBY_CONFIG", "STANDBY_LOG", "STANDBY_LOG_FORMAT"] {
        if !doc.contains(&format!("`{var}`")) {
            missing.push(format!("environment variable `{var}`"));
        }
    }
    for section in ["[secondary.admin]", "[promotion]"] {
        if !doc.contains(section) {
            missing.push(format!("section {section}"));
        }
    }
    assert!(
        missing.is_empty(),
        "docs/configuration.md does not document: {}",
        missing.join(", ")
    );
}

#[test]
fn the_local_dev_node_config_of_the_readme_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/local.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let config = standby::config::Config::from_parts(&path, &text, std::iter::empty())
        .expect("config/local.toml is valid");
    assert!(config.metrics.listen.is_some(), "the README reads /metrics");
    let readme =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .unwrap();
    for url in [&config.primary.url, &config.secondary.url] {
        let port = url
            .rsplit(':')
            .next()
            .unwrap()
            .split(['?', '/'])
            .next()
            .unwrap();
        assert!(
            readme.contains(&format!("127.0.0.1:{port}")),
            "README starts a node on {url}"
        );
    }
}

#[test]
fn the_grpc_client_reference_names_every_connection_string_option() {
    let (_, doc) = repo_file("docs/grpc-client.md");
    let missing: Vec<&str> = standby::esdb::grpc::settings::KEYS
        .iter()
        .map(|(_, name)| *name)
        .filter(|name| !doc.contains(&format!("`{name}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/grpc-client.md does not document {missing:?}"
    );
}
