//! Sets `RADIOGATE_GIT_REV` for `radiogate --version`: the short git revision of the source
//! tree, or, without a git checkout (a
//! release tarball), the `RADIOGATE_GIT_REV` environment variable at build time, else
//! `unknown`.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8(out.stdout).ok()?.trim().to_string())
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
        git(&["rev-parse", "--short=12", "HEAD"]).inspect(|_| {
            // Rebuild when HEAD moves: HEAD itself, the branch it points to, packed refs.
            for p in ["HEAD", "packed-refs"] {
                if let Some(path) = git(&["rev-parse", "--git-path", p]) {
                    println!("cargo:rerun-if-changed={path}");
                }
            }
            if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
                if let Some(path) = git(&["rev-parse", "--git-path", &r]) {
                    println!("cargo:rerun-if-changed={path}");
                }
            }
        })
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
}
