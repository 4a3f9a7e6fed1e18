//! The JSON-RPC request parser (`signaling::protocol::parse_request`) and the typed params of
//! the methods that take them, fed one WebSocket text frame at a time, as a session does.
//!
//! Checks beyond "no panic": a refusal's reply frame is valid JSON with the request id echoed;
//! an accepted request's id is a string or a number.
#![no_main]

use libfuzzer_sys::fuzz_target;
use radiogate::signaling::protocol::{
    error_frame, params, parse_request, result_frame, CandidateParams, ChannelParams, OfferParams,
};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    // A text frame is UTF-8 (the WebSocket layer refuses anything else).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_request(text) {
        Err((id, err)) => {
            assert!(matches!(
                id,
                Value::Null | Value::Number(_) | Value::String(_)
            ));
            let frame = error_frame(&id, &err);
            let v: Value = serde_json::from_str(&frame).expect("error frame is JSON");
            assert_eq!(v["id"], id);
        }
        Ok(req) => {
            assert!(matches!(
                req.id,
                None | Some(Value::Number(_)) | Some(Value::String(_))
            ));
            let id = req.id.clone().unwrap_or(Value::Null);
            // Every params struct, whatever the method: the session picks one by method name.
            let replies = [
                params::<ChannelParams>(&req.params).map(|p| Value::String(p.channel_id)),
                params::<OfferParams>(&req.params).map(|p| Value::String(p.sdp)),
                params::<CandidateParams>(&req.params).map(|p| Value::String(p.candidate)),
            ];
            for r in replies {
                let frame = match r {
                    Ok(v) => result_frame(&id, v),
                    Err(e) => error_frame(&id, &e),
                };
                let v: Value = serde_json::from_str(&frame).expect("reply frame is JSON");
                assert_eq!(v["id"], id);
            }
        }
    }
});
