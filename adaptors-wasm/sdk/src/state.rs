//! Snapshots: the state a device hands to the next version of its adaptor on a hot
//! swap, as JSON so that builds in other languages (or other versions) can read it.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// Serialises a state to the bytes `snapshot` returns. It must be a JSON object (a
/// struct), the one shape [`decode`] takes back.
pub fn encode<S: Serialize + ?Sized>(state: &S) -> Result<Vec<u8>> {
    let bytes = serde_json::to_vec(state)
        .map_err(|e| Error::Internal(format!("cannot encode state: {e}")))?;
    if bytes.first() == Some(&b'{') {
        Ok(bytes)
    } else {
        Err(Error::Internal(
            "state must encode to a JSON object (use a struct)".to_owned(),
        ))
    }
}

/// Reads the bytes `restore` got; anything that does not fit `S` is
/// `incompatible-state` naming the field, so the old version keeps serving.
pub fn decode<S: DeserializeOwned + 'static>(bytes: &[u8]) -> Result<S> {
    crate::json::decode(bytes, "state").map_err(Error::IncompatibleState)
}

/// Reads a snapshot that says what it is (`"format": format`) as a JSON document, for
/// an adaptor that walks its own format; the error says why the bytes are not one.
pub fn open_tagged(bytes: &[u8], format: &str) -> std::result::Result<serde_json::Value, String> {
    let fail = |why: String| format!("not a {format} snapshot: {why}");
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| fail(format!("invalid JSON ({e})")))?;
    match value.get("format").and_then(serde_json::Value::as_str) {
        Some(found) if found == format => Ok(value),
        Some(other) => Err(fail(format!("format is {other:?}"))),
        None => Err(fail("no format field".to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct State {
        polls: u64,
    }

    #[test]
    fn round_trip() {
        let bytes = encode(&State { polls: 7 }).unwrap();
        assert_eq!(bytes, br#"{"polls":7}"#);
        assert_eq!(decode::<State>(&bytes), Ok(State { polls: 7 }));
        assert!(matches!(encode(&7), Err(Error::Internal(_))));
    }

    #[test]
    fn tagged_snapshots_say_what_they_are_not() {
        let open = |bytes: &[u8]| open_tagged(bytes, "octopus.test/v1");
        assert_eq!(
            open(br#"{"format":"octopus.test/v1","n":1}"#).map(|v| v["n"].clone()),
            Ok(serde_json::json!(1))
        );
        assert_eq!(
            open(br#"{"format":"octopus.other/v1"}"#),
            Err(r#"not a octopus.test/v1 snapshot: format is "octopus.other/v1""#.into())
        );
        assert_eq!(
            open(b"{}"),
            Err("not a octopus.test/v1 snapshot: no format field".into())
        );
        assert!(open(b"\xff").is_err_and(|e| e.contains("invalid JSON")));
    }

    #[test]
    fn other_shapes_are_incompatible() {
        for (bytes, why) in [
            (&b"{}"[..], "polls is required"),
            (
                br#"{"polls": -1}"#,
                "polls must be a non-negative integer, got -1",
            ),
            (
                br#"{"polls": "3"}"#,
                r#"polls must be a non-negative integer, got "3""#,
            ),
            (b"[3]", "state must be an object, got an array"),
        ] {
            assert_eq!(
                decode::<State>(bytes),
                Err(Error::IncompatibleState(why.into()))
            );
        }
        assert!(matches!(
            decode::<State>(b"\xff"),
            Err(Error::IncompatibleState(m)) if m.starts_with("state is not valid JSON")
        ));
    }
}
