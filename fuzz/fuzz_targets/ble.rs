//! The limb's own BLE parsing (`host/src/capabilities/ble`): HCI events and ACL fragments
//! as a controller sends them, and the ATT PDUs a peripheral sends.
//!
//! Input, by its first byte modulo 3:
//! - 0, an event: `[code]` then its parameters;
//! - 1, ACL: a sequence of fragments (`[len][boundary]` then `len` bytes) reassembled
//!   into L2CAP frames;
//! - 2, an ATT PDU, through every parser of a response or push.
#![no_main]

use libfuzzer_sys::fuzz_target;
use limb::capabilities::ble::{att, hci};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            if let Some((&code, params)) = rest.split_first() {
                let _ = hci::parse_event(code, params);
                let _ = hci::local_name(params);
            }
        }
        1 => {
            let mut r = hci::Reassembly::default();
            let mut input = rest;
            while let [len, boundary, tail @ ..] = input {
                let n = usize::from(*len).min(tail.len());
                let (fragment, next) = tail.split_at(n);
                if let Some((_, payload)) = r.push(*boundary & 3, fragment) {
                    assert!(payload.len() <= 4096);
                }
                let _ = hci::parse_acl(fragment);
                input = next;
            }
        }
        _ => {
            let _ = att::parse_services(rest);
            let _ = att::parse_declarations(rest);
            let _ = att::parse_information(rest);
            let _ = att::parse_push(rest);
            let _ = att::error_code(rest);
            if let Ok(text) = std::str::from_utf8(rest)
                && let Some(u) = att::parse_uuid(text)
            {
                assert_eq!(att::parse_uuid(&att::format_uuid(u)), Some(u));
            }
        }
    }
});
