//! Relative paths in a configuration file resolve against the file's directory (issue 13:
//! `radiogate token --config /etc/x.toml` run from elsewhere created `./radiogate-state`
//! where it was run). The embedded default (no `--config`) keeps resolving against the
//! working directory.

use super::Config;
use crate::radio::config::{AudioConfig, AudioKind, LineConfig, PttConfig};
use std::path::{Path, PathBuf};

/// `p` made absolute against `base` when it is relative and not empty.
fn join(base: &Path, p: &mut PathBuf) {
    if !p.as_os_str().is_empty() && p.is_relative() {
        *p = base.join(p.strip_prefix(".").unwrap_or(p));
    }
}

/// Like [`join`] for path keys held as strings (device nodes, WAV files).
fn join_str(base: &Path, p: &mut String) {
    let path = Path::new(p.as_str());
    if !p.is_empty() && path.is_relative() {
        *p = base
            .join(path.strip_prefix(".").unwrap_or(path))
            .to_string_lossy()
            .into_owned();
    }
}

fn line(base: &Path, l: &mut LineConfig) {
    join_str(base, &mut l.device);
}

fn ptt(base: &Path, p: &mut PttConfig) {
    join_str(base, &mut p.device);
}

fn audio(base: &Path, a: &mut AudioConfig) {
    // Sound card names (`plughw:CARD=...`, `default`) are not paths; WAV files are.
    if a.kind == AudioKind::Wav {
        join_str(base, &mut a.capture);
        join_str(base, &mut a.playback);
    }
}

impl Config {
    /// The configuration a command line names: the file given with `--config`, else the
    /// embedded default.
    ///
    /// # Errors
    /// The file's [`super::ConfigError`], prefixed with its path, as a sentence.
    pub fn for_command(file: Option<&Path>) -> Result<Self, String> {
        match file {
            Some(p) => Self::load(p).map_err(|e| format!("{}: {e}", p.display())),
            None => Self::embedded().map_err(|e| e.to_string()),
        }
    }

    /// The state database, for commands that never create state (`permissions`, `bans`):
    /// a wrong `--config` (or none, from another directory) must not silently start an empty
    /// database elsewhere (issue 13).
    ///
    /// # Errors
    /// When there is no database where this configuration points: names the path and what to
    /// do ([`Config::first_run_hint`]).
    pub fn existing_database(&self) -> Result<std::path::PathBuf, String> {
        let db = self.state.dir.join("radiogate.db");
        if db.exists() {
            Ok(db)
        } else {
            Err(format!(
                "no database at {}: {}",
                db.display(),
                self.first_run_hint(false)
            ))
        }
    }

    /// What to do when a command that never creates state finds none where this configuration
    /// points: start the gateway once with it (that creates the state), or, for the token
    /// secret (`secret`), set `auth.secret`.
    pub fn first_run_hint(&self, secret: bool) -> String {
        let run = match &self.file {
            Some(f) => format!("run `radiogate run --config {}` once first", f.display()),
            None => {
                "run `radiogate run` once first in this directory, or pass --config FILE".into()
            }
        };
        if secret {
            format!("{run}, or set auth.secret")
        } else {
            run
        }
    }

    /// Makes every relative path key absolute against `base` (the configuration file's
    /// directory): `state.dir`, `server.tls_cert_file`, `server.tls_key_file`,
    /// `auth.public_key_file`, `auth.private_key_file`, `redis.ca_file`, and in each
    /// `[[radio]]`/`[[console]]` the PTT, squelch and button `device` and the WAV `capture` and
    /// `playback` files. Empty values stay empty.
    pub fn resolve_paths(&mut self, base: &Path) {
        join(base, &mut self.state.dir);
        join(base, &mut self.recording.dir);
        join(base, &mut self.server.tls_cert_file);
        join(base, &mut self.server.tls_key_file);
        join(base, &mut self.auth.public_key_file);
        join(base, &mut self.auth.private_key_file);
        join(base, &mut self.redis.ca_file);
        for r in &mut self.radio {
            ptt(base, &mut r.ptt);
            line(base, &mut r.squelch);
            audio(base, &mut r.audio);
        }
        for c in &mut self.console {
            line(base, &mut c.button);
            audio(base, &mut c.audio);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_keys_resolve_against_the_file_and_absolute_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("radiogate.toml");
        std::fs::write(
            &p,
            "[state]\ndir = \"state\"\n[server]\ntls = \"files\"\ntls_cert_file = \"c.pem\"\n\
             tls_key_file = \"/etc/k.pem\"\n[redis]\nurl = \"rediss://h\"\nca_file = \"ca.pem\"\n\
             [[radio]]\nname = \"r\"\nuser_id = \"u\"\ndisplay_name = \"R\"\nevent = \"e\"\n\
             channel = \"c\"\n[radio.ptt]\ntype = \"serial\"\ndevice = \"/dev/ttyUSB0\"\n\
             line = \"RTS\"\n[radio.audio]\ntype = \"wav\"\ncapture = \"in.wav\"\n",
        )
        .unwrap();
        let cfg = Config::load(&p).unwrap();
        assert_eq!(cfg.state.dir, dir.path().join("state"));
        assert_eq!(cfg.server.tls_cert_file, dir.path().join("c.pem"));
        assert_eq!(cfg.server.tls_key_file, PathBuf::from("/etc/k.pem"));
        assert_eq!(cfg.redis.ca_file, dir.path().join("ca.pem"));
        assert_eq!(cfg.radio[0].ptt.device, "/dev/ttyUSB0");
        assert_eq!(
            PathBuf::from(&cfg.radio[0].audio.capture),
            dir.path().join("in.wav")
        );
        assert!(cfg.auth.public_key_file.as_os_str().is_empty());
        // The embedded default stays relative to the working directory.
        assert_eq!(
            Config::embedded().unwrap().state.dir,
            PathBuf::from("./radiogate-state")
        );
    }
}
