//! PURE: what a datagram on the shared media socket is (RFC 7983 first-byte ranges), and
//! which peer connection a STUN binding request is for (the local part of its USERNAME, our
//! ICE ufrag; RFC 8445 section 7.2.2).

/// The protocol of a datagram on the media socket, by its first byte (RFC 7983 section 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// STUN (first byte 0..=3): ICE connectivity checks and consent.
    Stun,
    /// DTLS (20..=63): the handshake that keys SRTP.
    Dtls,
    /// RTP (128..=191, second byte not an RTCP packet type): media.
    Rtp,
    /// RTCP (128..=191, second byte 192..=223): reports.
    Rtcp,
    /// Anything else (dropped).
    Other,
}

/// Classifies `d` by its first two bytes.
pub fn classify(d: &[u8]) -> Kind {
    match d.first() {
        Some(0..=3) => Kind::Stun,
        Some(20..=63) => Kind::Dtls,
        Some(128..=191) if d.len() >= 2 => {
            if (192..=223).contains(&d[1]) {
                Kind::Rtcp
            } else {
                Kind::Rtp
            }
        }
        _ => Kind::Other,
    }
}

/// STUN magic cookie (RFC 5389 section 6).
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
/// STUN USERNAME attribute type.
const ATTR_USERNAME: u16 = 0x0006;
/// STUN message header length, bytes.
const HEADER: usize = 20;

/// The local ufrag a STUN message is addressed to: the part of its USERNAME attribute before
/// the colon (`"<receiver ufrag>:<sender ufrag>"`). `None` for anything that is not a STUN
/// message with a well-formed USERNAME (responses carry none).
pub fn stun_local_ufrag(d: &[u8]) -> Option<&str> {
    if d.len() < HEADER || d[0] > 3 || d[4..8] != MAGIC_COOKIE {
        return None;
    }
    let len = u16::from_be_bytes([d[2], d[3]]) as usize;
    let body = d.get(HEADER..HEADER + len)?;
    let mut at = 0usize;
    while at + 4 <= body.len() {
        let typ = u16::from_be_bytes([body[at], body[at + 1]]);
        let alen = u16::from_be_bytes([body[at + 2], body[at + 3]]) as usize;
        let value = body.get(at + 4..at + 4 + alen)?;
        if typ == ATTR_USERNAME {
            let name = std::str::from_utf8(value).ok()?;
            return name.split_once(':').map(|(local, _)| local);
        }
        at += 4 + alen.div_ceil(4) * 4;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding_request(username: &str) -> Vec<u8> {
        let mut attrs = Vec::new();
        // A PRIORITY attribute first, so the parser has to skip one.
        attrs.extend_from_slice(&0x0024u16.to_be_bytes());
        attrs.extend_from_slice(&4u16.to_be_bytes());
        attrs.extend_from_slice(&[0, 0, 0, 1]);
        attrs.extend_from_slice(&ATTR_USERNAME.to_be_bytes());
        attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attrs.extend_from_slice(username.as_bytes());
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        m.extend_from_slice(&MAGIC_COOKIE);
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&attrs);
        m
    }

    #[test]
    fn finds_the_local_ufrag_of_a_binding_request() {
        let m = binding_request("srvUfrag:cliUf");
        assert_eq!(classify(&m), Kind::Stun);
        assert_eq!(stun_local_ufrag(&m), Some("srvUfrag"));
    }

    #[test]
    fn malformed_stun_is_rejected() {
        let m = binding_request("srvUfrag:cliUf");
        assert_eq!(stun_local_ufrag(&m[..m.len() - 3]), None);
        let mut bad = m.clone();
        bad[4] = 0;
        assert_eq!(stun_local_ufrag(&bad), None);
        assert_eq!(stun_local_ufrag(&binding_request("nocolon")), None);
        assert_eq!(stun_local_ufrag(&[0u8; 4]), None);
    }

    #[test]
    fn classifies_rfc7983_ranges() {
        assert_eq!(classify(&[22, 254]), Kind::Dtls);
        assert_eq!(classify(&[0x80, 111]), Kind::Rtp);
        assert_eq!(classify(&[0x80, 0x80 | 111]), Kind::Rtp);
        assert_eq!(classify(&[0x80, 200]), Kind::Rtcp);
        assert_eq!(classify(&[0x81, 201]), Kind::Rtcp);
        assert_eq!(classify(&[64]), Kind::Other);
        assert_eq!(classify(&[]), Kind::Other);
    }
}
