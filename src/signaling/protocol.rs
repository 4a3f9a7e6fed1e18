//! Wire format of the signaling protocol: JSON-RPC 2.0 over WebSocket text frames.
//!
//! Every method, notification, error code and close code is documented in docs/PROTOCOL.md;
//! this module is its single source in code.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// JSON-RPC 2.0 error codes used by radiogate (docs/PROTOCOL.md, "Errors").
///
/// -32700..-32600 are the JSON-RPC 2.0 reserved codes; -32001.. are radiogate's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The frame is not valid JSON.
    ParseError,
    /// Valid JSON but not a JSON-RPC request object (no `method` string, bad `id` type).
    InvalidRequest,
    /// No such method.
    MethodNotFound,
    /// Parameters missing or of the wrong shape.
    InvalidParams,
    /// Server-side failure (database, WebRTC stack); the session continues.
    Internal,
    /// The caller's role may not call the method, or the user may not use that channel.
    PermissionDenied,
    /// The caller is not a member of the channel (join first).
    NotAMember,
    /// The channel has reached `channels.max_users_per_channel`.
    ChannelFull,
    /// The caller has reached `channels.max_channels_per_user`.
    TooManyChannels,
    /// Floor deny: another participant holds the floor.
    FloorBusy,
    /// A WebRTC offer or candidate was refused (bad SDP, no peer connection yet).
    MediaError,
    /// The session sent messages faster than `limits.messages_per_second` allows.
    RateLimited,
    /// Emergency broadcast refused: not armed, or held shorter than the hold guard.
    BroadcastRefused,
}

impl ErrorCode {
    /// The numeric JSON-RPC code.
    pub fn code(self) -> i64 {
        match self {
            Self::ParseError => -32700,
            Self::InvalidRequest => -32600,
            Self::MethodNotFound => -32601,
            Self::InvalidParams => -32602,
            Self::Internal => -32603,
            Self::PermissionDenied => -32001,
            Self::NotAMember => -32002,
            Self::ChannelFull => -32003,
            Self::TooManyChannels => -32004,
            Self::FloorBusy => -32005,
            Self::MediaError => -32006,
            Self::RateLimited => -32007,
            Self::BroadcastRefused => -32008,
        }
    }

    /// The stable symbolic name sent in `error.data.type` (e.g. `"PERMISSION_DENIED"`).
    pub fn name(self) -> &'static str {
        match self {
            Self::ParseError => "PARSE_ERROR",
            Self::InvalidRequest => "INVALID_REQUEST",
            Self::MethodNotFound => "METHOD_NOT_FOUND",
            Self::InvalidParams => "INVALID_PARAMS",
            Self::Internal => "INTERNAL_ERROR",
            Self::PermissionDenied => "PERMISSION_DENIED",
            Self::NotAMember => "NOT_A_MEMBER",
            Self::ChannelFull => "CHANNEL_FULL",
            Self::TooManyChannels => "TOO_MANY_CHANNELS",
            Self::FloorBusy => "FLOOR_BUSY",
            Self::MediaError => "MEDIA_ERROR",
            Self::RateLimited => "RATE_LIMITED",
            Self::BroadcastRefused => "BROADCAST_REFUSED",
        }
    }
}

/// A typed error reply: code, human message and optional extra data.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    /// The error kind.
    pub code: ErrorCode,
    /// Human-readable message.
    pub message: String,
    /// Extra structured data merged into `error.data` (e.g. the floor holder).
    pub data: Option<Value>,
}

impl RpcError {
    /// An error without extra data.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// Adds structured data.
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }
}

/// Close codes the server uses (RFC 6455 section 7.4 and radiogate's 4000 range).
pub mod close {
    /// Server shutting down, or the peer stopped answering pings (RFC 6455 "going away").
    pub const GOING_AWAY: u16 = 1001;
    /// Protocol error: reserved opcode, bad framing (RFC 6455).
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A text message that is not valid UTF-8 (RFC 6455 "invalid frame payload data").
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// Frame or message over `server.max_frame_bytes` (RFC 6455 "message too big").
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// Unexpected server error.
    pub const INTERNAL: u16 = 1011;
    /// The token expired during the session.
    pub const TOKEN_EXPIRED: u16 = 4001;
    /// Policy violation: the session kept exceeding its message rate (RFC 6455).
    pub const POLICY: u16 = 1008;
    /// Force-disconnected by an administrator, a ban or a device revoke (spec notes 000, 004).
    pub const FORCED: u16 = 4003;
}

/// A parsed incoming request (method and params still untyped).
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    /// Request id to echo; `None` for a notification (no reply is sent).
    pub id: Option<Value>,
    /// Method name.
    pub method: String,
    /// Parameters (`null` when absent).
    pub params: Value,
}

/// Parses one text frame into a request.
///
/// # Errors
/// `(id, error)`: [`ErrorCode::ParseError`] for invalid JSON (id `null`),
/// [`ErrorCode::InvalidRequest`] for JSON that is not a request object.
pub fn parse_request(text: &str) -> Result<Incoming, (Value, RpcError)> {
    let v: Value = serde_json::from_str(text).map_err(|e| {
        (
            Value::Null,
            RpcError::new(ErrorCode::ParseError, format!("parse error: {e}")),
        )
    })?;
    let Value::Object(mut obj) = v else {
        return Err((
            Value::Null,
            RpcError::new(ErrorCode::InvalidRequest, "request must be a JSON object"),
        ));
    };
    let id = obj.remove("id");
    // A number id must be an integer that fits 64 bits: a fraction or a larger number is read
    // as a float, which does not echo back as the same number (found by fuzzing, issue 15;
    // JSON-RPC 2.0 §4: numbers SHOULD NOT contain fractional parts).
    let id_ok = match &id {
        None | Some(Value::Null) | Some(Value::String(_)) => true,
        Some(Value::Number(n)) => n.is_i64() || n.is_u64(),
        Some(_) => false,
    };
    let echo = match (&id, id_ok) {
        (Some(v), true) => v.clone(),
        _ => Value::Null,
    };
    if !id_ok {
        return Err((
            echo,
            RpcError::new(
                ErrorCode::InvalidRequest,
                "id must be a string or an integer number",
            ),
        ));
    }
    if let Some(ver) = obj.get("jsonrpc") {
        if ver != "2.0" {
            return Err((
                echo,
                RpcError::new(ErrorCode::InvalidRequest, "jsonrpc must be \"2.0\""),
            ));
        }
    }
    let Some(Value::String(method)) = obj.remove("method") else {
        return Err((
            echo,
            RpcError::new(ErrorCode::InvalidRequest, "method must be a string"),
        ));
    };
    Ok(Incoming {
        id: id.filter(|v| !v.is_null()),
        method,
        params: obj.remove("params").unwrap_or(Value::Null),
    })
}

/// Deserializes `params` into `T`.
///
/// # Errors
/// [`ErrorCode::InvalidParams`] naming what is wrong.
pub fn params<T: for<'de> Deserialize<'de>>(params: &Value) -> Result<T, RpcError> {
    let v = if params.is_null() {
        json!({})
    } else {
        params.clone()
    };
    serde_json::from_value(v)
        .map_err(|e| RpcError::new(ErrorCode::InvalidParams, format!("invalid params: {e}")))
}

/// Serializes a success reply.
pub fn result_frame(id: &Value, result: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string()
}

/// Serializes an error reply; `error.data.type` carries [`ErrorCode::name`].
pub fn error_frame(id: &Value, err: &RpcError) -> String {
    let mut data = json!({"type": err.code.name()});
    if let (Some(Value::Object(extra)), Value::Object(d)) = (&err.data, &mut data) {
        for (k, v) in extra {
            d.insert(k.clone(), v.clone());
        }
    }
    json!({"jsonrpc": "2.0", "id": id,
           "error": {"code": err.code.code(), "message": err.message, "data": data}})
    .to_string()
}

/// Serializes a server notification (no id).
pub fn notification_frame(method: &str, params: Value) -> String {
    json!({"jsonrpc": "2.0", "method": method, "params": params}).to_string()
}

/// Params of the methods that take a channel id.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ChannelParams {
    /// The channel id.
    pub channel_id: String,
}

/// Params of `webrtc.offer`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OfferParams {
    /// The client's SDP offer.
    pub sdp: String,
}

/// Params of `webrtc.candidate` (trickle ICE, W3C RTCIceCandidateInit shape: what a
/// browser's `RTCIceCandidate.toJSON()` gives). Unknown fields are refused.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CandidateParams {
    /// The candidate line, `candidate:...`.
    pub candidate: String,
    /// The m-line id it belongs to.
    #[serde(default)]
    pub sdp_mid: Option<String>,
    /// The m-line index.
    #[serde(default)]
    pub sdp_m_line_index: Option<u16>,
    /// The ICE username fragment the candidate belongs to (ignored: one ICE session per peer).
    #[serde(default)]
    pub username_fragment: Option<String>,
}

impl From<crate::hub::HubError> for RpcError {
    /// The JSON-RPC error of a hub refusal (docs/PROTOCOL.md error codes and `data`).
    fn from(e: crate::hub::HubError) -> Self {
        use crate::hub::HubError as H;
        let msg = e.to_string();
        match e {
            H::NotRegistered => RpcError::new(ErrorCode::Internal, msg),
            H::PermissionDenied { channel } => RpcError::new(ErrorCode::PermissionDenied, msg)
                .with_data(serde_json::json!({"channelId": channel})),
            H::TooManyChannels { limit, .. } => RpcError::new(ErrorCode::TooManyChannels, msg)
                .with_data(serde_json::json!({"limit": limit})),
            H::ChannelFull { channel, limit } => RpcError::new(ErrorCode::ChannelFull, msg)
                .with_data(serde_json::json!({"channelId": channel, "limit": limit})),
            H::NotAMember { channel } => RpcError::new(ErrorCode::NotAMember, msg)
                .with_data(serde_json::json!({"channelId": channel})),
            H::FloorBusy {
                channel, holder, ..
            } => RpcError::new(ErrorCode::FloorBusy, msg)
                .with_data(serde_json::json!({"channelId": channel, "talker": holder})),
            H::Linked { channel } => RpcError::new(ErrorCode::FloorBusy, msg)
                .with_data(serde_json::json!({"channelId": channel})),
            H::BroadcastNotArmed => RpcError::new(ErrorCode::BroadcastRefused, msg),
            H::HoldTooShort { held_ms, hold_ms } => RpcError::new(ErrorCode::BroadcastRefused, msg)
                .with_data(serde_json::json!({"heldMs": held_ms, "holdMs": hold_ms})),
            H::BroadcastActive { by } => RpcError::new(ErrorCode::BroadcastRefused, msg)
                .with_data(serde_json::json!({"by": by})),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests_and_classifies_errors() {
        let r = parse_request(
            r#"{"jsonrpc":"2.0","id":7,"method":"floor.request","params":{"channelId":"c"}}"#,
        )
        .unwrap();
        assert_eq!(r.id, Some(json!(7)));
        assert_eq!(r.method, "floor.request");
        let (id, e) = parse_request("{nope").unwrap_err();
        assert_eq!((id, e.code), (Value::Null, ErrorCode::ParseError));
        let (_, e) = parse_request("[1,2]").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        let (id, e) = parse_request(r#"{"id":"a","method":5}"#).unwrap_err();
        assert_eq!((id, e.code), (json!("a"), ErrorCode::InvalidRequest));
        let (_, e) = parse_request(r#"{"id":{},"method":"x"}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
    }

    /// Regression (fuzz target rpc_request, crash-74518f44): an id too large for 64 bits was
    /// read as a float and echoed as a different number. Such ids, and fractions, are refused
    /// with id null; integer ids up to u64::MAX and down to i64::MIN are echoed exactly.
    #[test]
    fn float_and_oversized_ids_are_refused_integer_ids_echo_exactly() {
        let crash = r#"{"|jc": "0.0", "id": 16666666666666666666666666, "method": "channel.join", "params": {"enalnccnethohId": "op.s"}}"#;
        let (id, e) = parse_request(crash).unwrap_err();
        assert_eq!((id, e.code), (Value::Null, ErrorCode::InvalidRequest));
        let (id, _) = parse_request(r#"{"id":1.5,"method":"x"}"#).unwrap_err();
        assert_eq!(id, Value::Null);
        for raw in ["18446744073709551615", "-9223372036854775808", "0"] {
            let r = parse_request(&format!(r#"{{"id":{raw},"method":"x"}}"#)).unwrap();
            let id = r.id.unwrap();
            let frame = result_frame(&id, json!(true));
            assert!(frame.contains(&format!("\"id\":{raw}")), "{frame}");
        }
    }

    #[test]
    fn error_frame_carries_type_and_data() {
        let f = error_frame(
            &json!(1),
            &RpcError::new(ErrorCode::FloorBusy, "busy").with_data(json!({"holder": "x"})),
        );
        let v: Value = serde_json::from_str(&f).unwrap();
        assert_eq!(v["error"]["code"], -32005);
        assert_eq!(v["error"]["data"]["type"], "FLOOR_BUSY");
        assert_eq!(v["error"]["data"]["holder"], "x");
    }

    #[test]
    fn params_are_typed() {
        let p: ChannelParams = params(&json!({"channelId": "c1"})).unwrap();
        assert_eq!(p.channel_id, "c1");
        let e = params::<ChannelParams>(&json!({"channel": 3})).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidParams);
        let e = params::<ChannelParams>(&Value::Null).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidParams);
    }
}
