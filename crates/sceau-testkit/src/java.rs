//! Small Java programs the tests run (a CMP CA on Bouncy Castle, the acme4j STAR client):
//! each one Java file and a pom that names its Maven dependencies.
//!
//! Built on first use into a directory named after the sources' hash under the system's
//! temporary directory: Maven resolves the dependencies (the README's test command fetched
//! them beforehand), javac compiles; concurrent test processes each build into a scratch
//! directory and the first rename wins, so a half-built program is never used.

use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::process::Command;

use crate::require_tool;

/// A compiled program: its class directory and its dependencies' classpath.
pub struct Built {
    pub classes: PathBuf,
    pub classpath: String,
}

/// Builds `class`'s `source` (one file, `<class>.java`) with the dependencies of `pom`, under
/// `$TMPDIR/<name>/<hash>`.
pub fn build(name: &str, pom: &str, class: &str, source: &str) -> Built {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (pom, class, source).hash(&mut h);
    let root = std::env::temp_dir().join(name);
    let done = root.join(format!("{:016x}", h.finish()));
    if !done.join("classpath.txt").exists() {
        std::fs::create_dir_all(&root).expect("Java build directory");
        let scratch = tempfile::tempdir_in(&root).expect("scratch directory");
        let dir = scratch.path();
        let file = dir.join(format!("src/main/java/{class}.java"));
        std::fs::create_dir_all(dir.join("src/main/java")).unwrap();
        std::fs::write(dir.join("pom.xml"), pom).unwrap();
        std::fs::write(&file, source).unwrap();
        let out = Command::new(require_tool("mvn"))
            .args(["-q", "-B", "dependency:build-classpath"])
            .arg(format!("-Dmdep.outputFile={}", dir.join("cp").display()))
            .current_dir(dir)
            .output()
            .expect("run mvn");
        assert!(
            out.status.success(),
            "mvn could not resolve the dependencies of {class}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cp = std::fs::read_to_string(dir.join("cp")).expect("classpath written");
        let out = Command::new(require_tool("javac"))
            .args(["-cp", cp.trim(), "-d"])
            .arg(dir.join("classes"))
            .arg(&file)
            .output()
            .expect("run javac");
        assert!(
            out.status.success(),
            "javac {class}.java: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(dir.join("classpath.txt"), cp.trim()).unwrap();
        let kept = scratch.keep();
        // Another test process may have finished first: its build is as good as ours.
        if std::fs::rename(&kept, &done).is_err() {
            let _ = std::fs::remove_dir_all(&kept);
        }
    }
    let classpath = std::fs::read_to_string(done.join("classpath.txt")).expect("classpath");
    Built {
        classes: done.join("classes"),
        classpath,
    }
}
