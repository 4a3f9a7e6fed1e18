//! Serving a recording file over HTTP (`GET /recordings/ID.opus`, issue 14): `audio/ogg`,
//! whole or one byte range (RFC 9110 §14: `Range: bytes=A-B`, `bytes=A-`, `bytes=-N`) so that
//! players can seek. Authentication and the permission check are the caller's (server.rs).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::path::Path;

/// A `Range` header this server cannot satisfy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// Not `bytes=`, several ranges, or not numbers.
    #[error("unsupported range")]
    Unsupported,
    /// Starts at or beyond the end of the file.
    #[error("range not satisfiable")]
    Unsatisfiable,
}

/// The byte range `[start, end]` (inclusive) that `range` asks of a file of `len` bytes;
/// `Ok(None)` for no header (the whole file).
///
/// # Errors
/// [`RangeError::Unsupported`] for anything but one `bytes=` range,
/// [`RangeError::Unsatisfiable`] for a range starting beyond the file (or any range of an
/// empty file).
pub fn parse_range(range: Option<&str>, len: u64) -> Result<Option<(u64, u64)>, RangeError> {
    let Some(r) = range else {
        return Ok(None);
    };
    let spec = r
        .trim()
        .strip_prefix("bytes=")
        .ok_or(RangeError::Unsupported)?;
    if spec.contains(',') {
        return Err(RangeError::Unsupported);
    }
    let (a, b) = spec.split_once('-').ok_or(RangeError::Unsupported)?;
    let num = |s: &str| s.trim().parse::<u64>().map_err(|_| RangeError::Unsupported);
    let (start, end) = match (a.trim().is_empty(), b.trim().is_empty()) {
        (true, true) => return Err(RangeError::Unsupported),
        (true, false) => {
            let n = num(b)?;
            if n == 0 || len == 0 {
                return Err(RangeError::Unsatisfiable);
            }
            (len.saturating_sub(n), len - 1)
        }
        (false, true) => (num(a)?, len.saturating_sub(1)),
        (false, false) => {
            let (s, e) = (num(a)?, num(b)?);
            if e < s {
                return Err(RangeError::Unsupported);
            }
            (s, e.min(len.saturating_sub(1)))
        }
    };
    if start >= len {
        return Err(RangeError::Unsatisfiable);
    }
    Ok(Some((start, end)))
}

/// The file at `path` as `audio/ogg`, whole (200) or the part `range` asks for (206); 416 for
/// an unsatisfiable range, 404 when the file is gone (deleted by retention meanwhile).
pub async fn serve_file(path: &Path, range: Option<&str>) -> Response {
    let bytes = match tokio::fs::read(path).await {
        Ok(b) => b,
        Err(_) => return (StatusCode::NOT_FOUND, "no such recording\n").into_response(),
    };
    let len = bytes.len() as u64;
    let (status, body, content_range) = match parse_range(range, len) {
        Ok(None) => (StatusCode::OK, bytes, None),
        Ok(Some((s, e))) => (
            StatusCode::PARTIAL_CONTENT,
            bytes[s as usize..=e as usize].to_vec(),
            Some(format!("bytes {s}-{e}/{len}")),
        ),
        Err(RangeError::Unsatisfiable) => {
            let mut r = (StatusCode::RANGE_NOT_SATISFIABLE, "").into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
        Err(RangeError::Unsupported) => (StatusCode::OK, bytes, None),
    };
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("audio/ogg"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=300"),
    );
    if let Some(cr) = content_range.and_then(|c| HeaderValue::from_str(&c).ok()) {
        h.insert(header::CONTENT_RANGE, cr);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ranges() {
        assert_eq!(parse_range(None, 100), Ok(None));
        assert_eq!(parse_range(Some("bytes=0-9"), 100), Ok(Some((0, 9))));
        assert_eq!(parse_range(Some("bytes=90-"), 100), Ok(Some((90, 99))));
        assert_eq!(parse_range(Some("bytes=-10"), 100), Ok(Some((90, 99))));
        assert_eq!(parse_range(Some("bytes=-1000"), 100), Ok(Some((0, 99))));
        assert_eq!(parse_range(Some("bytes=50-1000"), 100), Ok(Some((50, 99))));
        assert_eq!(
            parse_range(Some("bytes=100-"), 100),
            Err(RangeError::Unsatisfiable)
        );
        assert_eq!(
            parse_range(Some("bytes=0-1,5-6"), 100),
            Err(RangeError::Unsupported)
        );
        assert_eq!(
            parse_range(Some("items=0-1"), 100),
            Err(RangeError::Unsupported)
        );
        assert_eq!(
            parse_range(Some("bytes=9-1"), 100),
            Err(RangeError::Unsupported)
        );
        assert_eq!(
            parse_range(Some("bytes=-0"), 100),
            Err(RangeError::Unsatisfiable)
        );
    }
}
