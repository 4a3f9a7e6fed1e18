//! Layering: the pure cores stay pure, and the media path does not reach into signaling.
//! Scans `use` lines and clock reads in the source tree (issue 11: "a reviewer opening src/
//! sees from the tree which parts are pure").

// Test code: a failed unwrap is the failure report (Cargo.toml lints, clippy.toml).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Lines of non-test code in `path` (stops at the first `#[cfg(test)]` module body, and skips
/// files that are test modules).
fn code_lines(path: &Path) -> Vec<(usize, String)> {
    let name = path.file_name().unwrap().to_string_lossy();
    if name == "tests.rs" || name == "proptests.rs" {
        return Vec::new();
    }
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        if l.trim_start().starts_with("#[cfg(test)]")
            && text
                .lines()
                .nth(i + 1)
                .is_some_and(|n| n.contains("mod tests {"))
        {
            break;
        }
        let t = l.trim_start();
        if t.starts_with("//") {
            continue;
        }
        out.push((i + 1, l.to_string()));
    }
    out
}

fn violations(dir: &str, forbidden: &[&str]) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut bad = Vec::new();
    for f in rust_files(&root) {
        for (n, l) in code_lines(&f) {
            for word in forbidden {
                if l.contains(word) {
                    bad.push(format!("{}:{n}: `{word}` in: {}", f.display(), l.trim()));
                }
            }
        }
    }
    bad
}

/// What a pure core may not touch: runtimes, sockets, shells, the clock.
const IMPURE: &[&str] = &[
    "tokio",
    "axum",
    "webrtc",
    "rusqlite",
    "redis",
    "std::net::UdpSocket",
    "std::fs",
    "std::thread",
    "Instant::now",
    "SystemTime::now",
    "crate::app",
    "crate::server",
    "crate::signaling",
    "crate::sfu",
    "crate::permissions",
    "crate::radio",
    "crate::web",
    "crate::ops",
    "serde_json::to_string",
    "Mutex",
];

#[test]
fn the_hub_is_pure() {
    let bad = violations("src/hub", IMPURE);
    assert!(
        bad.is_empty(),
        "the pure hub reaches out:\n{}",
        bad.join("\n")
    );
}

#[test]
fn floor_control_is_pure() {
    let bad = violations("src/floor", IMPURE);
    assert!(
        bad.is_empty(),
        "floor control reaches out:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_media_path_does_not_reach_into_signaling_or_the_gateway() {
    let bad = violations(
        "src/sfu",
        &[
            "crate::signaling",
            "crate::app",
            "crate::server",
            "parking_lot::Mutex<Hub",
        ],
    );
    assert!(
        bad.is_empty(),
        "sfu imports the signaling side:\n{}",
        bad.join("\n")
    );
}
