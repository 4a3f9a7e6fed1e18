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
        path: "/sw.js",
        mime: "text/javascript; charset=utf-8",
        body: include_bytes!("assets/sw.js"),
    },
    Asset {
        path: "/apple-touch-icon.png",
        mime: "image/png",
        body: include_bytes!("assets/apple-touch-icon.png"),
    },
    Asset {
        path: "/icon-192.png",
        mime: "image/png",
        body: include_bytes!("assets/icon-192.png"),
    },
    Asset {
        path: "/icon-512.png",
        mime: "image/png",
        body: include_bytes!("assets/icon-512.png"),
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

    /// WCAG 2.x relative luminance of `#rrggbb`.
    fn luminance(hex: &str) -> f64 {
        let h = hex.trim().trim_start_matches('#');
        let ch = |i: usize| {
            let v = f64::from(u8::from_str_radix(&h[i..i + 2], 16).unwrap()) / 255.0;
            if v <= 0.039_28 {
                v / 12.92
            } else {
                ((v + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * ch(0) + 0.7152 * ch(2) + 0.0722 * ch(4)
    }

    fn contrast(a: &str, b: &str) -> f64 {
        let (la, lb) = (luminance(a), luminance(b));
        (la.max(lb) + 0.05) / (la.min(lb) + 0.05)
    }

    /// The declarations of the first rule whose selector list contains `selector`.
    fn rule<'a>(css: &'a str, selector: &str) -> &'a str {
        let at = css
            .lines()
            .scan(0, |pos, l| {
                let start = *pos;
                *pos += l.len() + 1;
                Some((start, l))
            })
            .find(|(_, l)| {
                l.split('{')
                    .next()
                    .is_some_and(|sel| sel.split(',').any(|s| s.trim() == selector))
                    && l.contains('{')
            })
            .map(|(start, _)| start)
            .unwrap_or_else(|| panic!("no rule for {selector}"));
        let body = &css[at..];
        &body[body.find('{').unwrap() + 1..body.find('}').unwrap()]
    }

    /// The colour a declaration `name: ... COLOUR` ends with, `var(--x)` resolved in `:root`.
    fn colour(css: &str, block: &str, name: &str) -> Option<String> {
        let decl = block
            .split(';')
            .find(|d| d.trim().starts_with(&format!("{name}:")))?;
        let value = decl.split(':').nth(1)?.trim();
        let last = value.split_whitespace().last()?;
        if let Some(var) = last.strip_prefix("var(").and_then(|v| v.strip_suffix(')')) {
            let root = rule(css, ":root");
            return colour(css, root, var);
        }
        Some(last.to_string())
    }

    /// Issue 12: the PTT button's edge meets WCAG 1.4.11 non-text contrast (>= 3:1 against
    /// the page) in every state, the idle one included (it was 1.3:1).
    #[test]
    fn ptt_button_edge_contrast_is_at_least_3_to_1_in_every_state() {
        let raw = include_str!("assets/style.css");
        let mut css = String::new();
        let mut rest = raw;
        while let Some(i) = rest.find("/*") {
            css.push_str(&rest[..i]);
            rest = &rest[i + rest[i..].find("*/").unwrap() + 2..];
        }
        css.push_str(rest);
        let css = css.as_str();
        let bg = colour(css, rule(css, ":root"), "--bg").unwrap();
        let idle = colour(css, rule(css, ".ptt"), "border").unwrap();
        let mut states = vec![("idle", idle.clone())];
        for (state, sel) in [
            ("requesting", ".ptt[data-state=\"requesting\"]"),
            ("talking", ".ptt[data-state=\"talking\"]"),
            ("denied", ".ptt[data-state=\"denied\"]"),
            ("revoked", ".ptt[data-state=\"revoked\"]"),
            ("taken", ".ptt[data-state=\"taken\"]"),
        ] {
            states.push((state, colour(css, rule(css, sel), "border-color").unwrap()));
        }
        // Disabled (offline): the idle edge, dashed, at full opacity.
        let disabled = rule(css, ".ptt:disabled");
        assert!(
            !disabled.contains("opacity"),
            "a disabled PTT keeps its edge visible"
        );
        states.push(("disabled", idle));
        for (state, edge) in states {
            let c = contrast(&edge, &bg);
            assert!(c >= 3.0, "PTT {state}: edge {edge} on {bg} is {c:.2}:1");
        }
        assert!((contrast("#ffffff", "#000000") - 21.0).abs() < 0.01);
    }

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
