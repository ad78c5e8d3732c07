//! Request extractors whose rejections are registry errors: a bad body is a 400 naming the
//! field, a huge one a 413, never axum's plain-text default.

use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body, parsed strictly (the types reject unknown fields).
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json"));
        if is_json == Some(false) {
            return Err(ApiError::new(
                "UNSUPPORTED_MEDIA_TYPE",
                "the body must be application/json",
                "send the header `Content-Type: application/json`",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state).await.map_err(body_error)?;
        parse(&bytes).map(ApiJson)
    }
}

/// Parse a JSON document, naming the offending field on a type error.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let text = if bytes.iter().all(u8::is_ascii_whitespace) { &b"{}"[..] } else { bytes };
    let mut de = serde_json::Deserializer::from_slice(text);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_data() && path != "." {
            ApiError::invalid(&path, inner)
        } else {
            malformed(&inner)
        }
    })?;
    de.end().map_err(|e| malformed(&e))?;
    Ok(value)
}

fn malformed(e: &serde_json::Error) -> ApiError {
    ApiError::new(
        "MALFORMED_JSON",
        format!("the body is not valid JSON for this request: {e}"),
        "send one JSON object with the fields the API reference lists for this route",
    )
}

fn body_error(e: BytesRejection) -> ApiError {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            "PAYLOAD_TOO_LARGE",
            "the body is larger than the server accepts",
            "send a smaller body; files go through the files API",
        )
    } else {
        ApiError::new("MALFORMED_JSON", format!("cannot read the body: {e}"), "send the body again")
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        limits: Option<Limits>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Limits {
        memory_bytes: Option<u64>,
    }

    #[test]
    fn a_wrong_type_names_its_field() {
        let e = parse::<Body>(br#"{"limits": {"memory_bytes": "lots"}}"#).unwrap_err();
        assert_eq!(e.code, "INVALID_ARGUMENT");
        assert!(e.message.contains("limits.memory_bytes"), "{}", e.message);
    }

    #[test]
    fn unknown_fields_and_broken_json_are_refused() {
        let unknown = parse::<Body>(br#"{"limitz": {}}"#).unwrap_err();
        assert!(unknown.message.contains("limitz"), "{}", unknown.message);
        assert_eq!(parse::<Body>(b"{not json").unwrap_err().code, "MALFORMED_JSON");
        assert_eq!(parse::<Body>(b"[]").unwrap_err().code, "MALFORMED_JSON");
        assert!(parse::<Body>(b"").unwrap().limits.is_none(), "an empty body is an empty object");
        let limits = parse::<Body>(br#"{"limits": {"memory_bytes": 5}}"#).unwrap().limits.unwrap();
        assert_eq!(limits.memory_bytes, Some(5));
    }
}
