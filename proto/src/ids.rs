//! Event and correlation ids in both wire forms of `event_store.client.UUID`.
//!
//! Writers may send either form (the Rust client sends the structured one, the Python client
//! the string one); readers ask for one in `ReadReq.Options.uuid_option`. The structured form
//! is the 128-bit value split into its big-endian high and low halves, each taken as a signed
//! 64-bit number (as Java's `UUID` does; the server's `Uuid.FromInt64` follows it).

use crate::event_store::client::{uuid, Uuid};

/// The structured form: `{most_significant_bits, least_significant_bits}`.
pub fn structured(id: ::uuid::Uuid) -> Uuid {
    let bits = id.as_u128();
    Uuid {
        value: Some(uuid::Value::Structured(uuid::Structured {
            most_significant_bits: (bits >> 64) as u64 as i64,
            least_significant_bits: bits as u64 as i64,
        })),
    }
}

/// The string form: lower-case hyphenated text.
pub fn string(id: ::uuid::Uuid) -> Uuid {
    Uuid {
        value: Some(uuid::Value::String(id.hyphenated().to_string())),
    }
}

/// The id carried by either form; `None` when absent or not a valid UUID text.
pub fn parse(id: &Uuid) -> Option<::uuid::Uuid> {
    match id.value.as_ref()? {
        uuid::Value::Structured(s) => Some(::uuid::Uuid::from_u128(
            (u128::from(s.most_significant_bits as u64) << 64)
                | u128::from(s.least_significant_bits as u64),
        )),
        uuid::Value::String(text) => ::uuid::Uuid::try_parse(text).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn structured_halves_are_the_big_endian_halves() {
        let id = ::uuid::Uuid::parse_str("00112233-4455-6677-8899-aabbccddeeff").unwrap();
        let Some(uuid::Value::Structured(s)) = structured(id).value else {
            panic!("structured form expected")
        };
        assert_eq!(s.most_significant_bits, 0x0011_2233_4455_6677);
        assert_eq!(s.least_significant_bits, 0x8899_aabb_ccdd_eeff_u64 as i64);
    }

    proptest! {
        #[test]
        fn both_forms_round_trip(bits in any::<u128>()) {
            let id = ::uuid::Uuid::from_u128(bits);
            prop_assert_eq!(parse(&structured(id)), Some(id));
            prop_assert_eq!(parse(&string(id)), Some(id));
        }

        #[test]
        fn any_text_parses_or_is_refused_without_panic(text in ".{0,40}") {
            let _ = parse(&Uuid { value: Some(uuid::Value::String(text)) });
        }
    }
}
