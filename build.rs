//! Sets `RADIOGATE_GIT_REV` for `radiogate --version`: the short git revision of the source
//! tree, or, without a git checkout (a
//! release tarball), the `RADIOGATE_GIT_REV` environment variable at build time, else
//! `unknown`.
//!
//! Sets `RADIOGATE_BUILD_UNIX`, seconds since 1970: a time the wall clock cannot be before
//! when the binary runs (the gateway warns at start otherwise). `SOURCE_DATE_EPOCH` when set
//! (reproducible builds), else the commit time of HEAD, else the time of the build.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8(out.stdout).ok()?.trim().to_string())
}

/// Declares the files whose change means HEAD moved: HEAD itself, packed-refs, and the
/// directory holding the branch's loose ref (a commit rewrites or creates a file there).
/// Only paths that exist are declared: cargo reruns a build script on every build when a
/// declared path is missing, which recompiled the crate and relinked every test binary on
/// each `cargo build` (issue 17).
fn declare_ref_paths() {
    let mut paths = Vec::new();
    for p in ["HEAD", "packed-refs"] {
        paths.extend(git(&["rev-parse", "--git-path", p]));
    }
    if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
        if let Some(path) = git(&["rev-parse", "--git-path", &r]) {
            paths.extend(Path::new(&path).parent().map(|d| d.display().to_string()));
            paths.push(path);
        }
    }
    for p in paths {
        if Path::new(&p).exists() {
            println!("cargo:rerun-if-changed={p}");
        }
    }
}

fn main() {
    println!("cargo:rerun-if-env-changed=RADIOGATE_GIT_REV");
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    // Only this tree's own repository counts (a tarball unpacked inside another repository
    // must not report that repository's revision).
    let toplevel = git(&["rev-parse", "--show-toplevel"]);
    let ours = toplevel.as_deref().is_some_and(|t| {
        Path::new(t).canonicalize().ok() == Path::new(&manifest).canonicalize().ok()
    });
    let rev = if ours {
        git(&["rev-parse", "--short=12", "HEAD"]).inspect(|_| declare_ref_paths())
    } else {
        None
    };
    let rev = rev
        .or_else(|| {
            std::env::var("RADIOGATE_GIT_REV")
                .ok()
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=RADIOGATE_GIT_REV={rev}");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let built = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .or_else(|| {
            ours.then(|| git(&["log", "-1", "--format=%ct"]))
                .flatten()
                .and_then(|s| s.parse().ok())
        })
        .or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok()
                .map(|d| d.as_secs())
        })
        .unwrap_or(0);
    println!("cargo:rustc-env=RADIOGATE_BUILD_UNIX={built}");
}
