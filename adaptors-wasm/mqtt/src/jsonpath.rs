//! The small JSON path language of `properties[].path` in the AttributedMessage pattern,
//! a subset of what Octopus took from gjson (reads) and sjson (writes):
//!
//! - keys separated by dots: `parameter.power`; a dot inside a key is escaped `\.`;
//! - array elements by index, either gjson-style as a numeric key (`items.1`) or in
//!   brackets (`items[1]`, `matrix[0][2]`);
//! - nothing else: no wildcards, queries, `#` counts or modifiers.
//!
//! A numeric key reads an array element when the value there is an array and an object
//! member otherwise. Writes create missing objects (and arrays for bracket indexes) on
//! the way, like sjson.

use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// A dotted key; also an index when it is numeric and meets an array.
    Key(String),
    /// A bracket index.
    Index(usize),
}

/// A parsed path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path(Vec<Step>);

impl Path {
    pub fn parse(text: &str) -> Result<Path, String> {
        if text.is_empty() {
            return Err("empty path".to_owned());
        }
        let mut steps = Vec::new();
        let mut key = String::new();
        // Whether `key` is a real (possibly empty) segment that must be pushed.
        let mut open = true;
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(escaped) => {
                        key.push(escaped);
                        open = true;
                    }
                    None => return Err(format!("{text:?} ends with a lone backslash")),
                },
                '.' => {
                    if open && key.is_empty() {
                        return Err(format!("{text:?} has an empty key"));
                    }
                    if open {
                        steps.push(Step::Key(std::mem::take(&mut key)));
                    }
                    open = true;
                }
                '[' => {
                    if open && !key.is_empty() {
                        steps.push(Step::Key(std::mem::take(&mut key)));
                    } else if open && !steps.is_empty() {
                        return Err(format!("{text:?} has an empty key"));
                    }
                    let mut digits = String::new();
                    loop {
                        match chars.next() {
                            Some(']') => break,
                            Some(d) if d.is_ascii_digit() => digits.push(d),
                            _ => {
                                return Err(format!(
                                    "{text:?}: an index is written [n] with a non-negative integer n"
                                ));
                            }
                        }
                    }
                    let index = digits.parse::<usize>().map_err(|_| {
                        format!("{text:?}: an index is written [n] with a non-negative integer n")
                    })?;
                    steps.push(Step::Index(index));
                    open = false;
                    if let Some(next) = chars.peek()
                        && *next != '.'
                        && *next != '['
                    {
                        return Err(format!("{text:?}: expected . or [ after ]"));
                    }
                }
                ']' => return Err(format!("{text:?} has an unmatched ]")),
                other => {
                    key.push(other);
                    open = true;
                }
            }
        }
        if open {
            if key.is_empty() {
                return Err(format!("{text:?} has an empty key"));
            }
            steps.push(Step::Key(key));
        }
        Ok(Path(steps))
    }

    /// The value at this path, if there is one.
    pub fn get<'a>(&self, mut value: &'a Value) -> Option<&'a Value> {
        for step in &self.0 {
            value = match (step, value) {
                (Step::Index(i), Value::Array(items)) => items.get(*i)?,
                (Step::Key(k), Value::Array(items)) => items.get(k.parse::<usize>().ok()?)?,
                (Step::Key(k), Value::Object(map)) => map.get(k)?,
                _ => return None,
            };
        }
        Some(value)
    }

    /// Sets the value at this path, creating what is missing. Fails when the path runs
    /// into a scalar or an index beyond the end of an array (only appending is allowed).
    pub fn set(&self, root: &mut Value, new: Value) -> Result<(), String> {
        let mut slot = root;
        for (at, step) in self.0.iter().enumerate() {
            let next_is_index = matches!(self.0.get(at + 1), Some(Step::Index(_)));
            let fresh = || {
                if next_is_index {
                    Value::Array(Vec::new())
                } else {
                    Value::Object(Map::new())
                }
            };
            if slot.is_null() {
                *slot = match step {
                    Step::Index(_) => Value::Array(Vec::new()),
                    Step::Key(_) => Value::Object(Map::new()),
                };
            }
            slot = match (step, slot) {
                (Step::Key(k), Value::Object(map)) => map.entry(k.clone()).or_insert_with(fresh),
                (Step::Index(i), Value::Array(items)) => index_slot(items, *i, fresh)?,
                (Step::Key(k), Value::Array(items)) => match k.parse::<usize>() {
                    Ok(i) => index_slot(items, i, fresh)?,
                    Err(_) => return Err(format!("{k:?} is a key, but an array is in the way")),
                },
                (_, other) => {
                    return Err(format!("the path runs into {other}, which has no members"));
                }
            };
        }
        *slot = new;
        Ok(())
    }
}

fn index_slot(
    items: &mut Vec<Value>,
    index: usize,
    fresh: impl FnOnce() -> Value,
) -> Result<&mut Value, String> {
    if index == items.len() {
        items.push(fresh());
    }
    let len = items.len();
    items
        .get_mut(index)
        .ok_or_else(|| format!("index {index} is beyond the end of an array of {len}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn get(path: &str, doc: &Value) -> Option<Value> {
        Path::parse(path).unwrap().get(doc).cloned()
    }

    #[test]
    fn reads_keys_indexes_and_escapes() {
        let doc = json!({
            "switch": true,
            "parameter": {"power": 3.5, "a.b": 1},
            "items": [10, {"x": "y"}],
            "m": [[1, 2], [3, 4]],
            "o": {"0": "zero"}
        });
        assert_eq!(get("switch", &doc), Some(json!(true)));
        assert_eq!(get("parameter.power", &doc), Some(json!(3.5)));
        assert_eq!(get("parameter.a\\.b", &doc), Some(json!(1)));
        assert_eq!(get("items.0", &doc), Some(json!(10)));
        assert_eq!(get("items[1].x", &doc), Some(json!("y")));
        assert_eq!(get("items.1.x", &doc), Some(json!("y")));
        assert_eq!(get("m[1][0]", &doc), Some(json!(3)));
        assert_eq!(get("o.0", &doc), Some(json!("zero")));
        assert_eq!(get("missing", &doc), None);
        assert_eq!(get("items[5]", &doc), None);
        assert_eq!(get("switch.x", &doc), None);
        assert_eq!(get("o[0]", &doc), None, "brackets index arrays only");
    }

    #[test]
    fn refuses_malformed_paths() {
        for bad in [
            "", "a..b", ".a", "a.", "a[", "a[x]", "a[-1]", "a]", "a[0]b", "a\\",
        ] {
            assert!(Path::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Path::parse("[0]").is_ok());
        assert!(Path::parse("a[0].b").is_ok());
    }

    #[test]
    fn writes_create_what_is_missing() {
        let mut doc = Value::Object(Map::new());
        for (path, value) in [
            ("switch", json!(true)),
            ("parameter.power", json!(3)),
            ("list[0]", json!("a")),
            ("list[1]", json!("b")),
            ("deep[0].x", json!(1)),
            ("k\\.dot", json!(null)),
        ] {
            Path::parse(path).unwrap().set(&mut doc, value).unwrap();
        }
        assert_eq!(
            doc,
            json!({"switch": true, "parameter": {"power": 3}, "list": ["a", "b"],
                   "deep": [{"x": 1}], "k.dot": null})
        );
        Path::parse("parameter.power")
            .unwrap()
            .set(&mut doc, json!(4))
            .unwrap();
        assert_eq!(doc["parameter"]["power"], 4);
        assert!(
            Path::parse("switch.x")
                .unwrap()
                .set(&mut doc, json!(1))
                .is_err()
        );
        assert!(
            Path::parse("list[5]")
                .unwrap()
                .set(&mut doc, json!(1))
                .is_err()
        );
    }
}
