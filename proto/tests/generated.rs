//! The committed generated code matches `protos/` (only with `--features regen`).
//!
//! `PROTO_REGEN=1` rewrites `src/generated/` instead of comparing.
#![cfg(feature = "regen")]

use std::path::{Path, PathBuf};

fn generate(out: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fds = protox::compile(proto::PROTO_FILES, [root.join("protos")]).expect("protos compile");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .bytes(".")
        .extern_path(".event_store.client.Empty", "()")
        .out_dir(out)
        .compile_fds(fds)
        .expect("code generation");
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    names.sort();
    names
}

#[test]
fn committed_code_matches_the_protos() {
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/generated");
    let fresh = std::env::temp_dir().join(format!("proto-regen-{}", std::process::id()));
    std::fs::create_dir_all(&fresh).expect("temp dir");
    generate(&fresh);
    if std::env::var_os("PROTO_REGEN").is_some() {
        for old in files(&committed) {
            std::fs::remove_file(old).expect("remove stale file");
        }
        for new in files(&fresh) {
            std::fs::copy(&new, committed.join(new.file_name().expect("name"))).expect("copy");
        }
    } else {
        let names = |d: &Path| -> Vec<_> {
            files(d)
                .iter()
                .map(|p| p.file_name().unwrap().to_owned())
                .collect()
        };
        assert_eq!(
            names(&committed),
            names(&fresh),
            "generated file set changed: regenerate"
        );
        for new in files(&fresh) {
            let old = committed.join(new.file_name().expect("name"));
            assert!(
                std::fs::read(&old).ok() == std::fs::read(&new).ok(),
                "{} is stale: run PROTO_REGEN=1 cargo test -p proto --features regen --test generated",
                old.display()
            );
        }
    }
    std::fs::remove_dir_all(&fresh).ok();
}
