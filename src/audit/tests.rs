use super::*;
use std::time::Duration;

#[test]
fn entries_are_written_and_filtered() {
    let dir = tempfile::tempdir().unwrap();
    let audit = Audit::open(&dir.path().join("a.db"), 1000).unwrap();
    for a in Action::ALL {
        audit.record(Entry::new("u1", a).who("GENERAL", "ev1").target("c1"));
    }
    audit.record(
        Entry::new("admin", Action::Ban)
            .target("u2")
            .details(serde_json::json!({"reason": "spam"})),
    );
    assert!(audit.flush(Duration::from_secs(5)));
    let all = audit
        .query(&AuditQuery {
            limit: Some(1000),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(all.len(), Action::ALL.len() + 1);
    let bans = audit
        .query(&AuditQuery {
            action: Some("BAN".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(bans.len(), 2);
    assert_eq!(bans[0].details["reason"], "spam", "newest first");
    let u2 = audit
        .query(&AuditQuery {
            user_id: Some("u2".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(u2.len(), 1, "target matches the user filter");
    let none = audit
        .query(&AuditQuery {
            since_ms: Some(u64::MAX / 2),
            ..Default::default()
        })
        .unwrap();
    assert!(none.is_empty());
    let two = audit
        .query(&AuditQuery {
            limit: Some(2),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(two.len(), 2);
    assert!(two[0].id > two[1].id, "newest first");
}

#[test]
fn retention_keeps_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let audit = Audit::open(&dir.path().join("a.db"), 10).unwrap();
    for i in 0..25 {
        audit.record(Entry::new(format!("u{i}"), Action::Connect));
        assert!(audit.flush(Duration::from_secs(5)));
    }
    let rows = audit.query(&AuditQuery::default()).unwrap();
    assert_eq!(rows.len(), 10);
    assert_eq!(rows[0].actor, "u24");
}

#[test]
fn a_full_queue_drops_and_counts_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let audit = Audit::open(&path, 1_000_000).unwrap();
    // Stall the writer: another connection holds the database's write lock.
    let blocker = rusqlite::Connection::open(&path).unwrap();
    blocker.execute_batch("BEGIN EXCLUSIVE;").unwrap();
    let n = QUEUE_CAPACITY * 2;
    for _ in 0..n {
        audit.record(Entry::new("flood", Action::FloorDenied));
    }
    // At most the queue plus one batch in the writer's hands were accepted.
    let dropped = audit.dropped();
    assert!(
        dropped >= (QUEUE_CAPACITY - 256) as u64,
        "dropped {dropped}"
    );
    blocker.execute_batch("COMMIT;").unwrap();
    assert!(audit.flush(Duration::from_secs(20)));
    audit.record(Entry::new("after", Action::Connect));
    assert!(audit.flush(Duration::from_secs(5)));
    let rows = audit
        .query(&AuditQuery {
            user_id: Some("after".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(rows.len(), 1, "the log works again once the lock is gone");
}

/// A write that fails (here: a trigger that refuses inserts, standing in for a full card) keeps
/// the entries in memory, counts the failure, and writes them once the database accepts writes
/// again.
#[test]
fn failed_writes_are_kept_counted_and_retried() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let audit = Audit::open(&path, 1000).unwrap();
    let other = crate::state::open_connection(&path).unwrap();
    other
        .execute_batch(
            "CREATE TRIGGER refuse BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
        )
        .unwrap();
    audit.record(Entry::new("u1", Action::Connect));
    audit.record(Entry::new("u1", Action::ChannelJoin));
    assert!(audit.flush(Duration::from_secs(5)));
    let s = audit.write_health().status();
    assert!(s.failing, "{s:?}");
    assert!(s.failed_writes >= 1, "{s:?}");
    assert_eq!(s.pending, 2, "{s:?}");
    assert!(s.last_error.unwrap().contains("disk is full"));
    assert!(audit.query(&AuditQuery::default()).unwrap().is_empty());

    other.execute_batch("DROP TRIGGER refuse;").unwrap();
    audit.record(Entry::new("u1", Action::FloorGranted));
    let limit = crate::state::write_health::RETRY_INTERVAL * 3;
    assert!(audit.write_health().wait_resumed(limit), "no retry");
    assert!(audit.flush(Duration::from_secs(5)));
    let rows = audit.query(&AuditQuery::default()).unwrap();
    let names: Vec<&str> = rows.iter().rev().map(|r| r.action.as_str()).collect();
    assert_eq!(
        names,
        ["CONNECT", "CHANNEL_JOIN", "FLOOR_GRANTED"],
        "in order"
    );
    let s = audit.write_health().status();
    assert_eq!((s.pending, s.failing), (0, false), "{s:?}");
}
