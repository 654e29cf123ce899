//! Walking Redis replies: finding the entries in what `XREAD`, `XREADGROUP` and
//! `XAUTOCLAIM` answer, and handing each over as its id and field/value pairs straight
//! from the reply value (no map, no copy per entry).

use ::redis::Value;

/// Calls `each` with the id and the field/value pairs of every entry of an `XREAD` or
/// `XREADGROUP` reply (RESP2 arrays or RESP3 maps), straight from the reply: no map, no
/// copy per entry. Returns the id of the last entry seen.
pub(crate) fn for_each_entry<'a>(
    reply: &'a Value,
    mut each: impl FnMut(&'a [u8], &mut dyn Iterator<Item = (&'a [u8], &'a [u8])>),
) -> Option<&'a [u8]> {
    let mut last = None;
    let mut walk = |entries: &'a Value| {
        if let Some(id) = for_each_listed_entry(entries, &mut each) {
            last = Some(id);
        }
    };
    match reply {
        Value::Array(streams) => {
            for stream in streams {
                if let Value::Array(pair) = stream
                    && let [_, entries] = pair.as_slice()
                {
                    walk(entries);
                }
            }
        }
        Value::Map(streams) => {
            for (_, entries) in streams {
                walk(entries);
            }
        }
        _ => {}
    }
    last
}

/// What `XAUTOCLAIM` answered: calls `each` per claimed entry, and returns the cursor for
/// the next call and how many claimed entries had been deleted from the stream.
pub(crate) fn for_each_claimed<'a>(
    reply: &'a Value,
    mut each: impl FnMut(&'a [u8], &mut dyn Iterator<Item = (&'a [u8], &'a [u8])>),
) -> Option<(String, usize)> {
    let Value::Array(parts) = reply else {
        return None;
    };
    let cursor = std::str::from_utf8(bytes(parts.first()?)?).ok()?.to_owned();
    if let Some(entries) = parts.get(1) {
        for_each_listed_entry(entries, &mut each);
    }
    let deleted = match parts.get(2) {
        Some(Value::Array(ids)) => ids.len(),
        _ => 0,
    };
    Some((cursor, deleted))
}

fn bytes(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.as_bytes()),
        _ => None,
    }
}

/// Walks a list of `[id, [field, value, …]]` entries; returns the last id.
fn for_each_listed_entry<'a>(
    entries: &'a Value,
    each: &mut impl FnMut(&'a [u8], &mut dyn Iterator<Item = (&'a [u8], &'a [u8])>),
) -> Option<&'a [u8]> {
    let Value::Array(entries) = entries else {
        return None;
    };
    let mut last = None;
    for entry in entries {
        // Redis 6.2's XAUTOCLAIM lists a deleted entry as nil; skip anything but an entry.
        let Value::Array(parts) = entry else { continue };
        let [id, fields] = parts.as_slice() else {
            continue;
        };
        let Some(id) = bytes(id) else { continue };
        let fields: &[Value] = match fields {
            Value::Array(fields) => fields,
            _ => &[],
        };
        let mut pairs = fields
            .chunks_exact(2)
            .filter_map(|pair| Some((bytes(&pair[0])?, bytes(&pair[1])?)));
        each(id, &mut pairs);
        last = Some(id);
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::wire::{read_job_entry, read_replies};

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    fn entry_value(id: &str, fields: &[&str]) -> Value {
        Value::Array(vec![
            bulk(id),
            Value::Array(fields.iter().map(|f| bulk(f)).collect()),
        ])
    }

    #[test]
    fn xread_replies_are_walked_without_maps() {
        let entries = Value::Array(vec![
            entry_value("1-0", &["v", "2", "worker", "w", "answers", "a ok 1:1\n"]),
            entry_value(
                "2-0",
                &["v", "2", "worker", "w", "answers", "b script 3:bad\n"],
            ),
        ]);
        let resp2 = Value::Array(vec![Value::Array(vec![bulk("k"), entries.clone()])]);
        let resp3 = Value::Map(vec![(bulk("k"), entries)]);
        for reply in [resp2, resp3] {
            let mut seen = Vec::new();
            let last = for_each_entry(&reply, |id, fields| {
                read_replies(
                    fields,
                    |_, _| {},
                    |answer| {
                        let (job, result) = answer.unwrap();
                        seen.push((id.to_vec(), job.to_vec(), format!("{result:?}")));
                    },
                );
            });
            assert_eq!(last, Some(&b"2-0"[..]));
            assert_eq!(seen.len(), 2);
            assert_eq!(seen[0].0, b"1-0");
            assert_eq!(seen[0].1, b"a");
            assert!(seen[0].2.contains("\"1\""), "{seen:?}");
            assert_eq!(seen[1].1, b"b");
        }
        assert_eq!(for_each_entry(&Value::Nil, |_, _| panic!()), None);
    }

    #[test]
    fn xautoclaim_replies_are_walked() {
        let reply = Value::Array(vec![
            bulk("5-0"),
            Value::Array(vec![
                entry_value(
                    "3-0",
                    &["v", "2", "reply_to", "r", "jobs", "1 0 0: 0: 0: 1:1\n"],
                ),
                Value::Nil,
            ]),
            Value::Array(vec![bulk("4-0")]),
        ]);
        let mut entries = Vec::new();
        let (cursor, deleted) = for_each_claimed(&reply, |id, fields| {
            entries.push(read_job_entry(id, fields));
        })
        .unwrap();
        assert_eq!(cursor, "5-0");
        assert_eq!(deleted, 1);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].id, "3-0");
        assert_eq!(entries[0].jobs[0].as_ref().unwrap().script, "1");
        assert!(for_each_claimed(&Value::Nil, |_, _| panic!()).is_none());
    }
}
