//! The browser push-to-talk client, embedded in the binary, and what serves it: the static
//! files at `/`, the local CA certificate download, HTTPS ([`tls`]) and the join link helpers
//! used by `radiogate token --url/--qr`.
//!
//! The client is plain HTML, CSS and JavaScript in `src/web/assets/` (no build step, no CDN):
//! it works on a site LAN without internet.

pub mod pending;
pub mod tls;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

/// One embedded file: path, content type, bytes.
struct Asset {
    path: &'static str,
    mime: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        mime: "text/html; charset=utf-8",
        body: include_bytes!("assets/index.html"),
    },
    Asset {
        path: "/app.js",
        mime: "text/javascript; charset=utf-8",
        body: include_bytes!("assets/app.js"),
    },
    Asset {
        path: "/style.css",
        mime: "text/css; charset=utf-8",
        body: include_bytes!("assets/style.css"),
    },
    Asset {
        path: "/icon.svg",
        mime: "image/svg+xml",
        body: include_bytes!("assets/icon.svg"),
    },
    Asset {
        path: "/manifest.webmanifest",
        mime: "application/manifest+json",
        body: include_bytes!("assets/manifest.webmanifest"),
    },
];

/// Content-Security-Policy of the client: everything from the gateway itself, nothing else.
const CSP: &str = "default-src 'self'; connect-src 'self'; img-src 'self' data:; \
                   media-src 'self' blob: mediastream:; style-src 'self'; script-src 'self'; \
                   object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// The client's routes: the embedded files and `GET /radiogate-ca.crt` (the generated CA under
/// `state_dir`, served only when `tls` is [`TlsMode::Auto`](crate::config::TlsMode::Auto)).
pub fn router<S: Clone + Send + Sync + 'static>(
    state_dir: &std::path::Path,
    tls: crate::config::TlsMode,
) -> Router<S> {
    let ca = Arc::new(tls::GeneratedPaths::new(state_dir).ca_cert);
    let mut r = Router::new().route(
        "/radiogate-ca.crt",
        get(move || ca_cert(Arc::clone(&ca), tls)),
    );
    for a in ASSETS {
        r = r.route(a.path, get(move || async move { asset(a) }));
    }
    r
}

fn asset(a: &'static Asset) -> Response {
    let mut resp = (StatusCode::OK, a.body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(a.mime));
    // Small files, and a new gateway version must be picked up at once: revalidate each time.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if a.path == "/" {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
    }
    resp
}

/// The generated local CA certificate, for phones to install (`tls = "auto"` only).
async fn ca_cert(path: Arc<std::path::PathBuf>, tls: crate::config::TlsMode) -> Response {
    if tls != crate::config::TlsMode::Auto {
        return (
            StatusCode::NOT_FOUND,
            "no generated certificate: server.tls is not \"auto\"\n",
        )
            .into_response();
    }
    match tokio::fs::read(path.as_path()).await {
        Ok(pem) => (
            [
                (header::CONTENT_TYPE, "application/x-x509-ca-cert"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"radiogate-ca.crt\"",
                ),
            ],
            pem,
        )
            .into_response(),
        Err(_) => (StatusCode::NOT_FOUND, "no CA certificate generated yet\n").into_response(),
    }
}

/// The join link for a token: `BASE/?token=TOKEN` (`BASE` without a trailing slash).
pub fn join_url(base: &str, token: &str) -> String {
    format!("{}/?token={token}", base.trim_end_matches('/'))
}

/// A QR code of `text` as a standalone SVG document (issue 13: the admin panel shows it and
/// prints it): one unit per module, a 4-module quiet zone (ISO/IEC 18004), dark modules as one
/// black path on a white square, `shape-rendering="crispEdges"` so it stays sharp when scaled.
/// Error correction level M (15 %: a scuffed print still scans).
///
/// # Errors
/// When `text` is too long for a QR code.
pub fn qr_svg(text: &str) -> Result<String, qrcode::types::QrError> {
    let code = qrcode::QrCode::with_error_correction_level(text, qrcode::EcLevel::M)?;
    let width = code.width();
    let colors = code.to_colors();
    let quiet = 4;
    let size = width + 2 * quiet;
    let mut path = String::new();
    for (i, c) in colors.iter().enumerate() {
        if *c == qrcode::Color::Dark {
            let (x, y) = (i % width + quiet, i / width + quiet);
            path.push_str(&format!("M{x} {y}h1v1h-1z"));
        }
    }
    Ok(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {size} {size}\" \
         shape-rendering=\"crispEdges\"><rect width=\"{size}\" height=\"{size}\" fill=\"#fff\"/>\
         <path fill=\"#000\" d=\"{path}\"/></svg>"
    ))
}

/// A QR code of `text` for a terminal: two modules per character cell (Unicode half blocks),
/// dark modules drawn as spaces on a light frame so it scans on dark and light terminals
/// alike, with a 2-module quiet zone.
///
/// # Errors
/// When `text` is too long for a QR code.
pub fn qr_terminal(text: &str) -> Result<String, qrcode::types::QrError> {
    let code = qrcode::QrCode::with_error_correction_level(text, qrcode::EcLevel::L)?;
    let width = code.width();
    let colors = code.to_colors();
    let quiet = 2isize;
    let size = width as isize + 2 * quiet;
    let dark = |x: isize, y: isize| -> bool {
        let (mx, my) = (x - quiet, y - quiet);
        if mx < 0 || my < 0 || mx >= width as isize || my >= width as isize {
            return false;
        }
        colors[my as usize * width + mx as usize] == qrcode::Color::Dark
    };
    let mut out = String::new();
    let mut y = 0;
    while y < size {
        for x in 0..size {
            // Light modules are drawn (full or half blocks), dark ones left blank.
            out.push(match (dark(x, y), dark(x, y + 1) || y + 1 >= size) {
                (false, false) => '\u{2588}',
                (false, true) => '\u{2580}',
                (true, false) => '\u{2584}',
                (true, true) => ' ',
            });
        }
        out.push('\n');
        y += 2;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qr_svg_draws_every_dark_module_inside_a_quiet_zone() {
        let svg = qr_svg("https://pi.local:8443/?token=a.b.c").unwrap();
        let code = qrcode::QrCode::with_error_correction_level(
            "https://pi.local:8443/?token=a.b.c",
            qrcode::EcLevel::M,
        )
        .unwrap();
        let dark = code
            .to_colors()
            .iter()
            .filter(|c| **c == qrcode::Color::Dark)
            .count();
        assert_eq!(svg.matches("h1v1h-1z").count(), dark);
        let size = code.width() + 8;
        assert!(svg.contains(&format!("viewBox=\"0 0 {size} {size}\"")));
        assert!(
            !svg.contains("M0 ") && !svg.contains("M3 "),
            "quiet zone kept free"
        );
        assert!(qr_svg(&"x".repeat(8000)).is_err());
    }

    #[test]
    fn join_url_has_one_slash() {
        assert_eq!(
            join_url("https://pi.local:8080/", "a.b.c"),
            "https://pi.local:8080/?token=a.b.c"
        );
        assert_eq!(join_url("https://x", "t"), "https://x/?token=t");
    }

    #[test]
    fn qr_is_square_text() {
        let q = qr_terminal("https://10.0.0.1:8080/?token=abc").unwrap();
        let lines: Vec<&str> = q.lines().collect();
        let w = lines[0].chars().count();
        assert!(w >= 25, "{w}");
        assert!(lines.iter().all(|l| l.chars().count() == w));
        assert_eq!(lines.len(), w.div_ceil(2));
    }

    #[test]
    fn every_asset_is_embedded() {
        for a in ASSETS {
            assert!(!a.body.is_empty(), "{}", a.path);
        }
    }
}
