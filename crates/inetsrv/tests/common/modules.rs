//! ISAPI modules for tests: C sources built with `cc` against `include/`
//! into a directory every pool identity may read, as an administrator
//! installs a module in /opt or /usr/lib.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A directory for modules that every user may read.
pub fn module_dir() -> tempfile::TempDir {
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
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o755)).unwrap();
    out
}

/// A test module of `crates/isapi/tests/c/NAME.c`, built into `dir`, by
/// its path as ScriptMaps names it.
pub fn test_module(dir: &Path, name: &str) -> String {
    let source = PathBuf::from(format!("crates/isapi/tests/c/{name}.c"));
    build(&source, dir, name).to_str().unwrap().to_string()
}

/// A server, prepared but not started, whose root maps `map` (`.ext`, or
/// `*` for a wildcard map) to the test module NAME, which the lockdown
/// list allows; with the module's directory (kept while it lives) and
/// path.
pub fn web_with_module(name: &str, map: &str) -> (tempfile::TempDir, String, super::web::Web) {
    let modules = module_dir();
    let module = test_module(modules.path(), name);
    let web = super::web::Web::prepare();
    web.cli_ok(&[
        "mb",
        "set",
        "W3SVC/1/ROOT/ScriptMaps",
        &format!("{map},{module},1"),
    ]);
    web.cli_ok(&["webext", "add-file", &module, "--enable"]);
    (modules, module, web)
}
