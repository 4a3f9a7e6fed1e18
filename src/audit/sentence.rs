//! Audit entries as sentences for the admin panel (issue 13: "audit details read as
//! sentences"), e.g. `ana (DISPATCH) released the floor on ops after 12.5 s.`
//!
//! Pure: built from the stored row only. Values from outside (ids, reasons) are put in as
//! they are; the panel renders text, never HTML.

use super::AuditRow;
use serde_json::Value;

fn s<'a>(d: &'a Value, k: &str) -> Option<&'a str> {
    d.get(k).and_then(Value::as_str).filter(|v| !v.is_empty())
}

fn n(d: &Value, k: &str) -> Option<u64> {
    d.get(k).and_then(Value::as_u64)
}

fn list(d: &Value, k: &str) -> Vec<String> {
    d.get(k)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// A duration in ms as people say it: `850 ms`, `12.5 s`, `3 min 20 s`, `2 h 5 min`.
pub fn duration(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => {
            let tenths = ms / 100;
            if tenths.is_multiple_of(10) {
                format!("{} s", tenths / 10)
            } else {
                format!("{}.{} s", tenths / 10, tenths % 10)
            }
        }
        60_000..3_600_000 => format!("{} min {} s", ms / 60_000, ms % 60_000 / 1_000),
        _ => format!("{} h {} min", ms / 3_600_000, ms % 3_600_000 / 60_000),
    }
}

fn connections(k: u64) -> String {
    format!("{k} connection{}", if k == 1 { "" } else { "s" })
}

/// The row as one sentence ending in a full stop.
pub fn sentence(row: &AuditRow) -> String {
    let d = &row.details;
    let who = if row.role.is_empty() {
        row.actor.clone()
    } else {
        format!("{} ({})", row.actor, row.role)
    };
    let t = row.target.as_str();
    let after = n(d, "durationMs")
        .map(|ms| format!(" after {}", duration(ms)))
        .unwrap_or_default();
    let reason = |k| s(d, k).map(|r| format!(": {r}")).unwrap_or_default();
    let text = match row.action.as_str() {
        "AUTH_SUCCESS" => format!(
            "{who} signed in{}{}",
            s(d, "remote")
                .map(|r| format!(" from {r}"))
                .unwrap_or_default(),
            s(d, "device")
                .map(|r| format!(" (device {r})"))
                .unwrap_or_default()
        ),
        "AUTH_FAILURE" => format!(
            "Sign-in from {} refused{}{}",
            row.actor,
            reason("reason"),
            n(d, "delaySecs")
                .filter(|s| *s > 0)
                .map(|s| format!("; next attempt from there waits {s} s"))
                .unwrap_or_default()
        ),
        "CONNECT" => format!(
            "{who} connected{}{}",
            s(d, "remote")
                .map(|r| format!(" from {r}"))
                .unwrap_or_default(),
            n(d, "connId")
                .map(|c| format!(" (connection {c})"))
                .unwrap_or_default()
        ),
        "DISCONNECT" => format!(
            "{who} disconnected{}{}",
            n(d, "connId")
                .map(|c| format!(" (connection {c}"))
                .map(|c| match n(d, "code") {
                    Some(code) => format!("{c}, close code {code})"),
                    None => format!("{c})"),
                })
                .unwrap_or_default(),
            reason("reason")
        ),
        "CHANNEL_JOIN" => format!("{who} joined {t}"),
        "CHANNEL_LEAVE" => format!("{who} left {t}"),
        "CHANNEL_JOIN_DENIED" => format!("{who} was refused channel {t} ({})", row.outcome),
        "FLOOR_GRANTED" => format!("{who} was granted the floor on {t}"),
        "FLOOR_DENIED" => format!(
            "{who} was denied the floor on {t}{}",
            s(d, "holder")
                .map(|h| format!(": {h} was talking"))
                .unwrap_or_default()
        ),
        "FLOOR_RELEASED" => format!("{who} released the floor on {t}{after}"),
        "FLOOR_REVOKED" | "FLOOR_PREEMPTED" => format!(
            "{who} lost the floor on {t}{after}{}",
            s(d, "message")
                .map(|m| format!(": {m}"))
                .unwrap_or_else(|| format!(" ({})", row.outcome))
        ),
        "BROADCAST_START" => match row.outcome.as_str() {
            "ok" => {
                let chs = list(d, "channels");
                format!(
                    "{who} started an emergency broadcast on {}",
                    if chs.is_empty() {
                        "every channel of the event".to_string()
                    } else {
                        chs.join(", ")
                    }
                )
            }
            "hold_too_short" => format!(
                "{who}'s emergency broadcast was refused: the button was held {} (too short)",
                duration(n(d, "heldMs").unwrap_or(0))
            ),
            "broadcast_active" => format!(
                "{who}'s emergency broadcast was refused: {} is already broadcasting",
                s(d, "by").unwrap_or("someone")
            ),
            o => format!("{who}'s emergency broadcast was refused ({o})"),
        },
        "BROADCAST_STOP" => format!("{who}'s emergency broadcast ended ({}){after}", row.outcome),
        "PERMISSION_DENIED" => format!("{who} was refused {t}: not allowed for this role"),
        "PERMISSION_CHANGE" => {
            let whose = if t.is_empty() {
                who.clone()
            } else {
                t.to_string()
            };
            let (mut added, mut removed) = (list(d, "added"), list(d, "removed"));
            if added.is_empty() && removed.is_empty() {
                let (before, now) = (list(d, "before"), list(d, "after"));
                added = now
                    .iter()
                    .filter(|c| !before.contains(c))
                    .cloned()
                    .collect();
                removed = before
                    .iter()
                    .filter(|c| !now.contains(c))
                    .cloned()
                    .collect();
            }
            let mut parts = Vec::new();
            if !added.is_empty() {
                parts.push(format!("added {}", added.join(", ")));
            }
            if !removed.is_empty() {
                parts.push(format!("removed {}", removed.join(", ")));
            }
            let pending = list(d, "pending");
            if !pending.is_empty() {
                parts.push(format!(
                    "{} kept until the floor is released",
                    pending.join(", ")
                ));
            }
            if parts.is_empty() {
                format!("Channels of {whose} were re-read (no change)")
            } else {
                format!("Channels of {whose} changed: {}", parts.join("; "))
            }
        }
        "BAN" => format!(
            "{who} banned {t}{}{}",
            reason("reason"),
            n(d, "disconnected")
                .filter(|k| *k > 0)
                .map(|k| format!(" ({} closed)", connections(k)))
                .unwrap_or_default()
        ),
        "UNBAN" if row.outcome == "not_banned" => {
            format!("{who} lifted a ban on {t}, who was not banned")
        }
        "UNBAN" => format!("{who} lifted the ban on {t}"),
        "FORCE_DISCONNECT" => format!(
            "{who} disconnected {t}{}{}",
            n(d, "connections")
                .map(|k| format!(" ({})", connections(k)))
                .unwrap_or_default(),
            reason("reason")
        ),
        "RATE_LIMITED" => format!(
            "{who} was rate limited{} ({})",
            if t.is_empty() {
                String::new()
            } else {
                format!(" on {t}")
            },
            row.outcome.replace('_', " ")
        ),
        "TOKEN_ISSUED" => format!(
            "{who} issued a {} link for {t}{} on {}, valid {}",
            s(d, "role").unwrap_or("?"),
            s(d, "name")
                .filter(|nm| *nm != t)
                .map(|nm| format!(" ({nm})"))
                .unwrap_or_default(),
            list(d, "channels").join(", "),
            duration(n(d, "ttlSecs").unwrap_or(0).saturating_mul(1000))
        ),
        "RECORDING_DELETED" => format!(
            "{who} deleted recording {t}{}",
            if list(d, "channels").is_empty() {
                String::new()
            } else {
                format!(" of {}", list(d, "channels").join(", "))
            }
        ),
        "TOKEN_RENEWED" => format!(
            "{who} renewed its access link for {}",
            duration(n(d, "ttlSecs").unwrap_or(0).saturating_mul(1000))
        ),
        other => format!(
            "{who}: {other}{}{}",
            if t.is_empty() {
                String::new()
            } else {
                format!(" {t}")
            },
            if row.outcome == "ok" {
                String::new()
            } else {
                format!(" ({})", row.outcome)
            }
        ),
    };
    format!("{text}.")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(action: &str, target: &str, outcome: &str, details: Value) -> AuditRow {
        AuditRow {
            id: 1,
            ts_ms: 0,
            actor: "ana".into(),
            role: "DISPATCH".into(),
            event: "ev".into(),
            action: action.into(),
            target: target.into(),
            outcome: outcome.into(),
            details,
            text: String::new(),
        }
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(duration(850), "850 ms");
        assert_eq!(duration(12_500), "12.5 s");
        assert_eq!(duration(4_000), "4 s");
        assert_eq!(duration(200_000), "3 min 20 s");
        assert_eq!(duration(7_500_000), "2 h 5 min");
    }

    #[test]
    fn every_action_reads_as_a_sentence() {
        let cases = [
            (
                row("FLOOR_RELEASED", "ops", "ok", json!({"durationMs": 12_500})),
                "ana (DISPATCH) released the floor on ops after 12.5 s.",
            ),
            (
                row(
                    "FLOOR_REVOKED",
                    "ops",
                    "MEDIA_TIMEOUT",
                    json!({"durationMs": 4_000, "message": "no audio"}),
                ),
                "ana (DISPATCH) lost the floor on ops after 4 s: no audio.",
            ),
            (
                row(
                    "FORCE_DISCONNECT",
                    "ben",
                    "ok",
                    json!({"reason": "Shift is over", "connections": 2}),
                ),
                "ana (DISPATCH) disconnected ben (2 connections): Shift is over.",
            ),
            (
                row(
                    "PERMISSION_CHANGE",
                    "ben",
                    "ok",
                    json!({"before": ["a"], "after": ["a", "b"]}),
                ),
                "Channels of ben changed: added b.",
            ),
            (
                row(
                    "TOKEN_ISSUED",
                    "late",
                    "ok",
                    json!({"role": "GENERAL", "name": "Late Arrival", "channels": ["ops", "gate"], "ttlSecs": 28_800}),
                ),
                "ana (DISPATCH) issued a GENERAL link for late (Late Arrival) on ops, gate, valid 8 h 0 min.",
            ),
            (
                row(
                    "BROADCAST_START",
                    "",
                    "hold_too_short",
                    json!({"heldMs": 800}),
                ),
                "ana (DISPATCH)'s emergency broadcast was refused: the button was held 800 ms (too short).",
            ),
        ];
        for (r, want) in cases {
            assert_eq!(sentence(&r), want);
        }
        for a in crate::audit::Action::ALL {
            let text = sentence(&row(&a.name(), "x", "ok", json!({})));
            assert!(
                text.ends_with('.') && !text.contains(&a.name()),
                "{a:?} has its own sentence: {text}"
            );
        }
    }
}
