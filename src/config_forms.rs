//! Lenient value forms for the configuration file: durations as a number in the key's unit or
//! a `"60s"`/`"8h"`/`"500ms"` string (humantime syntax), and `listen` as `HOST:PORT` with a
//! host name resolved at load.
//!
//! The key names keep their unit suffix (`_ms`, `_secs`) and a bare number keeps its meaning,
//! so every existing file reads the same (issue 13: `"60s"` was refused with "expected u64").

use serde::de::{Deserializer, Error, Visitor};
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// A duration in the key's `unit`: an integer as is, or a humantime string converted.
struct UnitVisitor {
    /// Length of one unit of the key (1 ms for `_ms` keys, 1 s for `_secs` keys).
    unit: Duration,
}

impl Visitor<'_> for UnitVisitor {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let unit = if self.unit == Duration::from_secs(1) {
            "seconds"
        } else {
            "milliseconds"
        };
        write!(
            f,
            "a whole number of {unit} or a duration such as \"500ms\", \"60s\", \"8h\""
        )
    }

    fn visit_u64<E: Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }

    fn visit_i64<E: Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::custom(format!("must not be negative (got {v})")))
    }

    fn visit_str<E: Error>(self, v: &str) -> Result<u64, E> {
        let d = humantime::parse_duration(v.trim())
            .map_err(|e| E::custom(format!("{v:?} is not a duration: {e}")))?;
        let units = d.as_nanos() / self.unit.as_nanos();
        if units * self.unit.as_nanos() != d.as_nanos() {
            return Err(E::custom(format!(
                "{v:?} is not a whole number of {}",
                if self.unit == Duration::from_secs(1) {
                    "seconds"
                } else {
                    "milliseconds"
                }
            )));
        }
        u64::try_from(units).map_err(|_| E::custom(format!("{v:?} is too long")))
    }
}

fn in_unit<'de, D: Deserializer<'de>, T: TryFrom<u64>>(
    d: D,
    unit: Duration,
) -> Result<T, D::Error> {
    let v = d.deserialize_any(UnitVisitor { unit })?;
    T::try_from(v).map_err(|_| D::Error::custom(format!("{v} is too large for this key")))
}

/// `deserialize_with` for `_ms` keys: milliseconds, or a duration string.
///
/// # Errors
/// Not a non-negative integer or a humantime duration, or not a whole number of milliseconds.
pub fn ms<'de, D: Deserializer<'de>, T: TryFrom<u64>>(d: D) -> Result<T, D::Error> {
    in_unit(d, Duration::from_millis(1))
}

/// `deserialize_with` for `_secs` keys: seconds, or a duration string.
///
/// # Errors
/// Not a non-negative integer or a humantime duration, or not a whole number of seconds.
pub fn secs<'de, D: Deserializer<'de>, T: TryFrom<u64>>(d: D) -> Result<T, D::Error> {
    in_unit(d, Duration::from_secs(1))
}

/// `deserialize_with` for `server.listen`: `IP:PORT`, or `HOST:PORT` resolved now (the first
/// address the resolver returns, IPv4 preferred).
///
/// # Errors
/// Not `HOST:PORT`, or the host name does not resolve.
pub fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let s: String = serde::Deserialize::deserialize(d)?;
    resolve(&s).map_err(D::Error::custom)
}

/// `IP:PORT` as is, or `HOST:PORT` resolved (IPv4 preferred).
///
/// # Errors
/// A sentence naming the value when it is not `HOST:PORT` or does not resolve.
pub fn resolve(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if s.rsplit_once(':')
        .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
    {
        return Err(format!(
            "{s:?} is not HOST:PORT (e.g. \"0.0.0.0:8080\" or \"localhost:8080\")"
        ));
    }
    let addrs: Vec<SocketAddr> = s
        .to_socket_addrs()
        .map_err(|e| format!("{s:?} does not resolve: {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("{s:?} resolves to no address"))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    struct T {
        #[serde(deserialize_with = "super::ms")]
        a_ms: u64,
        #[serde(deserialize_with = "super::secs")]
        b_secs: u32,
        #[serde(deserialize_with = "super::socket_addr")]
        listen: std::net::SocketAddr,
    }

    fn parse(text: &str) -> Result<T, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn numbers_keep_their_unit_and_strings_are_converted() {
        let t = parse("a_ms = 60000\nb_secs = 900\nlisten = \"127.0.0.1:1\"").unwrap();
        assert_eq!((t.a_ms, t.b_secs), (60_000, 900));
        let t = parse("a_ms = \"60s\"\nb_secs = \"15m\"\nlisten = \"127.0.0.1:1\"").unwrap();
        assert_eq!((t.a_ms, t.b_secs), (60_000, 900));
        let t = parse("a_ms = \"500ms\"\nb_secs = \"8h\"\nlisten = \"127.0.0.1:1\"").unwrap();
        assert_eq!((t.a_ms, t.b_secs), (500, 28_800));
    }

    #[test]
    fn bad_durations_are_named() {
        let e = parse("a_ms = \"soon\"\nb_secs = 1\nlisten = \"127.0.0.1:1\"").unwrap_err();
        assert!(e.contains("a_ms") && e.contains("not a duration"), "{e}");
        let e = parse("a_ms = 1\nb_secs = \"500ms\"\nlisten = \"127.0.0.1:1\"").unwrap_err();
        assert!(
            e.contains("b_secs") && e.contains("whole number of seconds"),
            "{e}"
        );
        let e = parse("a_ms = -1\nb_secs = 1\nlisten = \"127.0.0.1:1\"").unwrap_err();
        assert!(e.contains("negative"), "{e}");
        let e = parse("a_ms = 1\nb_secs = 5000000000\nlisten = \"127.0.0.1:1\"").unwrap_err();
        assert!(e.contains("too large"), "{e}");
    }

    #[test]
    fn listen_takes_a_host_name() {
        let t = parse("a_ms = 1\nb_secs = 1\nlisten = \"localhost:8080\"").unwrap();
        assert!(t.listen.ip().is_loopback());
        assert_eq!(t.listen.port(), 8080);
        let e = parse("a_ms = 1\nb_secs = 1\nlisten = \"localhost\"").unwrap_err();
        assert!(e.contains("listen") && e.contains("HOST:PORT"), "{e}");
        let e = parse("a_ms = 1\nb_secs = 1\nlisten = \"no-such-host.invalid:80\"").unwrap_err();
        assert!(e.contains("does not resolve"), "{e}");
    }
}
