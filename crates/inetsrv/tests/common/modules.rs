//! ISAPI modules for tests: C sources built with `cc` against `include/`
//! into a private directory (0700, as an administrator's home), which the
//! service opens for the workers.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A directory for modules: only its owner may enter it.
pub fn module_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// A directory the pool's identity may reach by path, for files a module
/// opens by their names (PATH_TRANSLATED, a file of its own): the rights
/// an administrator grants the identity, as IIS needed NTFS rights for
/// it. Modules and content are handed over and need none of this.
pub fn shared_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Builds `source` (relative to the repository) into `dir/NAME.so`.
pub fn build(source: &Path, dir: &Path, name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = dir.join(format!("{name}.so"));
    let built = Command::new("cc")
        .args(["-shared", "-fPIC", "-Wall", "-Werror", "-pthread", "-I"])
        .arg(root.join("include"))
        .arg(root.join(source))
        .arg("-o")
        .arg(&out)
        .output()
        .expect("cc is installed");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    out
}

/// A Rust example module of the `isapi` crate (`examples/NAME.rs`, built
/// by `cargo test --workspace` with the other examples), copied into
/// `dir`; its path.
pub fn example_module(dir: &Path, name: &str) -> String {
    let built = Path::new(super::BIN)
        .parent()
        .unwrap()
        .join(format!("examples/lib{name}.so"));
    assert!(
        built.exists(),
        "{} is missing: run the suite with `cargo test --workspace` (or cargo build -p isapi --examples)",
        built.display()
    );
    let module = dir.join(format!("{name}.so"));
    std::fs::copy(&built, &module).unwrap();
    module.to_str().unwrap().to_string()
}

/// A test module of `crates/isapi/tests/c/NAME.c`, built into `dir`, by
/// its path as ScriptMaps names it.
pub fn test_module(dir: &Path, name: &str) -> String {
    let source = PathBuf::from(format!("crates/isapi/tests/c/{name}.c"));
    build(&source, dir, name).to_str().unwrap().to_string()
}

/// Maps `map` (`.ext`, or `*` for a wildcard map) at site 1's root to
/// `module` (ScriptMaps) and allows the module in the lockdown list, as an
/// administrator does.
pub fn map_module(web: &super::web::Web, map: &str, module: &str) {
    web.cli_ok(&[
        "mb",
        "set",
        "W3SVC/1/ROOT/ScriptMaps",
        &format!("{map},{module},1"),
    ]);
    web.cli_ok(&["webext", "add-file", module, "--enable"]);
}

/// Pings every second, answered within two: a hung worker is found fast.
pub fn fast_pings(web: &super::web::Web) {
    for (setting, value) in [("PingInterval", "1"), ("PingResponseTime", "2")] {
        web.cli_ok(&[
            "mb",
            "set",
            &format!("W3SVC/AppPools/DefaultAppPool/{setting}"),
            value,
        ]);
    }
}

/// A server, prepared but not started, whose root maps `map` (`.ext`, or
/// `*` for a wildcard map) to the test module NAME, which the lockdown
/// list allows; with the module's directory (kept while it lives) and
/// path.
pub fn web_with_module(name: &str, map: &str) -> (tempfile::TempDir, String, super::web::Web) {
    let modules = module_dir();
    let module = test_module(modules.path(), name);
    let web = super::web::Web::prepare();
    map_module(&web, map, &module);
    (modules, module, web)
}
