//! Store values are what JSON can hold: rhai values to JSON text and back.
//!
//! `()` is `null`, booleans, integers (`INT`, i64), finite floats, strings (a character is
//! a one-character string), arrays and object maps. Anything else (function pointers,
//! BLOBs, timestamps, host types) is refused with a message naming its type, rather
//! than stored as something it is not.

use rhai::{Array, Dynamic, FLOAT, INT, Map};
use serde_json::{Number, Value};

/// Deepest nesting of arrays and maps stored. A script can build an array nested far
/// deeper than anything reasonable (`a = [a]` in a loop), and both directions recurse;
/// serde_json's own reader stops at 128.
const MAX_DEPTH: usize = 64;

/// `value` as JSON text.
///
/// # Errors
///
/// A message for the script saying which value cannot be stored.
pub(crate) fn to_json(value: &Dynamic) -> Result<String, String> {
    let json = to_value(value, 0)?;
    serde_json::to_string(&json).map_err(|err| format!("cannot write the value as JSON: {err}"))
}

fn to_value(value: &Dynamic, depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "arrays and maps nested more than {MAX_DEPTH} deep cannot be stored"
        ));
    }
    if value.is_unit() {
        return Ok(Value::Null);
    }
    if let Ok(flag) = value.as_bool() {
        return Ok(Value::Bool(flag));
    }
    if let Ok(number) = value.as_int() {
        return Ok(Value::Number(number.into()));
    }
    if let Ok(number) = value.as_float() {
        return Number::from_f64(number)
            .map(Value::Number)
            .ok_or_else(|| format!("{number} cannot be stored: JSON has no NaN or infinity"));
    }
    if let Ok(character) = value.as_char() {
        return Ok(Value::String(character.to_string()));
    }
    if value.is_string() {
        return Ok(Value::String(
            value.clone().into_string().unwrap_or_default(),
        ));
    }
    if value.is_array() {
        let array = value.read_lock::<Array>().ok_or("an array is in use")?;
        return array
            .iter()
            .map(|item| to_value(item, depth + 1))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array);
    }
    if value.is_map() {
        let map = value.read_lock::<Map>().ok_or("a map is in use")?;
        return map
            .iter()
            .map(|(key, item)| Ok((key.to_string(), to_value(item, depth + 1)?)))
            .collect::<Result<serde_json::Map<_, _>, String>>()
            .map(Value::Object);
    }
    Err(format!(
        "a value of type {} cannot be stored: store null, booleans, numbers, strings, arrays and maps",
        value.type_name()
    ))
}

/// The rhai value of stored JSON `text`.
///
/// # Errors
///
/// A message when the text is not JSON (only possible if something else wrote the
/// store).
pub(crate) fn from_json(text: &str) -> Result<Dynamic, String> {
    let value: Value =
        serde_json::from_str(text).map_err(|err| format!("a stored value is not JSON: {err}"))?;
    Ok(from_value(value))
}

fn from_value(value: Value) -> Dynamic {
    match value {
        Value::Null => Dynamic::UNIT,
        Value::Bool(flag) => flag.into(),
        Value::Number(number) => match number.as_i64() {
            Some(int) => Dynamic::from_int(int as INT),
            None => Dynamic::from_float(number.as_f64().unwrap_or(0.0) as FLOAT),
        },
        Value::String(text) => text.into(),
        Value::Array(items) => items.into_iter().map(from_value).collect::<Array>().into(),
        Value::Object(fields) => fields
            .into_iter()
            .map(|(key, item)| (key.into(), from_value(item)))
            .collect::<Map>()
            .into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_values_round_trip() {
        let mut map = Map::new();
        map.insert("n".into(), Dynamic::from_int(-3));
        map.insert("f".into(), Dynamic::from_float(1.5));
        map.insert("s".into(), "text".into());
        map.insert("none".into(), Dynamic::UNIT);
        map.insert(
            "list".into(),
            vec![Dynamic::TRUE, Dynamic::from('x')]
                .into_iter()
                .collect::<Array>()
                .into(),
        );
        let text = to_json(&map.into()).unwrap();
        assert_eq!(
            text,
            r#"{"f":1.5,"list":[true,"x"],"n":-3,"none":null,"s":"text"}"#
        );
        let back = from_json(&text).unwrap();
        assert_eq!(to_json(&back).unwrap(), text);
    }

    #[test]
    fn what_json_cannot_hold_is_refused_by_name() {
        let err = to_json(&Dynamic::from_float(FLOAT::NAN)).unwrap_err();
        assert!(err.contains("NaN"), "{err}");
        let err = to_json(&Dynamic::from_blob(vec![1, 2])).unwrap_err();
        assert!(err.contains("blob"), "{err}");
        let mut deep = Dynamic::UNIT;
        for _ in 0..100 {
            deep = vec![deep].into_iter().collect::<Array>().into();
        }
        let err = to_json(&deep).unwrap_err();
        assert!(err.contains("nested"), "{err}");
    }
}
