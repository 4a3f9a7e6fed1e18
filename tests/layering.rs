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

/// The top-level modules of the library (`src/NAME.rs` or `src/NAME/`), without lib.rs and
/// main.rs.
fn top_modules(src: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let name = p.file_stem()?.to_string_lossy().to_string();
            let ok = p.is_dir() || p.extension().is_some_and(|x| x == "rs");
            (ok && name != "lib" && name != "main").then_some(name)
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

/// `from -> to` edges with one place each: `crate::to` named in non-test code of `from`.
fn module_edges(src: &Path) -> std::collections::BTreeMap<(String, String), String> {
    let mods = top_modules(src);
    let mut edges = std::collections::BTreeMap::new();
    for m in &mods {
        let mut files = Vec::new();
        let file = src.join(format!("{m}.rs"));
        if file.exists() {
            files.push(file);
        }
        if src.join(m).is_dir() {
            files.extend(rust_files(&src.join(m)));
        }
        for f in files {
            for (n, l) in code_lines(&f) {
                for (i, _) in l.match_indices("crate::") {
                    let rest = &l[i + "crate::".len()..];
                    let to: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if to != *m && mods.contains(&to) {
                        edges
                            .entry((m.clone(), to))
                            .or_insert_with(|| format!("{}:{n}", f.display()));
                    }
                }
            }
        }
    }
    edges
}

#[test]
fn no_import_circles_between_top_level_modules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = module_edges(&src);
    let next = |m: &str| -> Vec<String> {
        edges
            .keys()
            .filter(|(a, _)| a == m)
            .map(|(_, b)| b.clone())
            .collect()
    };
    // A cycle through edge a -> b exists iff a is reachable from b.
    let mut circles = Vec::new();
    for ((a, b), place) in &edges {
        let mut seen = std::collections::BTreeSet::new();
        let mut stack = vec![b.clone()];
        while let Some(x) = stack.pop() {
            if seen.insert(x.clone()) {
                stack.extend(next(&x));
            }
        }
        if seen.contains(a) {
            circles.push(format!("{a} -> {b} ({place}) and back"));
        }
    }
    assert!(
        circles.is_empty(),
        "import circles between top-level modules:\n{}",
        circles.join("\n")
    );
    // The test sees the edges it must (a broken scan would pass vacuously).
    assert!(edges.contains_key(&("app".to_string(), "hub".to_string())));
    assert!(edges.contains_key(&("switchboard".to_string(), "hub".to_string())));
}

#[test]
fn only_app_wires_the_gateway() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let into_app: Vec<String> = module_edges(&src)
        .into_iter()
        .filter(|((_, to), _)| to == "app")
        .map(|((from, _), place)| format!("{from} ({place})"))
        .collect();
    assert!(
        into_app.is_empty(),
        "modules reaching into app (take a narrow handle instead): {into_app:?}"
    );
}

#[test]
fn the_media_engine_does_not_reach_into_signaling_the_hub_or_the_gateway() {
    let bad = violations(
        "src/media",
        &[
            "crate::signaling",
            "crate::app",
            "crate::server",
            "crate::hub",
            "tokio::spawn",
        ],
    );
    assert!(
        bad.is_empty(),
        "the media engine reaches out:\n{}",
        bad.join("\n")
    );
}
