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
